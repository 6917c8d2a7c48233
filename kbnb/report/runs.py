"""Run folders keyed by a hash of the parameters, and the metrics files inside them."""
from __future__ import annotations

import ast
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from kbnb.core.version import __version__

LIBRARY = Path(__file__).resolve().parents[1]  # the kbnb package
NOTEBOOKS = LIBRARY.parent / "notebooks"


def library_files() -> dict[str, str]:
    """``{path under kbnb/: sha256[:12]}`` of every module that can change a result (all
    but ``kbnb/book/``, the runner, which only orders and caches the runs)."""
    return {str(f.relative_to(LIBRARY)): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
            for f in sorted(LIBRARY.rglob("*.py")) if f.parent.name != "book"}


def _module_file(dotted: str, library: Path) -> Path | None:
    """The file of module ``kbnb.x.y`` under ``library`` (``x/y.py`` or ``x/y/__init__.py``)."""
    parts = dotted.split(".")[1:]
    for f in (library.joinpath(*parts).with_suffix(".py") if parts else None,
              library.joinpath(*parts, "__init__.py")):
        if f is not None and f.is_file():
            return f
    return None


def _imported(tree: ast.AST, library: Path) -> set[Path]:
    """The kbnb module files an AST imports anywhere (function bodies included), with
    each package's ``__init__.py`` on the way (Python runs those too)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        if name.split(".")[0] != "kbnb":
            continue
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # kbnb, kbnb.x, kbnb.x.y: each one that is a module
            f = _module_file(".".join(parts[:k]), library)
            if f is not None:
                out.add(f)
    return out


def chapter_modules(chapter: str, library: Path = LIBRARY, notebooks: Path = NOTEBOOKS):
    """The library modules a chapter can run, as :func:`library_files` keys: every kbnb
    module its notebook (``notebooks/<chapter>.ipynb``) and ``chapters/<chapter>.py``
    import, and what those import, to the end (static: ``import`` statements anywhere in
    a module). None when the notebook is not there (then every module counts). A
    recorded chapter is stale only when one of these changed."""
    nb = Path(notebooks) / f"{chapter}.ipynb"
    if not nb.is_file():
        return None
    cells = json.loads(nb.read_text())["cells"]
    lines = [line for c in cells if c["cell_type"] == "code"
             for line in "".join(c["source"]).splitlines()
             if not line.lstrip().startswith(("%", "!"))]  # IPython magics are not Python
    todo = _imported(ast.parse("\n".join(lines)), library)
    own = library / "chapters" / f"{chapter}.py"
    if own.is_file():
        todo.add(own)
    seen = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo |= _imported(ast.parse(f.read_text()), library) - seen
    return {str(f.relative_to(library)) for f in seen if f.parent.name != "book"}


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
