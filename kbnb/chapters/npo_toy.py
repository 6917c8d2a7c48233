"""The NPO toy chapter (``notebooks/npo_toy.ipynb``): its parameters, its declaration
and its glue.

The algorithms (sampling, scoring and picking the answers to track, unlearning while
tracking them, the slowdown of the fall) are in :mod:`kbnb.unlearning.tracking`, the
losses in :mod:`kbnb.unlearning.losses`. This module runs them as the chapter does: the
sets (:func:`forget_and_retain`), the tracked answers of every seed
(:func:`pick_for_seeds`), the unlearning runs per loss and seed (:func:`unlearn_seeds`),
each seed's numbers (:func:`seed_summary`), the headlines and checks
(:func:`record_and_check`, :data:`TARGETS`), TOFU's metrics of the unlearned models
(:func:`record_tofu`), the figures and the computed sentences.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kbnb.core.checks import check_choice
from kbnb.data.loaders import load_tofu
from kbnb.data.splits import FORGET_SPLITS, RETAIN_OF, check_forget_split
from kbnb.eval import stats
from kbnb.eval.tofu_organism import scorer as tofu_metrics_scorer
from kbnb.organism.model import OrganismConfig, parse_organism_name, world_of
from kbnb.report.chapter import declared, note_constant
from kbnb.report.params import ModelParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row, recorded_inputs
from kbnb.unlearning.tracking import (
    GROUPS,
    LOSSES,
    RETAIN_LOSSES,
    group_series,
    pick_responses,
    sample_responses,
    score_responses,
    slowdown,
    tracked_set,
    unlearn_and_track,
)

TRAIN_ON = ("sample", "split")
# What the chapter expects on the organism (checked, not assumed): the ground truth loses at
# least 5x more log-probability than the fixed response (whose loss is floored at 1 nat); NPO's
# last-segment slope is under 10% of its first-segment slope; GA's stays above 25%.
TARGETS = {"gt_over_fixed_min": 5.0, "npo_slope_ratio_max": 0.1, "ga_slope_ratio_min": 0.25}
# The smallest effect that matters for each claim, (size, source) or None
# (kbnb.eval.verdicts: an interval inside ±size reads "excluded at the paper's size"): each
# compares a ratio with one of TARGETS, the chapter's design targets, and the seed report
# gives plots only (no number): none.
SMALLEST_EFFECTS = {"gt_vs_fixed": None, "npo_slows": None, "ga_keeps": None}


@dataclass(frozen=True)
class Params(ModelParams):
    """The parameters of ``notebooks/npo_toy.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld (the embedded organism) | hub id | local directory
    dataset: str = choice("tinyworld", ("tinyworld", "tofu"))  # tinyworld | tofu (TOFU from data_dir or the hub)
    data_dir: str = param("")  # folder with tofu/*.jsonl (empty: $KBNB_DATA_DIR or the hub)
    forget_split: str = choice("forget10", FORGET_SPLITS)  # forget01 | forget05 | forget10 (retain: its complement)
    sample_index: int = integer(18, 0)  # which row of the forget split to unlearn and watch (the seed's 18)
    n_candidates: int = integer(200, 1)  # answers sampled to the question, in one batched call
    temperature: float = number(1.5, 0, lo_open=True)  # sampling temperature (seed: 1.0 on a 1B model; see the text)
    max_new_tokens: int = integer(32, 1)  # length limit of a sampled answer (tokens)
    n_per_group: int = integer(5, 1)  # answers in each of the high / middle / low groups
    fixed_response: str = param("She mainly writes in English.")  # an unrelated answer, a control
    loss: str = choice("npo", LOSSES)  # npo | ga (gradient ascent) for the main run
    compare: bool = flag(True)  # also run the other loss (ga for npo) on the same answers
    beta: float = number(0.1, 0, lo_open=True)  # NPO inverse temperature
    retain_loss: str = choice("none", RETAIN_LOSSES)  # none | nll | kl: retain term on the retain split
    alpha: float = number(1.0, 0)  # weight of the retain term
    train_on: str = choice("sample", TRAIN_ON)  # sample (the watched row, as the seed) | split (the forget split)
    batch_size: int = integer(4, 1)  # rows per step: forget rows when train_on is split, and retain rows
    lr: float = number(3e-5, 0, lo_open=True)  # constant AdamW learning rate (the seed used 2e-5 on a 1B model; see the text)
    steps: int = integer(500, 1)  # unlearning steps
    eval_every: int = integer(25, 1)  # score the tracked answers every this many steps
    seeds: list = seeds_param()  # seeds of the sampled answers (and the batch order with split)
    output_dir: str = param("runs", run=False)  # results go to output_dir/npo_toy-<hash of the parameters>/

    def validate(self) -> None:
        # evaluations at step 0, every eval_every steps and after the last step
        n = self.steps // self.eval_every + 1 + (self.steps % self.eval_every > 0)
        if n < 4:
            raise ValueError(f"steps={self.steps}, eval_every={self.eval_every}: {n} evaluations, "
                             "but the slowdown compares slopes over at least 4; lower eval_every "
                             "or raise steps")

    @property
    def losses(self) -> list[str]:
        """The losses to run: ``loss`` first, then (with ``compare``) the other one."""
        return [self.loss] + ([n for n in LOSSES if n != self.loss] if self.compare else [])


SPEC = ChapterSpec(
    inputs=recorded_inputs,
    title="NPO toy", params=Params, cost=106,
    retain_split=lambda p: p.forget_split,
    rows=(
        Row("fixed_over_gt", "change of a fixed unrelated answer / the ground truth's",
            "gt_vs_fixed", "small (plot only)",
            "seed report, Llama-3.2-1B on TOFU forget10, sample 18"),
    ),
)


# ---- data -------------------------------------------------------------------------------
def forget_and_retain(dataset: str = "tinyworld", forget_split: str = "forget10", data_dir=None,
                      world=None):
    """``(forget_rows, retain_rows)`` for ``forget_split`` and its complement (forget01 →
    retain99, forget05 → retain95, forget10 → retain90): the organism's world
    (``dataset="tinyworld"``, ``world`` from ``organism.world_of``) or TOFU."""
    check_choice("dataset", dataset, ("tinyworld", "tofu"))
    check_forget_split(forget_split)
    if dataset == "tinyworld":
        if world is None:
            world = world_of(OrganismConfig())
        splits = world.splits()
        return splits[forget_split], splits[RETAIN_OF[forget_split]]
    return load_tofu(forget_split, data_dir), load_tofu(RETAIN_OF[forget_split], data_dir)


def check_sample_index(sample_index: int, rows) -> dict:
    """The row ``sample_index`` of ``rows``, or a ValueError naming the allowed range."""
    if not isinstance(sample_index, int) or not 0 <= sample_index < len(rows):
        raise ValueError(f"sample_index={sample_index!r} but the forget split has {len(rows)} "
                         f"rows (0-{len(rows) - 1})")
    return rows[sample_index]


# ---- the chapter: several seeds ----------------------------------------------------------
def pick_for_seeds(model, tok, question: str, ground_truth: str, fixed_response: str, seeds,
                   n_candidates: int = 200, temperature: float = 1.5, max_new_tokens: int = 32,
                   n_per_group: int = 5) -> dict:
    """For each seed: sample ``n_candidates`` answers (``torch.manual_seed(seed)``), score
    the distinct ones once (a response sampled under several seeds is scored once) and
    pick the high / middle / low groups. Returns ``{seed: {"candidates", "distinct",
    "tracked", "share_gt"}}`` (``tracked`` as from :func:`tracked_set`)."""
    out, scores = {}, {}
    for s in seeds:
        torch.manual_seed(s)
        cands = sample_responses(model, tok, question, n_candidates, temperature,
                                 max_new_tokens, progress=False)
        distinct = list(dict.fromkeys(c.strip() for c in cands if c.strip()))
        out[s] = {"candidates": cands, "distinct": distinct,
                  "share_gt": sum(c.strip() == ground_truth.strip() for c in cands) / len(cands)}
    new = list(dict.fromkeys(d for v in out.values() for d in v["distinct"]))
    for d, lp in zip(new, score_responses(model, tok, question, new).tolist()):
        scores[d] = lp
    for s, v in out.items():
        groups = pick_responses(v["distinct"], [scores[d] for d in v["distinct"]], n_per_group,
                                exclude=[ground_truth, fixed_response])
        v["tracked"] = tracked_set(groups, ground_truth, fixed_response)
    extra = [ground_truth, fixed_response]
    for d, lp in zip(extra, score_responses(model, tok, question, extra).tolist()):
        scores[d] = lp
    for v in out.values():
        v["start"] = [scores[t] for _, _, t in v["tracked"]]
    return out


def unlearn_seeds(model, tok, train_rows, question: str, picked: dict, losses, train_on: str,
                  **kw) -> dict:
    """Run :func:`kbnb.unlearning.tracking.unlearn_and_track` for each loss in ``losses``
    and each seed of ``picked`` (from :func:`pick_for_seeds`), tracking each seed's answers. With ``train_on="sample"``
    the training is the same for every seed (one row, no dropout: nothing random), so
    it runs once per loss, tracking every seed's answers together. Returns ``{seed:
    {loss: history}}`` with each history's ``logps`` restricted to that seed's tracked
    answers (in their order)."""
    check_choice("train_on", train_on, TRAIN_ON)
    seeds = list(picked)
    out = {s: {} for s in seeds}
    for name in losses:
        if train_on == "sample":
            texts = list(dict.fromkeys(t for s in seeds for _, _, t in picked[s]["tracked"]))
            h = unlearn_and_track(model, tok, train_rows, question, texts, loss=name,
                                  seed=seeds[0], progress=False, **kw)
            pos = {t: i for i, t in enumerate(texts)}
            for s in seeds:
                cols = [pos[t] for _, _, t in picked[s]["tracked"]]
                out[s][name] = {**h, "logps": [[row[i] for i in cols] for row in h["logps"]]}
        else:
            for s in seeds:
                texts = [t for _, _, t in picked[s]["tracked"]]
                out[s][name] = unlearn_and_track(model, tok, train_rows, question, texts,
                                                 loss=name, seed=s, progress=False, **kw)
    return out


def run_unlearning(p: Params, model, tok, row: dict, forget_set, retain_set, picked: dict,
                   after=None) -> dict:
    """The chapter's runs: :func:`unlearn_seeds` with the parameters ``p``, on the watched
    ``row`` (``train_on="sample"``) or the whole ``forget_set``; ``after`` as in
    :func:`kbnb.unlearning.tracking.unlearn_and_track`. Returns ``{seed: {loss: history}}``."""
    train_rows = [row] if p.train_on == "sample" else forget_set
    return unlearn_seeds(model, tok, train_rows, row["question"], picked, p.losses, p.train_on,
                         beta=p.beta, retain_rows=retain_set, retain_loss=p.retain_loss,
                         alpha=p.alpha, lr=p.lr, steps=p.steps, eval_every=p.eval_every,
                         batch_size=p.batch_size, after=after)


def seed_summary(history: dict, tracked) -> dict:
    """The numbers of one seed's run: per loss the change (nats) of each group's mean
    log-probability from start to end, the slowdown of the ground truth's fall, the
    ground truth's fall over the fixed answer's (floored at 1 nat), the fixed
    answer's change over the ground truth's (``fixed_over_gt``) and each tracked
    response's own change, by group (``response_change``: ``{group: [nats]}``)."""
    out = {}
    for name, h in history.items():
        ser = group_series(h, tracked)
        change = {g: s[-1] - s[0] for g, s in ser.items()}
        each = {}
        for i, (_, g, _) in enumerate(tracked):
            each.setdefault(g, []).append(h["logps"][-1][i] - h["logps"][0][i])
        out[name] = {"series": ser, "change": change, "response_change": each,
                     "slowdown": slowdown(h["steps"], ser["ground_truth"]),
                     "gt_over_fixed": -change["ground_truth"] / max(-change["fixed"], 1.0),
                     "fixed_over_gt": change["fixed"] / change["ground_truth"]
                     if change["ground_truth"] != 0 else float("nan")}
    return out


def record_and_check(ch, summaries: dict, loss: str = "npo") -> dict:
    """Headlines and checks of the NPO toy on a :class:`kbnb.chapter.Chapter`.

    summaries: ``{seed: seed_summary}``. Headlines: ``fixed_over_gt`` (the fixed answer's
    change over the ground truth's, main loss), ``gt_fall`` and each group's fall. Checks
    (:data:`TARGETS`): the ground truth falls at least 5x the fixed answer; NPO's fall
    slows; GA's does not. Over seeds when there are several; with one seed the checks
    have no interval and only the plain booleans are returned, a group's fall has an
    interval over its tracked responses, and the numbers of a single answer (the
    ground truth's fall, ``fixed_over_gt``) are not measurable (one run, one value).
    Returns the plain checks ``{name: bool}``."""
    T = TARGETS
    for s, sm in summaries.items():
        m = sm[loss]
        vals = {"fixed_over_gt": m["fixed_over_gt"], "gt_fall": -m["change"]["ground_truth"],
                "fixed_change": m["change"]["fixed"], "gt_over_fixed": m["gt_over_fixed"],
                **{f"{g}_fall": -m["change"][g] for g in GROUPS}}
        for name in LOSSES:
            if name in sm:
                vals[f"{name}_slope_ratio"] = sm[name]["slowdown"]["ratio"]
        ch.record(s, **vals)
    one = len(ch.seeds) == 1
    labels = {"fixed_over_gt": "change of the fixed answer / change of the ground truth",
              "gt_fall": "fall of the ground truth (nats)",
              "high_fall": "fall of the high group (nats)",
              "middle_fall": "fall of the middle group (nats)",
              "low_fall": "fall of the low group (nats)"}
    s0 = ch.seeds[0]
    for k, lab in labels.items():
        g = k.removesuffix("_fall")
        if one and g in GROUPS:  # one run: over the group's tracked responses
            falls = [-c for c in summaries[s0][loss]["response_change"][g]]
            ch.headline(k, per_item=falls, items="responses", label=lab, bounds=stats.UNBOUNDED)
        else:  # several seeds: over seeds; one seed, a single answer: not measurable
            ch.headline(k, label=lab, bounds=stats.UNBOUNDED)
    plain = {"gt_over_fixed": summaries[s0][loss]["gt_over_fixed"] >= T["gt_over_fixed_min"]}
    if "npo" in summaries[s0]:
        plain["npo_slows"] = summaries[s0]["npo"]["slowdown"]["ratio"] < T["npo_slope_ratio_max"]
    if "ga" in summaries[s0]:
        plain["ga_keeps"] = summaries[s0]["ga"]["slowdown"]["ratio"] > T["ga_slope_ratio_min"]
    if one:
        return plain
    v = ch.check("gt_vs_fixed", "the ground truth's fall over the fixed answer's",
                 ch.per_seed("gt_over_fixed"), T["gt_over_fixed_min"], digits=1,
                 **declared(SMALLEST_EFFECTS, "gt_vs_fixed"))
    note_constant(v, ch.per_seed("gt_over_fixed"))
    if "npo" in summaries[s0]:
        v = ch.check("npo_slows", "NPO's last-over-first slope ratio",
                     ch.per_seed("npo_slope_ratio"), T["npo_slope_ratio_max"], better="lower",
                     **declared(SMALLEST_EFFECTS, "npo_slows"))
        note_constant(v, ch.per_seed("npo_slope_ratio"))
    if "ga" in summaries[s0]:
        v = ch.check("ga_keeps", "gradient ascent's last-over-first slope ratio",
                     ch.per_seed("ga_slope_ratio"), T["ga_slope_ratio_min"],
                     **declared(SMALLEST_EFFECTS, "ga_keeps"))
        note_constant(v, ch.per_seed("ga_slope_ratio"))
    return plain


COLORS = {"high": "tab:green", "middle": "tab:orange", "low": "tab:red",
          "ground_truth": "black", "fixed": "tab:blue"}


def _names(k: int) -> dict:
    return {"high": f"high (mean of {k})", "middle": f"middle (mean of {k})",
            "low": f"low (mean of {k})", "ground_truth": "ground truth", "fixed": "fixed response"}


def plot_log_probs(history: dict, tracked, series: dict, title: str, k: int):
    """Each tracked answer's log-probability (faint) and the group means (thick)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = history["steps"]
    for i, (_, g, _) in enumerate(tracked):
        if g in GROUPS:
            ax.plot(steps, [r[i] for r in history["logps"]], color=COLORS[g], lw=0.7, alpha=0.3)
    names = _names(k)
    for g, s in series.items():
        ax.plot(steps, s, color=COLORS[g], lw=2.2, marker="o", ms=3, label=names[g])
    ax.set_xlabel("unlearning step")
    ax.set_ylabel("log π(answer | question) (nats, summed over tokens)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_npo_vs_ga(history: dict, series: dict, beta: float, k: int):
    """Left: ground truth, high group and fixed answer under each loss; right: NPO's
    weight 2σ(βΔ) on gradient ascent's gradient."""
    import matplotlib.pyplot as plt
    names = _names(k)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in zip(history, ("-", "--")):
        st = history[name]["steps"]
        for g in ("ground_truth", "high", "fixed"):
            ax1.plot(st, series[name][g], style, color=COLORS[g], lw=1.8,
                     label=f"{name.upper()}: {names[g]}")
    if "npo" in history:
        w = history["npo"]["npo_weight"]
        ax2.plot(range(1, len(w) + 1), w, color="tab:purple", label="NPO: 2σ(βΔ)")
    ax2.axhline(1.0, color="tab:gray", ls="--", label="GA: always 1")
    ax1.set_xlabel("unlearning step")
    ax1.set_ylabel("log π(answer | question) (nats)")
    ax1.set_title("NPO vs gradient ascent on the same sample")
    ax1.legend(fontsize=7)
    ax2.set_yscale("log")
    ax2.set_xlabel("unlearning step")
    ax2.set_ylabel("weight on the GA gradient (factor, log scale)")
    ax2.set_title(f"How hard each loss still pushes (β={beta})")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- the field's metrics (TOFU, against the retain organism) -----------------------------
def tofu_scorer(model_name: str, tok, world, forget_split: str):
    """On the organism (``world`` given and ``model_name`` an organism name): a function of
    an unlearned copy returning TOFU's headline metrics against the retain organism
    (:func:`kbnb.eval.tofu_organism.scorer`); else None."""
    if world is None or parse_organism_name(model_name) is None:
        return None
    return tofu_metrics_scorer(tok, world, forget_split, model_name)


def record_tofu(ch, model, history: dict, scorer) -> dict | None:
    """Record each seed's forget quality and model utility per loss on ``ch`` (headlines
    ``forget_quality_<loss>``, ``model_utility_<loss>`` with several seeds) and return
    ``{"untouched": ..., loss: ...}`` for metrics.json (None without a scorer)."""
    if scorer is None:
        return None
    s0 = ch.seeds[0]
    out = {"untouched": scorer(model)}
    for name in history[s0]:
        out[name] = history[s0][name]["after"]
        for s in ch.seeds:
            a = history[s][name]["after"]
            ch.record(s, **{f"forget_quality_{name}": a["forget_quality"],
                            f"model_utility_{name}": a["model_utility"]})
        if len(ch.seeds) > 1:
            ch.headline(f"forget_quality_{name}", label=f"{name.upper()}: forget quality",
                        bounds=stats.UNIT)
            ch.headline(f"model_utility_{name}", label=f"{name.upper()}: model utility",
                        bounds=stats.UNIT)
    return out


def tofu_sentence(tofu: dict | None, loss: str = "npo") -> str:
    """The computed sentence on forget quality and model utility (or why there is none)."""
    if not tofu:
        return ("Forget quality and model utility need a retain model; they are computed on "
                "the organism (dataset tinyworld), whose retain organism kbnb trains itself.")
    u, m = tofu["untouched"], tofu[loss]
    text = (f"Against the retain organism (trained without the forget split's authors), "
            f"the {loss.upper()}-unlearned model has forget quality {m['forget_quality']:.2g} "
            f"(untouched organism: {u['forget_quality']:.2g}) and model utility "
            f"{m['model_utility']:.3f} (untouched: {u['model_utility']:.3f}).")
    text += (" Unlearning one sample barely moves the forget set's truth ratios as a whole, "
             "so forget quality stays near the untouched model's; the unlearning chapter "
             "unlearns the whole split." if m["forget_quality"] < 0.01 else "")
    return text



# ---- what the notebook writes and glues ---------------------------------------------------
def results_file(params: dict, picked: dict, history: dict, summaries: dict) -> dict:
    """The content of ``npo_unlearn_results.json``: per seed the tracked responses with
    their initial log-probabilities and, per loss, the tracked series and the losses."""
    return {"params": params, "seeds": {s: {
        "responses": [{"label": lab, "group": g, "text": t, "initial_logp": lp}
                      for (lab, g, t), lp in zip(picked[s]["tracked"], picked[s]["start"])],
        "series": {n: {"steps": h["steps"], "logps": h["logps"],
                       "group_means": summaries[s][n]["series"], "losses": h["losses"],
                       "forget_logp": h["forget_logp"], "npo_weight": h["npo_weight"]}
                   for n, h in history[s].items()}} for s in summaries}}


def metrics(row: dict, picked: dict, summaries: dict, plain: dict, tofu) -> dict:
    """The chapter's own entries of metrics.json (beside the headlines and checks)."""
    return {"question": row["question"], "ground_truth": row["answer"],
            "n_distinct_candidates": {s: len(v["distinct"]) for s, v in picked.items()},
            "share_ground_truth_in_samples": {s: v["share_gt"] for s, v in picked.items()},
            "change": {s: {n: v["change"] for n, v in sm.items()} for s, sm in summaries.items()},
            "slowdown": {s: {n: v["slowdown"] for n, v in sm.items()}
                         for s, sm in summaries.items()},
            "targets": TARGETS, "checks_plain": plain,
            "tofu_metrics": tofu,
            }


def glue_values(p: Params, ch, picked: dict, history: dict, summaries: dict, plain: dict,
                tofu) -> dict:
    """The computed numbers and sentences the chapter's text glues (first seed)."""
    s0 = ch.seeds[0]
    p0, h0, sm0 = picked[s0], history[s0], summaries[s0]
    m0 = sm0[p.loss]
    falls = {g: -m0["change"][g] for g in GROUPS}
    gt_fall = -m0["change"]["ground_truth"]
    if "npo" in sm0 and "ga" in sm0:
        ga_f, npo_f = sm0["ga"]["change"]["fixed"], sm0["npo"]["change"]["fixed"]
        collapse = (f"The fixed answer changed by {ga_f:+.1f} nats under gradient ascent against "
                    f"{npo_f:+.1f} under NPO")
        collapse += (": gradient ascent's unbounded objective drags unrelated text down with the "
                     "forgotten answer, the first sign of the catastrophic collapse NPO was "
                     "designed to avoid." if ga_f < npo_f - 10 else
                     ": in this run gradient ascent did not yet drag unrelated text down more "
                     "than NPO did.")
    else:
        collapse = "(The comparison run was skipped: compare=False.)"
    return {
        "tofu_sentence": tofu_sentence(tofu, p.loss),
        "first_seed": s0,
        "n_per_group_text": str(p.n_per_group),
        "n_distinct": len(p0["distinct"]),
        "share_gt": p0["share_gt"],
        "gt_start": m0["series"]["ground_truth"][0],
        "gt_end": m0["series"]["ground_truth"][-1],
        "loss_name": p.loss.upper(),
        "follow": "fell with it" if min(falls.values()) > 0.5 * gt_fall else
                  "fell less than it" if min(falls.values()) > 0 else "did not all fall",
        "fixed_change": m0["change"]["fixed"],
        **{f"{n}_last_slope": sm0[n]["slowdown"]["last_slope"] if n in sm0 else float("nan")
           for n in LOSSES},
        "npo_weight_end": h0["npo"]["npo_weight"][-1] if "npo" in h0 else float("nan"),
        "collapse": collapse,
        "determinism": "With train_on=\"sample\" the training itself is not random, so the "
                       "ground truth's and the fixed answer's numbers are the same for every "
                       "seed (their intervals have zero width); the seeds vary the sampled "
                       "answers." if p.train_on == "sample" else "",
        "check_list": " ".join(v.sentence for v in ch.verdicts.values()) or
                      "With one seed the targets have no interval: "
                      + ", ".join(f"{k} {'met' if ok else 'missed'}" for k, ok in plain.items())
                      + ".",
        "lr_used": f"{p.lr:g}",
        "temperature_used": f"{p.temperature:g}",
    }
