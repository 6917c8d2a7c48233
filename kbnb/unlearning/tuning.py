"""Per-method hyperparameter selection on validation rows, so that a comparison of
unlearning methods compares methods, not one shared learning rate.

open-unlearning and the method papers sweep each method's learning rate and its own
knobs (NPO's β, SimNPO's γ, RMU's steering scale, ...) and report the chosen setting.
Here every method gets the same step budget and a small grid (:func:`grid`: the
learning rates :data:`GRID_LRS` times the method's knobs, the values its class declares
as ``grid=(...)`` on its parameters, the default first), each grid point
is trained once with a tuning seed that no reported run uses, and scored on
*validation questions* that no evaluation asks (``kbnb.eval.tofu_sets.organism_validation_sets``:
the forget facts asked with their paraphrased question, retain rows after the
evaluation's). The forget facts are the evaluation's own, in other words: unlearning
is about those facts, so a validation split cannot be about other ones. The choice
(:func:`choose`) is the field's trade-off made explicit:

    the highest validation forget quality (KS p-value of the forget truth ratios
    against the retain model's) among the settings that keep at least ``keep`` (0.9)
    of the untouched model's validation utility; when none keeps it, the setting with
    the highest validation utility (the least damage).

The test metrics are never read.
"""
from __future__ import annotations

import itertools
import time

from tqdm.auto import tqdm

from kbnb.eval.tofu_scoring import evaluate_validation
from kbnb.unlearning.base import ClosedFormMethod
from kbnb.unlearning.methods import UNLEARNING_METHODS, check_methods, unlearn

GRID_LRS = (3e-4, 1e-3, 3e-3)  # constant AdamW rates tried for every trained method
KEEP = 0.9  # share of the untouched model's validation utility a chosen setting keeps


def grid(method: str, lrs=GRID_LRS, knobs: bool = True) -> list[dict]:
    """The settings tried for ``method``: ``{"lr": lr, **knob values}`` for every learning
    rate in ``lrs`` and (with ``knobs``) every combination of the method's grid fields
    (``Method.tuning_grid()``, in field order); a closed-form method gets ``lr`` None and
    only its knobs."""
    cls = UNLEARNING_METHODS[check_methods([method])[0]]
    lrs = list(lrs)
    if not lrs or any(isinstance(x, bool) or not (isinstance(x, (int, float)) and x > 0)
                      for x in lrs):
        raise ValueError(f"lrs={lrs!r}: give one or more positive learning rates")
    own = cls.tuning_grid() if knobs else {}
    combos = [dict(zip(own, vals)) for vals in itertools.product(*own.values())] or [{}]
    rates = [None] if issubclass(cls, ClosedFormMethod) else lrs
    return [{"lr": lr, **c} for lr in rates for c in combos]


def choose(points: list[dict], utility0: float, keep: float = KEEP) -> tuple[int, str]:
    """Index of the chosen point and why (see the module docstring). ``points``: dicts
    with the validation ``forget_quality`` and ``utility``; ``utility0``: the untouched
    model's validation utility."""
    if not points:
        raise ValueError("no grid points to choose from")
    floor = keep * utility0
    ok = [i for i, q in enumerate(points) if q["utility"] >= floor]
    if ok:
        i = max(ok, key=lambda j: (points[j]["forget_quality"], points[j]["utility"]))
        return i, (f"highest validation forget quality among the {len(ok)} of {len(points)} "
                   f"settings that keep validation utility ≥ {keep:.0%} of the untouched "
                   f"model's ({floor:.3f})")
    i = max(range(len(points)), key=lambda j: points[j]["utility"])
    return i, (f"no setting keeps {keep:.0%} of the untouched model's validation utility "
               f"({floor:.3f}): the one with the highest validation utility")


def shown(setting: dict) -> str:
    """A setting as table text: ``lr 1e-03, beta 0.5``."""
    return ", ".join(f"{k} {v:.0e}" if k == "lr" else f"{k} {v:g}"
                     for k, v in setting.items() if v is not None) or "defaults"


def tune(method: str, model, tok, forget_rows, retain_rows, val_sets: dict, val_reference: dict,
         utility0: float, steps: int, batch_size: int = 8, seed: int = 1000, lrs=GRID_LRS,
         knobs: bool = True, keep: float = KEEP, extra: dict | None = None,
         eval_batch_size: int = 64, progress: bool = False) -> dict:
    """Train ``method`` once per :func:`grid` setting (``steps`` steps, ``seed``), score each
    result with ``kbnb.eval.tofu_scoring.evaluate_validation`` on ``val_sets`` against the retain
    model's ``val_reference``, and :func:`choose` one.

    extra: keyword arguments every run gets (e.g. LUNAR's ``ref_rows``). Returns
    ``{"method", "points": [{"setting", "forget_quality", "utility", "forget_truth_ratio",
    "retain_prob", "seconds"}], "chosen": index, "setting": the chosen setting,
    "reason"}``."""
    if val_reference is None or val_reference.get("forget_truth_ratios") is None:
        raise ValueError("tuning needs the retain model's validation truth ratios "
                         "(val_reference): forget quality on validation rows is the criterion")
    points = []
    for setting in tqdm(grid(method, lrs, knobs), desc=f"tuning {method}", leave=False,
                        disable=not progress):
        t0 = time.time()
        kw = {k: v for k, v in setting.items() if k != "lr"}
        lr = setting["lr"] if setting["lr"] is not None else 1.0  # closed form: unused
        new, _ = unlearn(method, model, tok, forget_rows, retain_rows, steps=steps, lr=lr,
                         seed=seed, batch_size=batch_size, **kw, **(extra or {}))
        v = evaluate_validation(new, tok, val_sets, val_reference, eval_batch_size)
        del new
        points.append({"setting": setting, "forget_quality": v["forget_quality"],
                       "utility": v["utility"], "forget_truth_ratio": v["forget_truth_ratio"],
                       "retain_prob": v["retain_prob"],
                       "floored": v["forget_truth_ratio_floored"],
                       "seconds": time.time() - t0})
    i, reason = choose(points, utility0, keep)
    return {"method": method, "points": points, "chosen": i, "setting": points[i]["setting"],
            "reason": reason}
