"""The unlearning chapter (``notebooks/unlearning.ipynb``): its parameters, its declaration
and its glue.

The methods are the registry of :mod:`kbnb.unlearning.methods` (one class per method,
losses as in locuslab/open-unlearning), the metrics TOFU's (:mod:`kbnb.eval.tofu`, scored by
:mod:`kbnb.eval.tofu_scoring`). This module holds the chapter's sets, the choice of each
method's setting on validation rows, the arguments of each method's run
(:func:`unlearn_kwargs`; the notebook shows the ``unlearn`` call) and its evaluation
(:func:`evaluate_unlearned`), open-unlearning's reproduced numbers
(:data:`REFERENCE_TOFU_FORGET10`), the records, targets and computed sentences. Its
tables and figures are :mod:`kbnb.chapters.unlearning_figures`.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from kbnb.chapters.unlearning_figures import (
    LABELS,
    TABLE_METRICS,
    display_name,
    fq_mu_figure,
)
from kbnb.data.loaders import load_tofu
from kbnb.data.splits import FORGET_SPLITS, RETAIN_OF, check_forget_split
from kbnb.eval import stats
from kbnb.eval.metrics_file import format_number
from kbnb.eval.tofu_organism import retain_evaluation, retain_validation
from kbnb.eval.tofu_scoring import evaluate_against, evaluate_unlearning, evaluate_validation
from kbnb.eval.tofu_sets import (
    organism_retain_rows,
    organism_sets,
    organism_validation_sets,
    tofu_sets,
    tofu_validation_sets,
)
from kbnb.lm.models import load_model, resolve_device
from kbnb.organism.model import parse_organism_name
from kbnb.report.chapter import declared
from kbnb.report.params import ModelParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row, recorded_inputs
from kbnb.unlearning import lunar_sets
from kbnb.unlearning.methods import UNLEARNING_METHODS, check_methods
from kbnb.unlearning.tuning import GRID_LRS, KEEP, grid, tune

OPEN_UNLEARNING = "open-unlearning, Llama-3.2-1B on TOFU forget10 (not this run)"

# a paired t test over seeds of a deterministic method (LUNAR's closed form) has identical
# differences; scipy warns about it, the interval and verdict are still right
warnings.filterwarnings("ignore", message="Precision loss occurred in moment calculation")

# open-unlearning's reproduced numbers, TOFU forget10 on Llama-3.2-1B-Instruct: lr 1e-5,
# 10 epochs, effective batch 32, alpha = gamma = 1, beta = 0.1 (docs/repro.md, commit
# 7fa0b552e59bd50aef00529b43546865c6f30c7d). Not this run: another model on other data.
REFERENCE_SOURCE = ("locuslab/open-unlearning docs/repro.md (commit 7fa0b55): TOFU forget10, "
                    "Llama-3.2-1B-Instruct, lr 1e-5, 10 epochs, batch 32")
REFERENCE_TOFU_FORGET10 = {  # name: (forget_quality, model_utility, forget_truth_ratio)
    "finetuned": (1.66e-21, 0.60, 0.48),
    "retain": (1.0, 0.59, 0.63),
    "ga": (1.06e-239, 0.0, 2.25e-18),
    "graddiff": (1.06e-239, 0.49, 3.53e-27),
    "idkdpo": (4.64e-12, 0.23, 0.60),
    "npo": (0.02, 0.46, 0.70),
    "simnpo": (2.47e-203, 0.54, 1.07e-05),
    "rmu": (3.15e-15, 0.59, 0.76),
}


@dataclass(frozen=True)
class Params(ModelParams):
    """The parameters of ``notebooks/unlearning.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld | tinyworld:N | hub id | path: the model to unlearn
    retain_model: str = param("auto")  # auto: the organism's retain model | hub id | path | ""
    dataset: str = choice("tinyworld", ("tinyworld", "tofu"))  # tinyworld (the organism's world) | tofu (real TOFU from data_dir)
    data_dir: str = param("")  # folder with tofu/*.jsonl (empty: $KBNB_DATA_DIR or the hub)
    forget_split: str = choice("forget10", FORGET_SPLITS)  # forget01 | forget05 | forget10
    methods: list = param(list(UNLEARNING_METHODS), lambda n, v: check_methods(v))  # registry names
    steps: int = integer(20, 1)  # optimizer steps per method (lunar: closed form, unused)
    tune: bool = flag(True)  # choose each method's lr and knobs on validation rows (False: all at lr)
    tune_lrs: list = param(list(GRID_LRS), lambda n, v: grid("ga", v))  # learning rates tried per method
    tune_knobs: bool = flag(True)  # also each method's own knobs (the grids its class declares)
    tune_seed: int = integer(1000, 0)  # seed of the tuning runs (no reported run uses it)
    lr: float = number(1e-3, 0, lo_open=True)  # constant AdamW rate without tune (open-unlearning: 1e-5 on 1B)
    batch_size: int = integer(8, 1)  # forget (and retain) rows per step
    n_retain: int = integer(90, 1)  # retain rows in the evaluation (TOFU: retain_perturbed, 400 rows)
    max_eval: object = integer(None, 1, none=True)  # at most this many rows of each evaluation set (None: all, as TOFU)
    max_train_retain: object = integer(None, 1, none=True)  # retain rows the methods train or fit on (None: the whole retain split)
    max_new_tokens: int = integer(32, 1)  # greedy generation length for ROUGE (open-unlearning: 200)
    ref_set: str = choice("auto", lunar_sets.REF_SETS)  # LUNAR's D_ref: auto (organism's / harmful) | harmful | invented
    seeds: list = seeds_param()  # seeds of the unlearning runs (batch order, IdK answers, RMU vector)
    output_dir: str = param("runs", run=False)  # results go to output_dir/unlearning-<hash of the parameters>/

    @property
    def method_list(self) -> list[str]:
        """``methods`` as a list of registry names (a single name becomes a list)."""
        return check_methods(self.methods)

    def run_params(self) -> dict:
        p = {**super().run_params(), "methods": self.method_list}
        if self.ref_set == "auto":  # runs from before ref_set keep their folders
            del p["ref_set"]
        return p

    def validate(self) -> None:
        super().validate()
        if not self.tune:
            return
        if not self.retain_model or (self.retain_model == "auto" and (
                self.dataset != "tinyworld" or parse_organism_name(self.model_name) is None)):
            raise ValueError("tune=True chooses each method's setting by forget quality on "
                             "validation rows, which needs a retain model: give retain_model "
                             "('auto' only on the organism with dataset tinyworld), or "
                             "tune=False to run every method at lr")
        if self.tune_seed in self.seeds:
            raise ValueError(f"tune_seed={self.tune_seed} is one of seeds={self.seeds}: the "
                             "tuning runs must not be reported runs; pick another tune_seed")


SPEC = ChapterSpec(
    inputs=recorded_inputs,
    title="Unlearning, side by side", params=Params, cost=680,
    retain_split=lambda p: p.forget_split if p.retain_model == "auto" else None,
    rows=(
        Row("forget_quality_npo", "forget quality of NPO", "fq_gain_npo", "0.02", OPEN_UNLEARNING),
        Row("model_utility_npo", "model utility of NPO", "mu_kept_npo", "0.46", OPEN_UNLEARNING),
    ),
)


# ---- the chapter: every method, measured as open-unlearning measures it -------------------

def metric_bounds(metric: str, results: dict) -> tuple:
    """The range of a table metric: ``(0, 1)`` for all but privleak, whose range follows
    from the retain model's AUC ``a``: ``(−100, 100·a/(1 − a))`` (AUC 1 and 0); open above
    when ``a`` is 1."""
    if metric != "privleak":
        return stats.UNIT
    a = results.get("privleak_retain_auc")
    return (-100.0, None if a is None or a >= 1 else 100.0 * a / (1.0 - a))


def log10_fq(values) -> list[float]:
    """``log10`` of forget qualities (floored at 1e-300 so that 0 stays finite): the scale
    the field plots them on and the one on which the chapter compares them."""
    return [math.log10(max(float(v), 1e-300)) for v in values]


def plain(results: dict) -> dict:
    """``evaluate_unlearning`` results without the per-item lists and generations."""
    return {k: v for k, v in results.items()
            if not k.endswith("_generations") and k != "forget_truth_ratios"}


def unlearn_kwargs(method: str, settings: dict | None, lr: float, ref_rows=None) -> dict:
    """The keyword arguments of :func:`kbnb.unlearning.methods.unlearn` that differ between
    methods: the learning rate and knobs chosen by :func:`tune_methods` (``settings``:
    ``{method: {"lr": ..., knob: value}}``; a method without one runs at ``lr`` with its
    defaults), and LUNAR's reference prompts ``ref_rows`` for a method that takes them."""
    setting = dict((settings or {}).get(method) or {})
    m_lr = setting.pop("lr", None) or lr
    kw = {"ref_rows": ref_rows} if "ref_rows" in UNLEARNING_METHODS[method].names() else {}
    return {"lr": m_lr, **kw, **setting}


def evaluate_unlearned(new, log: dict, tok, sets: dict, retain_ref: dict | None, t0: float,
                       max_new_tokens: int = 32, eval_batch_size: int = 64) -> dict:
    """One unlearned model (``new``, ``log`` from ``unlearn``) evaluated with
    ``kbnb.eval.tofu_scoring.evaluate_unlearning`` against ``retain_ref``: ``{"results":
    plain results, "forget_truth_ratios": [...], "final_loss": the last step's loss,
    "seconds": since ``t0``, the unlearning's start}``."""
    res = evaluate_unlearning(new, tok, sets, retain_reference=retain_ref,
                              max_new_tokens=max_new_tokens, batch_size=eval_batch_size)
    return {"results": plain(res), "forget_truth_ratios": res["forget_truth_ratios"],
            "final_loss": log["losses"][-1] if log["losses"] else None,
            "seconds": time.time() - t0}


# ---- choosing each method's setting on validation rows (kbnb.unlearning.tuning) ----------

def chapter_validation(p: Params, model, tok, world, data_dir=None) -> dict | None:
    """The validation rows of the search (``kbnb.eval.tofu_sets.organism_validation_sets`` or
    ``tofu_validation_sets``), the retain model's and the untouched model's validation
    metrics; None without ``tune``. Returns ``{"sets", "reference", "untouched"}``."""
    if not p.tune:
        return None
    if p.dataset == "tinyworld":
        val = organism_validation_sets(world, p.forget_split, p.n_retain)
    else:
        val = tofu_validation_sets(p.forget_split, data_dir, p.n_retain)
    if p.max_eval is not None:  # the facts the methods unlearn: the evaluation's first rows
        val["forget"] = val["forget"][:p.max_eval]
    if p.retain_model == "auto":
        if parse_organism_name(p.model_name) is None or p.dataset != "tinyworld":
            raise ValueError("tune=True with retain_model='auto' needs the organism "
                             "(model_name tinyworld[:N], dataset tinyworld); name a retain "
                             "model for another model, or tune=False")
        ref = retain_validation(p.model_name, p.forget_split, p.n_retain,
                                device=str(model.device))
    else:
        r_model, r_tok = load_model(p.retain_model, **p.load_args())
        ref = evaluate_validation(r_model, r_tok, val)
        del r_model
    return {"sets": val, "reference": ref,
            "untouched": evaluate_validation(model, tok, val, ref)}


def tune_methods(p: Params, model, tok, forget_rows, retain_rows, validation: dict,
                 ref_rows=None) -> dict:
    """:func:`kbnb.unlearning.tuning.tune` for every method of the run: ``{method: its
    result}`` (each setting trained once with ``tune_seed``, scored on the validation
    rows, one chosen)."""
    out = {}
    for m in p.method_list:
        extra = {"ref_rows": ref_rows} if "ref_rows" in UNLEARNING_METHODS[m].names() else {}
        out[m] = tune(m, model, tok, forget_rows, retain_rows, validation["sets"],
                      validation["reference"], validation["untouched"]["utility"],
                      steps=p.steps, batch_size=p.batch_size, seed=p.tune_seed,
                      lrs=p.tune_lrs, knobs=p.tune_knobs, extra=extra)
    return out


def chosen_settings(tuned: dict | None) -> dict | None:
    """``{method: chosen setting}`` of :func:`tune_methods` (None without tuning)."""
    return None if tuned is None else {m: t["setting"] for m, t in tuned.items()}


def unmoved_methods(tuned: dict, untouched: dict, factor: float = 10.0) -> list[str]:
    """Methods none of whose grid settings moved the validation forget quality more than
    ``factor``-fold off the untouched model's: at these settings they do not unlearn."""
    lg = lambda v: math.log10(max(float(v), 1e-300))  # noqa: E731
    return [m for m, t in tuned.items() if all(
        abs(lg(q["forget_quality"]) - lg(untouched["forget_quality"])) <= math.log10(factor)
        for q in t["points"])]


def tuning_text(tuned: dict | None, p: Params, validation: dict | None) -> str:
    """The sentence on how each method's setting was chosen (or that it was not)."""
    if tuned is None:
        return (f"Every method runs at one learning rate, {p.lr:g}, with its default knobs "
                "(tune=False): the comparison then says as much about that rate as about the "
                "methods.")
    v = validation["sets"]
    n = sum(len(t["points"]) for t in tuned.values())
    return (f"Each method's setting was chosen from a small grid ({n} trainings in all: "
            f"learning rates {', '.join(f'{x:g}' for x in p.tune_lrs)}"
            + (" and each method's own knobs" if p.tune_knobs else "")
            + f", {p.steps} steps each, tuning seed {p.tune_seed}) by its forget quality and "
            f"utility on validation questions no evaluation asks: the {len(v['forget'])} "
            f"forget facts asked with their paraphrased question (the same facts, in other "
            f"words) and {len(v['retain'])} retain rows after the evaluation's. The rule: the highest validation forget quality among the "
            f"settings that keep {KEEP:.0%} of the untouched model's validation utility, else "
            "the highest utility. The test metrics below were not looked at."
            + _unmoved_sentence(unmoved_methods(tuned, validation["untouched"]),
                                validation["untouched"]))


def _unmoved_sentence(methods, untouched: dict) -> str:
    if not methods:
        return ""
    return (f" No setting of {', '.join(display_name(m) for m in methods)} moved the "
            f"validation forget quality off the untouched model's "
            f"({untouched['forget_quality']:.1e}) by more than tenfold: within this grid and "
            f"step budget {'it does' if len(methods) == 1 else 'they do'} not unlearn the "
            "organism's forget authors.")


def floor_note(runs: dict, methods) -> str:
    """Which methods' forget truth ratios (and so forget quality) the +1e-10 floor
    decides for some items, per seed (``forget_truth_ratio_floored``)."""
    hit = {m: [runs[m][s]["results"].get("forget_truth_ratio_floored") or 0.0 for s in runs[m]]
           for m in floored_methods(runs, methods)}
    if not hit:
        return ("No method drives a correct answer's probability near 1e-10: every truth ratio "
                "is the model's, not the +1e-10 floor's.")
    parts = [f"{display_name(m)} ({', '.join(f'{x:.0%}' for x in v)} of forget questions "
             "by seed)" for m, v in hit.items()]
    return ("† The reference formula's +1e-10 decides the truth ratio where the correct "
            "answer's probability falls near 1e-10 or below: " + "; ".join(parts)
            + ". There the forget truth ratio and forget quality measure the floor, not the "
            "model.")


def discussion(base: dict, retain: dict, means: dict, mu_keep: float = 0.9) -> dict:
    """Computed sentences for the chapter's discussion (``means``: method → {metric: seed
    mean}): which methods reach a forget quality above 0.05 (the KS test no longer tells
    them from the retain organism), which keep ``mu_keep`` of the organism's utility, and
    the best trade-off."""
    def fmt(v):
        return f"{v:.2g}" if v < 1e-3 else f"{v:.3f}"

    mu0 = base["model_utility"]
    keep = {m for m, v in means.items() if v["model_utility"] >= mu_keep * mu0}
    fq_ok = {m for m, v in means.items() if v["forget_quality"] > 0.05}
    both = sorted(keep & fq_ok, key=lambda m: -means[m]["forget_quality"])
    names = lambda ms: ", ".join(display_name(m) for m in ms) or "none"  # noqa: E731
    out = {
        "fq_above_005": names(sorted(fq_ok)),
        "mu_kept": names(sorted(keep)),
        "best_tradeoff": (
            f"{display_name(both[0])} reaches a forget quality of "
            f"{fmt(means[both[0]]['forget_quality'])} (mean over seeds) with a model utility of "
            f"{means[both[0]]['model_utility']:.3f}, {means[both[0]]['model_utility'] / mu0:.0%} "
            f"of the untouched organism's"
            if both else
            f"No method reaches a forget quality above 0.05 while keeping {mu_keep:.0%} of the "
            f"untouched organism's model utility ({mu0:.3f}) at these settings"),
    }
    best_fq = max(means, key=lambda m: means[m]["forget_quality"])
    out["best_fq"] = (f"{display_name(best_fq)} has the highest mean forget quality "
                      f"({fmt(means[best_fq]['forget_quality'])}, model utility "
                      f"{means[best_fq]['model_utility']:.3f})")
    return out


def chapter_sets(dataset: str, forget_split: str, world=None, data_dir=None,
                 n_retain: int | None = 90, max_eval: int | None = None) -> dict:
    """The five evaluation sets: ``kbnb.eval.tofu_sets.organism_sets`` on the organism's
    world, ``kbnb.eval.tofu_sets.tofu_sets`` on real TOFU; each cut to its first ``max_eval`` rows
    when given (a real model scores about eight sequences per row: 305 rows of real TOFU
    forget01 take minutes on a CPU)."""
    if dataset == "tinyworld":
        sets = organism_sets(world, forget_split, n_retain)
    else:
        sets = tofu_sets(forget_split, data_dir, n_retain)
    if max_eval is None:
        return sets
    return {name: rows[:max_eval] for name, rows in sets.items()}


def chapter_retain_rows(dataset: str, forget_split: str, world=None, data_dir=None,
                        limit: int | None = None) -> list:
    """Rows of the methods' retain term: the organism's known retain facts, or TOFU's
    retain split; its first ``limit`` rows when given (LUNAR reads the activations of
    every retain row: TOFU's retain90 is 3,600 rows, minutes per seed on a CPU)."""
    if dataset == "tinyworld":
        rows = organism_retain_rows(world, forget_split)
    else:
        rows = load_tofu(RETAIN_OF[check_forget_split(forget_split)], data_dir)
    return rows if limit is None else rows[:limit]


def chapter_ref_rows(dataset: str, world=None, data_dir=None, ref_set: str = "auto") -> list:
    """LUNAR's reference prompts (questions the model already refuses,
    :func:`kbnb.unlearning.lunar_sets.reference_rows`): ``ref_set`` ``auto`` gives the
    organism's refusal questions, or the harmful instructions for a real model;
    ``invented``: the invented-thing questions a TOFU-tuned SmolLM2 learned to refuse."""
    return lunar_sets.reference_rows(lunar_sets.reference_source(ref_set, dataset), world,
                                     data_dir)


def chapter_retain_evaluation(retain_model: str, model_name: str, dataset: str, sets: dict,
                              forget_split: str, n_retain, max_new_tokens: int,
                              load_args: dict | None = None) -> dict | None:
    """The retain model's ``evaluate_unlearning`` results against itself (forget quality
    1, privleak 0), or None when there is none (``retain_model=""``, or ``"auto"`` for a
    model that is not the organism: forget quality is then reported as not available).

    ``"auto"`` on the organism: the retain organism (trained once and cached,
    ``kbnb.eval.tofu_organism.retain_evaluation``); otherwise a hub id or directory."""
    if not retain_model:
        return None
    load_args = dict(load_args or {})
    dev = str(resolve_device(load_args.get("device", "auto")))
    if retain_model == "auto":
        if parse_organism_name(model_name) is None or dataset != "tinyworld":
            return None
        return retain_evaluation(model_name, forget_split, n_retain=n_retain,
                                 max_new_tokens=max_new_tokens, device=dev)
    model, tok = load_model(retain_model, **load_args)
    res = evaluate_unlearning(model, tok, sets, max_new_tokens=max_new_tokens, batch_size=64)
    res = {**res, **evaluate_against(res, res)}
    res["model_name"] = retain_model
    return res


def chapter_targets(base: dict, retain: dict | None, means: dict) -> dict:
    """The chapter's targets on the organism, each measured (None: not measurable)."""
    if retain is None:
        return {"note": "no retain model: forget quality and privleak are not available"}
    mu0 = base["model_utility"]
    ok = [m for m, v in means.items()
          if v.get("forget_quality", 0) > 0.1 and v["model_utility"] >= 0.9 * mu0]
    return {
        "retain_fq_self": retain["forget_quality"],
        "retain_fq_self_is_1": abs(retain["forget_quality"] - 1.0) < 1e-9,
        "retain_mu_minus_untouched_mu": retain["model_utility"] - mu0,
        "retain_mu_within_005": abs(retain["model_utility"] - mu0) <= 0.05,
        "untouched_fq": base["forget_quality"],
        "untouched_fq_below_001": base["forget_quality"] < 0.01,
        "methods_fq_above_01_with_mu_090": ok,
        "some_method_fq_above_01_with_mu_090": bool(ok),
    }


def table_intro(base: dict, retain: dict | None, n_seeds: int) -> str:
    """The sentence above the results table."""
    s = (f"Each method's cell is the mean over {n_seeds} seeds with its 95% interval (every "
         "metric here is bounded, so the interval is a t interval on the logit scale, or "
         "for privleak between its bounds, and stays inside the range); the untouched and "
         "the retain model are deterministic and have one value. ")
    if retain is None:
        return s + "There is no retain model, so forget quality and privleak are not available."
    return s + (f"The untouched model's forget quality is {base['forget_quality']:.2g} and its "
                f"model utility {base['model_utility']:.3f}; the retain model's are "
                f"{retain['forget_quality']:.2g} (against itself) and "
                f"{retain['model_utility']:.3f}.")


def discussion_text(d: dict, targets: dict, base: dict, retain: dict | None) -> str:
    """The computed discussion paragraph."""
    if retain is None:
        return ("Without a retain model forget quality cannot be computed; the table still "
                "shows truth ratio, ROUGE, probability and utility.")
    return (f"{d['best_tradeoff']}. {d['best_fq']}. Methods whose mean forget quality is "
            f"above 0.05: {d['fq_above_005']}; methods that keep at least 90% of the "
            f"untouched model's utility: {d['mu_kept']}. On TOFU with Llama-3.2-1B, "
            "open-unlearning reports NPO at a forget quality of 0.02 with a model utility of "
            "0.46 (the finetuned model: 0.60), and every other method below 1e-11 on forget10: "
            "the comparison is of shapes, not of numbers, since the organism is a different "
            "model trained on different data, with other step counts and learning rates.")


def targets_text(t: dict) -> str:
    """The targets as measured, one sentence."""
    if "note" in t:
        return t["note"] + "."
    yes = lambda b: "met" if b else "missed"  # noqa: E731
    ok = ", ".join(display_name(m) for m in t["methods_fq_above_01_with_mu_090"])
    return (f"Targets: the retain model's forget quality against itself is "
            f"{t['retain_fq_self']:.3g} ({yes(t['retain_fq_self_is_1'])}: 1); its utility differs "
            f"from the untouched model's by {t['retain_mu_minus_untouched_mu']:+.3f} "
            f"({yes(t['retain_mu_within_005'])}: within 0.05); the untouched model's forget "
            f"quality is {t['untouched_fq']:.2g} ({yes(t['untouched_fq_below_001'])}: below "
            f"0.01); a method with forget quality above 0.1 and at least 90% of the utility: "
            f"{ok or 'none'} ({yes(t['some_method_fq_above_01_with_mu_090'])}).")


# ---- the notebook's steps ------------------------------------------------------------------

def record_results(ch, runs: dict, methods, fq_ok: bool):
    """Record every method's and seed's metrics on ``ch`` (``<metric>_<method>``; forget
    quality and privleak only with a retain model, ``fq_ok``) and make a headline (mean ±
    95% interval over seeds) of each. Returns ``(reported, heads)``: the metrics recorded
    and ``{method: {metric: headline}}``."""
    reported = [k for k in TABLE_METRICS if fq_ok or k not in ("forget_quality", "privleak")]
    for m in methods:
        for seed in ch.seeds:
            res = runs[m][seed]["results"]
            ch.record(seed, **{f"{k}_{m}": res[k] for k in reported if res.get(k) is not None})
    heads = {}
    for m in methods:
        heads[m] = {}
        for k in TABLE_METRICS:
            if ch.has(f"{k}_{m}"):
                heads[m][k] = ch.headline(f"{k}_{m}", label=f"{display_name(m)}: {LABELS[k]}",
                                          bounds=metric_bounds(k, runs[m][ch.seeds[0]]["results"]))
    return reported, heads


def floored_methods(runs: dict, methods) -> list[str]:
    """Methods with a forget truth ratio decided by the +1e-10 floor in some seed."""
    return [m for m in methods
            if any((runs[m][s]["results"].get("forget_truth_ratio_floored") or 0) > 0
                   for s in runs[m])]


def fq_gain_share(method: str) -> float | None:
    """The share of the way from the fine-tuned model's log10 forget quality to 0 (a forget
    set no longer told apart from the retain model's) that ``method`` covers in
    open-unlearning's reproduction (:data:`REFERENCE_TOFU_FORGET10`): NPO 0.92, IdkDPO 0.45,
    RMU 0.30. None for a method that lowers forget quality there (GA, GradDiff, SimNPO:
    no gain to size by) or that it does not run (LUNAR)."""
    if method not in REFERENCE_TOFU_FORGET10:
        return None
    l0 = math.log10(REFERENCE_TOFU_FORGET10["finetuned"][0])
    gain = math.log10(REFERENCE_TOFU_FORGET10[method][0]) - l0
    return gain / -l0 if gain > 0 else None


def smallest_effects(methods, base_fq: float) -> dict:
    """The smallest effect that matters for each claim, (size, source) or None
    (kbnb.eval.verdicts: an interval inside ±size reads "excluded at the paper's size").

    ``fq_gain_<m>`` (log10 forget quality over the untouched model's): open-unlearning's
    gain for the method, carried over as a share: :func:`fq_gain_share` of this run's
    distance from the untouched model's log10 forget quality ``base_fq`` to 0 (its 19
    orders of magnitude on Llama-3.2-1B cannot be reached from an organism that starts a
    few orders below 1). None where that share is None, or ``base_fq`` is not in (0, 1).
    ``mu_kept_<m>`` (utility against 90% of the untouched model's): a design target, none."""
    out = {}
    for m in methods:
        share = fq_gain_share(m)
        out[f"mu_kept_{m}"] = None
        out[f"fq_gain_{m}"] = None
        if share is not None and 1e-300 < base_fq < 1:
            l0 = math.log10(base_fq)
            ref = [math.log10(REFERENCE_TOFU_FORGET10[k][0]) for k in ("finetuned", m)]
            out[f"fq_gain_{m}"] = (
                -share * l0,
                f"{share:.0%} of this run's distance from the untouched model's log10 forget "
                f"quality ({format_number(l0, 2)}) to 0: the share open-unlearning's "
                f"{display_name(m)} covers, {format_number(ref[0], 1)} → "
                f"{format_number(ref[1], 1)} (TOFU forget10, Llama-3.2-1B)")
    return out


def record_checks(ch, methods, base: dict, fq_ok: bool) -> None:
    """Per method: does it raise log10 forget quality above the untouched model's (with
    a retain model), and does it keep 90% of the untouched model's utility? Each with its
    smallest effect that matters (:func:`smallest_effects`)."""
    mu0 = base["model_utility"]
    sizes = smallest_effects(methods, base["forget_quality"] if fq_ok else 1.0)
    for m in methods:
        name = display_name(m)
        if fq_ok:
            ch.check(f"fq_gain_{m}", "log10 forget quality",
                     new=log10_fq(ch.per_seed(f"forget_quality_{m}")),
                     baseline=log10_fq([base["forget_quality"]])[0], better="higher",
                     subject=name, baseline_name="the untouched model",
                     **declared(sizes, f"fq_gain_{m}"))
        ch.check(f"mu_kept_{m}", "model utility", new=ch.per_seed(f"model_utility_{m}"),
                 baseline=0.9 * mu0, better="higher", subject=name,
                 baseline_name="90% of the untouched model's", **declared(sizes, f"mu_kept_{m}"))


def seed_means(ch, methods, reported) -> dict:
    """``{method: {metric: mean over seeds}}``."""
    return {m: {k: float(np.mean(ch.per_seed(f"{k}_{m}"))) for k in reported} for m in methods}


def fq_mu_run_figure(ch, methods, means: dict, base_p: dict, retain_p: dict):
    """:func:`fq_mu_figure` of this run beside open-unlearning's reproduced numbers."""
    pts = {m: (means[m]["model_utility"], means[m]["forget_quality"]) for m in methods}
    seeds_pts = {m: (ch.per_seed(f"model_utility_{m}"), ch.per_seed(f"forget_quality_{m}"))
                 for m in methods}
    return fq_mu_figure(pts, seeds_pts, base_p, retain_p, REFERENCE_TOFU_FORGET10,
                        "Llama-3.2-1B on TOFU, not this run (open-unlearning)")


def metrics(sets: dict, base_p: dict, retain_p: dict | None, means: dict, runs: dict, methods,
            seeds, tuned: dict | None = None, validation: dict | None = None) -> dict:
    """The chapter's own entries of metrics.json (beside the headlines and checks); with
    tuning, every grid point's validation scores and the chosen setting per method."""
    val = None if validation is None else {
        "n": {k: len(v) for k, v in validation["sets"].items()},
        **{who: {k: v for k, v in validation[who].items() if k != "forget_truth_ratios"}
           for who in ("untouched", "reference")}}
    return {
        "tuning": tuned, "validation": val,
        "settings": {m: (tuned[m]["setting"] if tuned else None) for m in methods},
        "n_sets": {k: len(v) for k, v in sets.items()},
        "untouched": base_p, "retain": retain_p,
        "methods": {m: {k: means[m].get(k) for k in TABLE_METRICS} for m in methods},
        "per_seed_results": {m: {str(s): runs[m][s]["results"] for s in seeds} for m in methods},
        "reference_tofu_forget10": {"source": REFERENCE_SOURCE,
                                    "values": REFERENCE_TOFU_FORGET10},
        "targets": chapter_targets(base_p, retain_p, means),
        "seconds": {"methods": {m: sum(runs[m][s]["seconds"] for s in seeds) for m in methods}},
    }


def glue_values(p: Params, ch, sets: dict, base_p: dict, retain_p: dict | None, means: dict,
                targets: dict, fq_ok: bool, tuned: dict | None = None,
                validation: dict | None = None, runs: dict | None = None) -> dict:
    """The computed numbers and sentences the chapter's text glues."""
    d = discussion(base_p, retain_p or base_p, means) if fq_ok else {}
    return {
        "n_retain_rows": len(sets["retain"]),
        "steps_used": p.steps,
        "lr_used": "each method's chosen" if p.tune else f"{p.lr:g}",
        "batch_used": p.batch_size,
        "table_intro": table_intro(base_p, retain_p, len(ch.seeds)),
        "discussion_text": discussion_text(d, targets, base_p, retain_p),
        "targets_text": targets_text(targets),
        "tuning_text": tuning_text(tuned, p, validation),
        "keep_share": f"{KEEP:.0%}",
        "floor_note": floor_note(runs, p.method_list) if runs else "",
    }
