"""The R-Tuning chapter (``notebooks/rtuning.ipynb``): parameters, declaration, the
seed-by-seed run of the method and the chapter's tables, headlines and checks.

The algorithms (query, refusal-aware data, P(sure), AP) are in
:mod:`kbnb.methods.rtuning`; this module runs them as the chapter does: the untuned
model's answers once for every seed's questions (:func:`query_untuned`), then per seed
its own training data, tuning and evaluation (:func:`run_seeds`), then a headline with its
95% interval for every metric and the checks (:func:`chapter_results`, intervals from
:mod:`kbnb.eval.stats`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kbnb.core.seeds import seed_everything
from kbnb.data.loaders import load_mmlu, load_tofu_authors_choice, load_tofu_choice
from kbnb.eval import calibration, stats, tuned_targets
from kbnb.eval.boundary import LEVELS, knowledge_level
from kbnb.lm.encoding import completion_sep, encode_prompt
from kbnb.methods import rtuning
from kbnb.report.chapter import declared
from kbnb.report.params import ModelParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row, recorded_inputs

DATASETS = ("tinyworld", "mmlu", "tofu_choice", "tofu_authors")


@dataclass(frozen=True)
class Params(ModelParams):
    """The parameters of ``notebooks/rtuning.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # the embedded organism, or a hub id / local path
    dataset: str = choice("tinyworld", DATASETS)  # tinyworld | mmlu | tofu_choice | tofu_authors
    data_dir: str = param("")  # folder with mmlu/ or tofu/; empty: $KBNB_DATA_DIR or the hub
    scoring: str = choice("auto", rtuning.SCORINGS)  # auto (tinyworld: cloze, mmlu: letter) | letter (next token) | cloze
    n_shots: int = integer(-1, -1)  # answered examples per question (letter only); -1: 5 mmlu, 0 tinyworld
    prompt_header: str = choice("kbnb", rtuning.HEADERS)  # kbnb (one space after "about") | reference (two spaces)
    method: str = choice("unsure", rtuning.REFUSAL_DATA_METHODS)  # refusal-aware data: unsure (the main method) | unknown | uncertain
    n_samples: int = integer(5, 2)  # answers sampled per question for method uncertain (reference: num_try)
    temperature: float = number(0.7, 0, lo_open=True)  # sampling temperature for method uncertain (as in the reference)
    epochs: int = integer(10, 0)  # fine-tuning epochs over the refusal-aware data
    lr: float = number(1e-3, 0, lo_open=True)  # fine-tuning learning rate (about 2e-5 full or 1e-4 LoRA on a 7B model)
    train_batch_size: int = integer(16, 1)  # examples per fine-tuning step
    lora: bool = flag(False)  # True: tune LoRA adapters (peft) instead of all weights, for large models
    autocast: str = choice("none", ("none", "bfloat16"))  # none | bfloat16 (~1.8x faster with AVX-512, ~24x slower on AVX2 only)
    max_questions: int = integer(400, 0)  # at most this many questions per split (train, test, ood); 0: all
    batch_size: int = integer(64, 1)  # prompts per forward pass when querying and scoring
    seeds: list = seeds_param()  # one run each: question sample, sampling, data order, training
    output_dir: str = param("runs", run=False)  # results go to output_dir/rtuning-<hash of the parameters>/

    @property
    def autocast_dtype(self) -> str | None:
        """``autocast`` as :func:`kbnb.lm.finetune.finetune` takes it (None for ``none``)."""
        return None if self.autocast == "none" else self.autocast

    @property
    def resolved_scoring(self) -> str:
        """``scoring`` with ``auto`` resolved: ``cloze`` on tinyworld, ``letter`` on MMLU
        (:func:`kbnb.methods.rtuning.resolve_scoring`)."""
        return rtuning.resolve_scoring(self.scoring, self.dataset)

    @property
    def resolved_shots(self) -> int:
        """``n_shots`` with ``-1`` resolved: 5 for MMLU with letter scoring (the
        reference), else 0."""
        if self.n_shots >= 0:
            return self.n_shots
        return 5 if self.dataset == "mmlu" and self.resolved_scoring == "letter" else 0

    def validate(self) -> None:
        if self.dataset == "tofu_authors":
            tuned_targets.tuned_recipe_of(self.model_name, self.dataset)
        if self.resolved_shots > 0 and self.resolved_scoring == "cloze":
            raise ValueError(f"n_shots={self.n_shots} needs scoring='letter' (cloze prompts: 0-shot)")

    def run_params(self) -> dict:
        """The parameters with ``scoring`` and ``n_shots`` resolved (what the run used)."""
        return {**super().run_params(), "scoring": self.resolved_scoring,
                "n_shots": self.resolved_shots}


SPEC = ChapterSpec(
    inputs=recorded_inputs,
    title="R-Tuning", params=Params, cost=288,
    rows=(
        Row("ap_test_tuned", "AP of the R-Tuning score, in-domain", "ap_gain_test",
            "above the untuned model's", "Zhang et al. 2024, OpenLLaMA-3B on MMLU"),
        Row("ap_ood_tuned", "AP of the R-Tuning score, out of domain", "ap_gain_ood",
            "above the untuned model's", "Zhang et al. 2024, OpenLLaMA-3B on MMLU"),
        Row("auroc_test_untuned", "AUROC of the untuned confidence, in-domain (R-Tuning's "
            "room: 1 leaves none)"),
        Row("unsure_on_unseen", "says 'I am unsure' about unseen authors",
            "unsure_on_unseen_target", "", ""),
    ),
)


# ---- questions -------------------------------------------------------------------------
def load_questions(p: Params, seeds, world=None) -> tuple[list, list, dict]:
    """``(rows, dev_rows, {seed: split})`` of ``p.dataset``: every question, the pool of
    answered examples (shots) and each seed's train / test / ood split.

    - ``tinyworld``: the organism's world (``world``), attributes split by kind
      (:func:`kbnb.methods.rtuning.split_tinyworld`);
    - ``mmlu``: the first 28 subjects in-domain (:func:`~kbnb.methods.rtuning.split_by_subject`);
    - ``tofu_choice``: real authors in-domain, world facts out of domain;
    - ``tofu_authors``: the TOFU-tuned model's taught and never-taught fictitious authors
      in-domain, halved by author (:func:`~kbnb.methods.rtuning.split_by_author`), real
      authors and world facts out of domain."""
    mq = p.max_questions
    if p.dataset == "tinyworld":
        rows, dev = rtuning.tinyworld_questions_and_shots(world)
        return rows, dev, {s: rtuning.split_tinyworld(rows, max_questions=mq, seed=s)
                           for s in seeds}
    if p.dataset == "tofu_choice":
        rows = load_tofu_choice(p.data_dir)
        return rows, [], {s: rtuning.split_by_subject(rows, 1, mq, s) for s in seeds}
    if p.dataset == "tofu_authors":
        taught = tuned_targets.taught_questions(
            tuned_targets.tuned_recipe_of(p.model_name, p.dataset), p.data_dir or None)
        rows = load_tofu_authors_choice(p.data_dir, taught)
        ood = load_tofu_choice(p.data_dir)
        return rows + ood, [], {s: rtuning.split_by_author(rows, ood, mq, s) for s in seeds}
    rows = load_mmlu("test", p.data_dir)
    return rows, load_mmlu("dev", p.data_dir), {
        s: rtuning.split_by_subject(rows, rtuning.MMLU_IN_DOMAIN, mq, s) for s in seeds}


# ---- the run: untuned answers, then one tuning per seed ---------------------------------
def query_untuned(ch, p: Params, model, tok, splits: dict, prompts: dict) -> tuple[dict, dict]:
    """The untuned model on every seed's questions, each distinct prompt once
    (:func:`by_prompt`; its answers are deterministic).

    splits, prompts: ``{seed: {split: rows / prompts}}``. Returns ``(train_q, before)``:
    ``train_q = {seed: questions_frame}`` of the train split (who is certain) and
    ``before = {"test" | "ood": {seed: score_questions frame}}``."""
    scoring = p.resolved_scoring

    def untuned(split_name, with_sure):
        def ask(rows, ps):
            if with_sure:
                return rtuning.score_questions(model, tok, rows, ps, p.method, scoring,
                                               batch_size=p.batch_size, progress=False)
            q = rtuning.query(model, tok, ps, rows, scoring=scoring, batch_size=p.batch_size,
                              progress=False)
            return rtuning.questions_frame(rows, q)
        frames = by_prompt(ask, [splits[s][split_name] for s in ch.seeds],
                           [prompts[s][split_name] for s in ch.seeds])
        return dict(zip(ch.seeds, frames))

    with ch.timed("query_untuned"):
        train_q = untuned("train", with_sure=False)
        before = {k: untuned(k, with_sure=True) for k in ("test", "ood")}
    return train_q, before


@dataclass
class SeedRuns:
    """What :func:`run_seeds` gives, each ``{seed: ...}``: ``items`` (:func:`run_items`),
    ``after`` (``{"test" | "ood": score_questions frame}`` of the tuned model),
    ``losses`` (tuning loss per step) and ``labels`` (training labels and their counts)."""
    items: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)


def run_seeds(ch, p: Params, model, tok, splits: dict, prompts: dict, train_q: dict,
              before: dict) -> SeedRuns:
    """One R-Tuning run per seed: ``seed_everything(seed)``, the refusal-aware data of
    the seed's train split (:func:`kbnb.methods.rtuning.refusal_aware_examples`, written
    to ``<run folder>/training_data/seed<N>/`` as LMFlow JSON and a dataset), tuning a
    fresh copy of ``model`` (:func:`kbnb.methods.rtuning.tune_on_examples`) and scoring it
    on the seed's test and out-of-domain questions, in that order.

    splits, prompts: ``{seed: {split: ...}}``; train_q, before: :func:`query_untuned`."""
    import pandas as pd
    scoring = p.resolved_scoring
    sep = completion_sep(tok, prompts[ch.seeds[0]]["train"][0])
    out = SeedRuns()
    for s in ch.seeds:
        seed_everything(s)
        sp, pr = splits[s], prompts[s]
        examples = rtuning.refusal_aware_examples(
            model, tok, sp["train"], pr["train"], train_q[s]["correct"].tolist(), p.method,
            scoring, sep, n_samples=p.n_samples, temperature=p.temperature,
            batch_size=p.batch_size, seed=s)
        rtuning.write_training_data(examples, ch.out / "training_data" / f"seed{s}",
                                    f"{p.dataset}_{p.method}")
        out.labels[s] = pd.Series([e["label"] for e in examples]).value_counts().to_dict()
        with ch.timed("tune"):
            tuned, out.losses[s] = rtuning.tune_on_examples(
                model, tok, examples, epochs=p.epochs, lr=p.lr, batch_size=p.train_batch_size,
                lora=p.lora, seed=s, progress=False,
                autocast=p.autocast_dtype)
        with ch.timed("evaluate_tuned"):
            out.after[s] = {k: rtuning.score_questions(tuned, tok, sp[k], pr[k], p.method,
                                                       scoring, batch_size=p.batch_size,
                                                       progress=False)
                            for k in ("test", "ood")}
        del tuned
        out.items[s] = run_items({k: before[k][s] for k in ("test", "ood")}, out.after[s])
    return out


# ---- tables ------------------------------------------------------------------------------
def subject_table(df):
    """Per subject: questions, accuracy, mean confidence, and mean confidence on the
    certain (correct) and uncertain (wrong) questions."""
    import pandas as pd

    g = df.groupby("subject", sort=True)
    t = pd.DataFrame({"questions": g.size(), "accuracy": g["correct"].mean(),
                      "confidence": g["conf"].mean()})
    t["conf_certain"] = df[df["correct"]].groupby("subject")["conf"].mean()
    t["conf_uncertain"] = df[~df["correct"]].groupby("subject")["conf"].mean()
    return t


OTHER_LEVEL = "out of domain"  # questions without an author group (tofu_authors' ood)


def level_column(df) -> tuple[list, list]:
    """``(levels, order)``: each question's knowledge level
    (:func:`kbnb.eval.boundary.knowledge_level` of its ``group`` and ``exposure``;
    :data:`OTHER_LEVEL` where it has no group) and the levels present, in
    :data:`kbnb.eval.boundary.LEVELS` order, :data:`OTHER_LEVEL` last."""
    levels = [knowledge_level(dict(r, exposure=int(r["exposure"])))
              if isinstance(r["group"], str) else OTHER_LEVEL
              for r in df[["group", "exposure"]].to_dict("records")]  # NaN made it a float
    present = set(levels)
    return levels, [lv for lv in (*LEVELS, OTHER_LEVEL) if lv in present]


def boundary_shares(df) -> dict:
    """Share of "I am sure" (answered) on known-author questions and of "I am unsure"
    (not answered) on unseen-author questions (tinyworld rows with ``group``)."""
    if "group" not in df:
        return {}
    known, unseen = df[df["group"] == "known"], df[df["group"] == "unseen"]
    return {"sure_on_known": float(known["answered"].mean()) if len(known) else float("nan"),
            "unsure_on_unseen": float((~unseen["answered"]).mean()) if len(unseen) else float("nan"),
            "n_known": int(len(known)), "n_unseen": int(len(unseen))}


# ---- headlines and checks -----------------------------------------------------------------
HEADLINES = {
    "ap_test_tuned": "AP, R-Tuned score, in-domain test",
    "ap_ood_tuned": "AP, R-Tuned score, out-of-domain",
    "ap_test_untuned": "AP, untuned confidence, in-domain test",
    "ap_ood_untuned": "AP, untuned confidence, out-of-domain",
    "auroc_test_tuned": "AUROC, R-Tuned score, in-domain test",
    "auroc_ood_tuned": "AUROC, R-Tuned score, out-of-domain",
    "auroc_test_untuned": "AUROC, untuned confidence, in-domain test",
    "auroc_ood_untuned": "AUROC, untuned confidence, out-of-domain",
    "acc_test_before": "accuracy, untuned, in-domain test",
    "acc_test_after": "accuracy, R-Tuned, in-domain test",
    "acc_ood_before": "accuracy, untuned, out-of-domain",
    "acc_ood_after": "accuracy, R-Tuned, out-of-domain",
    "sure_on_known": "says 'I am sure' on known authors",
    "unsure_on_unseen": "says 'I am unsure' on unseen authors",
}
TARGET_SHARE = 0.8  # the chapter's target for both boundary shares
# The smallest effect that matters for each claim, (size, source) or None
# (kbnb.eval.verdicts: an interval inside ±size reads "excluded at the paper's size").
SMALLEST_EFFECTS = {
    # AP of the R-Tuned model over the untuned model's confidence. The paper's own gain on
    # MMLU (Zhang et al. 2024, single-task AP table) is the size these claims want, but the
    # project's references (MISSION.md, the seed report) do not hold its numbers and they
    # could not be checked here: left without one until the paper's numbers are copied in
    # as (gain in AP units, "Zhang et al. 2024, Table n: ..."), so they never read "excluded".
    "ap_gain_test": None,
    "ap_gain_ood": None,
    # shares against the chapter's design target TARGET_SHARE, not effects the paper
    # reports: none
    "sure_on_known_target": None,
    "unsure_on_unseen_target": None,
}


def by_prompt(fn, rows_lists, prompts_lists):
    """Run ``fn(rows, prompts) -> DataFrame`` (one row per prompt) once on the distinct
    prompts of several lists and return one frame per list, in its order.

    The untuned model's answers are deterministic, so questions shared by several
    seeds' splits are scored once."""
    uniq = {}
    for rows, prompts in zip(rows_lists, prompts_lists):
        if len(rows) != len(prompts):
            raise ValueError(f"{len(rows)} rows but {len(prompts)} prompts")
        for r, p in zip(rows, prompts):
            uniq.setdefault(p, r)
    ps = list(uniq)
    df = fn([uniq[p] for p in ps], ps) if ps else None
    pos = {p: i for i, p in enumerate(ps)}
    return [df.iloc[[pos[p] for p in prompts]].reset_index(drop=True) if prompts else df
            for prompts in prompts_lists]


def run_items(before: dict, after: dict) -> dict:
    """One seed's headline values with their per-question data.

    before, after: ``{"test": frame, "ood": frame}`` of
    :func:`kbnb.methods.rtuning.score_questions` for the untuned and the tuned model on
    the same questions. Returns ``{name: {"value", "per_item", "statistic"}}`` for every
    name of :data:`HEADLINES` (``statistic`` is
    :func:`kbnb.methods.rtuning.average_precision` for the APs, else None: the mean of
    ``per_item``)."""
    import pandas as pd
    out = {}
    for k in ("test", "ood"):
        b, a = before[k], after[k]
        if len(a) != len(b) or list(a["gold"]) != list(b["gold"]):
            raise ValueError(f"split {k!r}: untuned and tuned frames are not the same questions")
        for which, df, col in (("tuned", a, "score"), ("untuned", b, "conf")):
            cols = (df["correct"].to_numpy(float), df[col].to_numpy(float))
            for name, statistic in ((f"ap_{k}_{which}", rtuning.average_precision),
                                    (f"auroc_{k}_{which}", calibration.auroc)):
                out[name] = {"value": statistic(*cols), "per_item": cols,
                             "statistic": statistic}
        for name, df in ((f"acc_{k}_before", b), (f"acc_{k}_after", a)):
            y = df["correct"].to_numpy(float)
            out[name] = {"value": float(y.mean()), "per_item": y, "statistic": None}
    both = pd.concat([after["test"], after["ood"]], ignore_index=True)
    if "group" in both:
        sure = both.loc[both["group"] == "known", "answered"].to_numpy(float)
        unsure = 1.0 - both.loc[both["group"] == "unseen", "answered"].to_numpy(float)
        for name, y in (("sure_on_known", sure), ("unsure_on_unseen", unsure)):
            out[name] = {"value": float(y.mean()) if y.size else float("nan"), "per_item": y,
                         "statistic": None}
    return out


def chapter_results(ch, items_by_seed: dict, target_share: float = TARGET_SHARE) -> None:
    """Record every seed's values on ``ch`` (a :class:`kbnb.report.chapter.Chapter`), make the
    headlines and the checks.

    items_by_seed: ``{seed: run_items(...)}``. With several seeds the intervals are over
    seeds and the AP checks are paired over seeds; with one seed the intervals are
    bootstraps over questions and the AP checks are paired bootstraps of the AP
    difference over the same questions. Checks: tuned vs untuned AP (in-domain test,
    out of domain), and the two boundary shares against ``target_share``."""
    # a metric undefined in some seed (AP when no answer is correct) gets no headline
    # and no check
    last = ch.record_items(items_by_seed, HEADLINES, {k: stats.UNIT for k in HEADLINES})
    several = len(ch.seeds) > 1
    where = {"test": "on the in-domain test questions", "ood": "out of domain"}
    for k in ("test", "ood"):
        new, base = f"ap_{k}_tuned", f"ap_{k}_untuned"
        if new not in last or base not in last:
            continue
        if several:
            args = dict(new=ch.per_seed(new), baseline=ch.per_seed(base))
        else:
            args = dict(new=last[new]["per_item"], baseline=last[base]["per_item"],
                        statistic=rtuning.average_precision)
        ch.check(f"ap_gain_{k}", f"AP {where[k]}", better="higher", subject="the R-Tuned model",
                 baseline_name="the untuned model's confidence",
                 **declared(SMALLEST_EFFECTS, f"ap_gain_{k}"), **args)
    for name, what in (("sure_on_known", "the share of known-author questions marked sure"),
                       ("unsure_on_unseen", "the share of unseen-author questions marked "
                                            "unsure")):
        if name in last:
            new = ch.per_seed(name) if several else last[name]["per_item"]
            ch.check(f"{name}_target", what, new, target_share, better="higher",
                     bounds=stats.UNIT, **declared(SMALLEST_EFFECTS, f"{name}_target"))


# ---- the precondition: an untuned model above chance ---------------------------------------
SPLIT_WORDS = {"test": "in-domain test", "ood": "out-of-domain"}


def chance_level(rows) -> float:
    """1 / the number of options of the (multiple-choice) questions."""
    n = {len(r["choices"]) for r in rows}
    if len(n) != 1:
        raise ValueError(f"questions with different numbers of options: {sorted(n)}")
    return 1.0 / n.pop()


def distinct_frames(frames_by_seed: dict, prompts_by_seed: dict):
    """The distinct questions of several seeds' frames of one split (by prompt)."""
    import pandas as pd
    df = pd.concat([f.assign(prompt=list(prompts_by_seed[s])) for s, f in frames_by_seed.items()],
                   ignore_index=True)
    return df.drop_duplicates(subset=["prompt"]).drop(columns="prompt").reset_index(drop=True)


def above_chance(frames: dict, chance: float) -> dict:
    """Whether the untuned model answers above chance on each evaluation split: the
    accuracy on its distinct questions, its exact binomial interval and the one-sided
    exact p-value of "accuracy <= chance" (:func:`kbnb.eval.stats.share_above`); above
    chance when that p-value is below 0.05.

    frames: ``{"test" | "ood": frame with a "correct" column}``. Returns
    ``{split: {"accuracy", "n", "n_correct", "chance", "ci95", "p_value", "test",
    "above_chance"}, "holds": bool, "sentence": str}``; R-Tuning's AP is only
    meaningful where it holds (at chance, right and wrong answers are luck, not a
    knowledge boundary, and a random ranking already scores AP ≈ accuracy)."""
    out = {}
    for k, df in frames.items():
        y = df["correct"].to_numpy(bool)
        r = stats.share_above(int(y.sum()), int(y.size), chance)
        out[k] = {"accuracy": r["share"] if r["n"] else float("nan"), "n": r["n"],
                  "n_correct": r["successes"], "chance": float(chance),
                  "ci95": r["ci95"] or [float("nan")] * 2,
                  "p_value": r["p_value"] if r["n"] else float("nan"), "test": r["method"],
                  "above_chance": r["above"]}
    out["holds"] = all(v["above_chance"] for v in out.values())
    out["sentence"] = chance_sentence(out, chance)
    return out


def _acc_text(k, v) -> str:
    lo, hi = v["ci95"]
    return (f"{SPLIT_WORDS.get(k, k)} {v['accuracy']:.1%} "
            f"(95% interval {lo:.1%} to {hi:.1%}, {v['n_correct']} of {v['n']} questions)")


def chance_sentence(result: dict, chance: float) -> str:
    """The precondition said aloud (see :func:`above_chance`)."""
    splits = {k: v for k, v in result.items() if isinstance(v, dict)}
    if result.get("holds"):
        return ("Precondition met: the untuned model answers above chance "
                f"({chance:.0%}) on both evaluation splits, "
                + "; ".join(_acc_text(k, v) for k, v in splits.items())
                + ", so its right and wrong answers mark a knowledge boundary to learn.")
    bad = {k: v for k, v in splits.items() if not v["above_chance"]}
    return ("Precondition NOT met: the untuned model is not shown to answer above chance "
            f"({chance:.0%}) on the " + " and ".join(SPLIT_WORDS.get(k, k) for k in bad)
            + " split" + ("s" if len(bad) > 1 else "") + " ("
            + "; ".join(_acc_text(k, v) for k, v in bad.items())
            + "). Which questions it gets right is then largely luck, not a knowledge "
              "boundary, and a random ranking already scores an AP about equal to the "
              "accuracy, so the APs here say little about R-Tuning.")


def accuracy_and_ap(ch, chance_result: dict):
    """Accuracy beside AP per evaluation split (means over seeds of the recorded
    values), with the chance level and whether the untuned model is above it."""
    import pandas as pd

    def mean(name):
        v = ch.per_seed(name) if ch.has(name) else []
        return float(np.mean(v)) if len(v) else float("nan")

    rows = {}
    for k in ("test", "ood"):
        c = chance_result.get(k, {})
        rows[SPLIT_WORDS[k]] = {
            "accuracy untuned": mean(f"acc_{k}_before"), "AP untuned": mean(f"ap_{k}_untuned"),
            "accuracy tuned": mean(f"acc_{k}_after"), "AP tuned": mean(f"ap_{k}_tuned"),
            "chance": c.get("chance", float("nan")), "above chance": c.get("above_chance")}
    return pd.DataFrame(rows).T


def workload(tok, p: Params, prompts: dict) -> dict:
    """What a run will cost, before it starts: prompt tokens to score (the untuned
    model on every distinct question, its test/ood questions twice for P(sure); then
    each seed's tuned model likewise) and tokens to train (all seeds and epochs), with a
    sentence. For sizing a run on a real model: a 135M model on two CPU cores scores
    a few hundred tokens per second and trains about a quarter as fast."""
    def n_tokens(ps):
        return sum(len(encode_prompt(tok, x)) for x in ps)
    distinct = {k: {x for s in prompts for x in prompts[s][k]} for k in ("train", "test", "ood")}
    score = n_tokens(distinct["train"]) + 2 * (n_tokens(distinct["test"]) + n_tokens(distinct["ood"]))
    score += sum(2 * (n_tokens(prompts[s]["test"]) + n_tokens(prompts[s]["ood"])) for s in prompts)
    train = sum(n_tokens(prompts[s]["train"]) for s in prompts) * p.epochs
    longest = max((len(encode_prompt(tok, x)) for s in prompts for x in prompts[s]["train"]),
                  default=0)
    sentence = (f"This run scores about {score:,} prompt tokens and trains on about {train:,} "
                f"({len(prompts)} seed(s) x {p.epochs} epoch(s); longest training prompt "
                f"{longest} tokens). To make it smaller, lower max_questions, epochs or the "
                "number of seeds.")
    return {"score_tokens": int(score), "train_tokens": int(train),
            "longest_train_prompt": int(longest), "sentence": sentence}
