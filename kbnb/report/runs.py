"""Run folders keyed by a hash of the parameters, and the metrics files inside them."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from kbnb.core.version import __version__

LIBRARY = Path(__file__).resolve().parents[1]  # the kbnb package


def library_files() -> dict[str, str]:
    """``{path under kbnb/: sha256[:12]}`` of every module that can change a result (all
    but ``kbnb/book/``, the runner, which only orders and caches the runs)."""
    return {str(f.relative_to(LIBRARY)): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
            for f in sorted(LIBRARY.rglob("*.py")) if f.parent.name != "book"}


def library_hash() -> str:
    """SHA-256 of the library's modules (:func:`library_files`): a changed module makes
    every cached chapter stale."""
    h = hashlib.sha256()
    for f in sorted(LIBRARY.rglob("*.py")):
        if f.parent.name != "book":
            h.update(f.read_bytes())
    return h.hexdigest()


def params_hash(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def run_dir(notebook: str, params: dict, root: str | Path = "runs") -> Path:
    """``root/<notebook>-<hash of params>``, created; ``params.json`` written inside,
    so a folder's results always sit next to the parameters that made them."""
    d = Path(root) / f"{notebook}-{params_hash(params)}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True, default=str))
    return d


def environment(device=None) -> dict:
    import transformers
    env = {"kbnb": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "platform": platform.platform(),
           "device": str(device) if device is not None else None,
           "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
    return env


def save_metrics(path: str | Path, metrics: dict, params: dict, device=None) -> Path:
    """Write ``{"params", "metrics", "environment", "time"}`` as JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"params": params, "metrics": metrics, "environment": environment(device),
           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path.write_text(json.dumps(doc, indent=2, default=_jsonable))
    return path


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
