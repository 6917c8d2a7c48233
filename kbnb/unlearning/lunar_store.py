"""Saved LUNAR edits (:mod:`kbnb.unlearning.lunar`): one edit in a folder
(:func:`save_lunar`, :func:`load_lunar`: only the changed modules, safetensors, the steering
vectors and a small JSON), and a run's several edits with their index ``edits.json``
(:func:`save_edits`, :func:`find_edit`, :func:`edit_index`), which the LUNAR chapter
writes and the attacks chapter reads."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from kbnb.lm import activations as A
from kbnb.unlearning.lunar import LunarEdit, _param_name

INDEX = "edits.json"  # in a LUNAR run folder: which edits it saved, and the main one
MAIN_EDIT = "lunar"  # the edit of the selected layer; "lunar_topk" edits the top-k layers


def save_lunar(path, model, edit: LunarEdit, extra: dict | None = None) -> Path:
    """Write into the folder ``path``: ``lunar_weights.safetensors`` (only the edited
    down-projection weights, under their parameter names, in the module's own layout
    and dtype), ``steering_vectors.safetensors`` (``vectors`` ``[n_layers, d_model]``)
    and ``lunar.json`` (layers, parameter names, coeff, position, activation, solver,
    rows, plus ``extra``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors, names = {}, {}
    for l, W in edit.weights.items():
        mod = A.get_module(model, l)
        w = W if isinstance(mod, torch.nn.Linear) else W.T
        name = _param_name(model, l)
        tensors[name] = w.to(mod.weight.dtype).contiguous().cpu()
        names[str(l)] = name
    save_file(tensors, str(path / "lunar_weights.safetensors"))
    save_file({"vectors": edit.vectors.contiguous()}, str(path / "steering_vectors.safetensors"))
    meta = {"layers": edit.layers, "param_names": names, "coeff": edit.coeff,
            "position": edit.position, "activation": edit.activation, "solver": edit.solver,
            "rows": edit.rows, "n_layers": A.n_layers(model), **(extra or {})}
    (path / "lunar.json").write_text(json.dumps(meta, indent=2, default=str))
    return path


def load_lunar(model, path, inplace: bool = True):
    """Apply a saved LUNAR edit to ``model`` (the same base model it was fitted on).
    Returns ``(model, info)``: info is the JSON plus ``vectors`` ``[n_layers, d_model]``.
    A copy is edited unless ``inplace``."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / "lunar.json").read_text())
    if meta.get("n_layers") not in (None, A.n_layers(model)):
        raise ValueError(f"the edit in {path} was made for a model with {meta['n_layers']} "
                         f"layers; this model has {A.n_layers(model)}")
    tensors = load_file(str(path / "lunar_weights.safetensors"))
    target = model if inplace else copy.deepcopy(model)
    params = dict(target.named_parameters())
    with torch.no_grad():
        for name, w in tensors.items():
            if name not in params or params[name].shape != w.shape:
                raise ValueError(f"{path}: parameter {name} {tuple(w.shape)} does not match the model")
            params[name].copy_(w.to(params[name]))
    info = dict(meta, vectors=load_file(str(path / "steering_vectors.safetensors"))["vectors"])
    return target, info


def save_edits(folder, model, edits: dict, main: str = MAIN_EDIT, sets: dict | None = None,
               extra: dict | None = None, precondition: dict | None = None) -> Path:
    """Save every edit of a LUNAR run and an index naming the main one.

    edits: ``{name: {seed: LunarEdit}}``; each goes to ``folder/edits/<name>-seed<seed>/``
    (:func:`save_lunar`). ``folder/edits.json`` holds ``{"main":
    main, "edits": {name: {seed: sub-folder}}, "sets": sets}``; ``sets`` are the
    :func:`kbnb.unlearning.lunar_sets.load_sets` arguments (without ``seed``) the edits were
    fitted with, so that an attack measures on the same held-out rows; ``precondition``
    (the LUNAR chapter's ``ref_refusal_precondition`` record), when given, is kept in the index and in each
    edit's ``lunar.json``, so that an attack knows whether the edit could unlearn.
    Returns the index path."""
    folder = Path(folder)
    if main not in edits:
        raise ValueError(f"main={main!r} is not one of the edits {sorted(edits)}")
    index = {"main": main, "edits": {}, "sets": sets or {}}
    if precondition is not None:
        index["precondition"] = precondition
        extra = {**(extra or {}), "precondition": precondition}
    for name, per_seed in edits.items():
        index["edits"][name] = {}
        for seed, e in per_seed.items():
            sub = f"edits/{name}-seed{seed}"
            save_lunar(folder / sub, model, e, extra={**(extra or {}), "edit": name,
                                                       "seed": int(seed), "sets": sets or {}})
            index["edits"][name][str(seed)] = sub
    path = folder / INDEX
    path.write_text(json.dumps(index, indent=2))
    return path


def find_edit(lunar_dir, edit: str = "", seed: int | None = None) -> Path:
    """The folder of one saved edit (it holds ``lunar.json``).

    lunar_dir: a LUNAR chapter's run folder (with ``edits.json``), or the folder of one
    saved edit. edit: which edit of the run (``""``: the index's main edit, the selected
    layer's). seed: the run's seed whose edit to take (None: the first one saved)."""
    d = Path(lunar_dir)
    if (d / "lunar.json").exists():
        return d
    if not (d / INDEX).exists():
        found = sorted(d.glob("*/lunar.json")) if d.is_dir() else []
        if len(found) == 1:
            return found[0].parent
        raise FileNotFoundError(
            f"lunar_dir={str(lunar_dir)!r} holds no saved LUNAR edit (no {INDEX} or "
            "lunar.json); give the LUNAR chapter's run folder, or lunar_dir=\"\" to fit one")
    index = json.loads((d / INDEX).read_text())
    name = edit or index["main"]
    if name not in index["edits"]:
        raise ValueError(f"edit={name!r}: the LUNAR run in {d} saved "
                         f"{', '.join(map(repr, index['edits']))}")
    per_seed = index["edits"][name]
    key = next(iter(per_seed)) if seed is None else str(seed)
    if key not in per_seed:
        raise ValueError(f"seed {seed}: the LUNAR run in {d} has edits for seeds "
                         f"{', '.join(per_seed)} only; use seeds among them")
    return d / per_seed[key]


def edit_index(lunar_dir) -> dict:
    """The index of a LUNAR run folder (``{}`` for the folder of a single edit)."""
    p = Path(lunar_dir) / INDEX
    return json.loads(p.read_text()) if p.exists() else {}
