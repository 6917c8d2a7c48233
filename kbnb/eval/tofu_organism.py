"""TOFU's metrics on the organism against its retain organism: the retain organism's
evaluation and validation metrics (trained on first use, cached as JSON in its folder,
keyed by the arguments and the evaluation's code), and :func:`fq_mu` / :func:`scorer`, the
one call for chapters that change the organism (LUNAR, the NPO toy)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from kbnb.eval import metrics, tofu, tofu_scoring, tofu_sets
from kbnb.eval.tofu import DEFAULT_MAX_NEW_TOKENS
from kbnb.eval.tofu_scoring import (
    evaluate_against,
    evaluate_unlearning,
    evaluate_validation,
    retain_reference_from,
)
from kbnb.eval.tofu_sets import organism_sets, organism_validation_sets
from kbnb.lm.models import load_model, resolve_model_path
from kbnb.organism.model import retain_organism_name, world_for

# the code a cached evaluation depends on: a change to any of these files recomputes it
EVALUATION_CODE = (tofu.__file__, tofu_scoring.__file__, tofu_sets.__file__, metrics.__file__,
                   __file__)


def _digest_of(obj) -> str:
    code = b"".join(Path(f).read_bytes() for f in EVALUATION_CODE)
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()
                          + code).hexdigest()[:12]


def retain_validation(model_name: str = "tinyworld", forget_split: str = "forget10",
                      n_retain: int = 90, batch_size: int = 64, device: str = "cpu",
                      cache: bool = True) -> dict:
    """:func:`evaluate_validation` of the retain organism of ``model_name`` on its
    validation rows (``kbnb.eval.tofu_sets.organism_validation_sets``), the reference of a
    hyperparameter search's forget quality; cached beside :func:`retain_evaluation`'s."""
    name = retain_organism_name(model_name, forget_split)
    path = Path(resolve_model_path(name))
    f = path / f"kbnb_tofu_validation-{_digest_of([forget_split, n_retain])}.json"
    if cache and f.exists():
        return json.loads(f.read_text())
    model, tok = load_model(name, device=device)
    res = evaluate_validation(model, tok, organism_validation_sets(world_for(model_name),
                                                                  forget_split, n_retain),
                              batch_size=batch_size)
    if cache:
        f.write_text(json.dumps(res))
    return res


def retain_evaluation(model_name: str = "tinyworld", forget_split: str = "forget10",
                      n_retain: int | None = 90, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                      batch_size: int = 64, device: str = "cpu", cache: bool = True) -> dict:
    """``evaluate_unlearning`` of the *retain organism* of ``model_name`` (``tinyworld[:N]``;
    trained on first use, see ``kbnb.organism.retain_organism_name``) on the organism's
    sets, against itself (so its forget quality is 1 and its privleak 0). Cached as JSON
    in the retain organism's folder, keyed by the arguments and :data:`EVALUATION_CODE`.
    ``retain_reference_from`` of it is what ``fq_mu`` and ``evaluate_unlearning`` need."""
    name = retain_organism_name(model_name, forget_split)
    path = Path(resolve_model_path(name))
    f = path / f"kbnb_tofu_eval-{_digest_of([forget_split, n_retain, max_new_tokens])}.json"
    if cache and f.exists():
        return json.loads(f.read_text())
    model, tok = load_model(name, device=device)
    sets = organism_sets(world_for(model_name), forget_split, n_retain)
    res = evaluate_unlearning(model, tok, sets, max_new_tokens=max_new_tokens,
                              batch_size=batch_size)
    res = {**res, **evaluate_against(res, res)}
    res["model_name"] = name
    if cache:
        f.write_text(json.dumps(res))
    return res


def retain_reference(model_name: str = "tinyworld", forget_split: str = "forget10",
                     **kwargs) -> dict:
    """The retain organism's reference (per-item forget truth ratios, MIA AUCs), cached:
    ``retain_reference_from(retain_evaluation(model_name, forget_split, **kwargs))``."""
    return retain_reference_from(retain_evaluation(model_name, forget_split, **kwargs))


def fq_mu(model, tok, world=None, forget_split: str = "forget10", retain_ref: dict | None = None,
          model_name: str = "tinyworld", n_retain: int | None = 90,
          max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, batch_size: int = 64) -> dict:
    """Forget quality, model utility and the rest of TOFU's metrics of an edited or
    unlearned organism, in one call (for any chapter that changes the organism).

    ``world``: the organism's world (default: ``world_for(model_name)``); ``retain_ref``:
    the retain reference (default: ``retain_reference(model_name, forget_split)``, the
    retain organism trained once and cached). Returns ``evaluate_unlearning``'s dict."""
    world = world or world_for(model_name)
    if retain_ref is None:
        retain_ref = retain_reference(model_name, forget_split, n_retain=n_retain,
                                      max_new_tokens=max_new_tokens, batch_size=batch_size,
                                      device=str(model.device))
    return evaluate_unlearning(model, tok, organism_sets(world, forget_split, n_retain),
                               retain_reference=retain_ref, max_new_tokens=max_new_tokens,
                               batch_size=batch_size)

TOFU_HEADLINE_METRICS = ("forget_quality", "model_utility", "forget_truth_ratio",
                         "forget_rouge", "privleak")


def scorer(tok, world, forget_split: str = "forget10", model_name: str = "tinyworld"):
    """A function of an edited or unlearned organism returning :data:`TOFU_HEADLINE_METRICS` of
    :func:`fq_mu` on ``forget_split`` (against the retain organism, trained once and
    cached), for chapters that change the organism (LUNAR, the NPO toy)."""
    def score(model):
        r = fq_mu(model, tok, world, forget_split, model_name=model_name)
        return {k: r.get(k) for k in TOFU_HEADLINE_METRICS}
    return score
