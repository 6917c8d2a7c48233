"""The RAIT and CRaFT chapter (``notebooks/rait.ipynb``): parameters, declaration, the
seed-by-seed run of the method and the chapter's headlines and checks.

The algorithms (knowledge state, static and dynamic conflict, the three training sets,
tuning and THS) are in :mod:`kbnb.methods.rait`; this module runs them as the chapter
does: several seeds, each with its own questions, samples, sets and tuning order
(:func:`run_seeds`), then a headline with its 95% interval for every metric and the four
checks CRaFT vs Cor-RAIT (:func:`chapter_results`, intervals from :mod:`kbnb.eval.stats`).

Preconditions said aloud, before the expensive work: :func:`rehearsal_plans` (right after
the knowledge query) decides each seed's rehearsal set by ``rehearsal_rule`` (``auto``,
the default: the reference's threshold, falling back to the top ``rehearsal_quantile``
share by Cor when no question reaches it, as on a small model) and checks that RAIT sets
can be built, so a run that cannot work stops before untuned answering, rehearsal and
tuning with one sentence naming the parameter. Each seed's results are written to the
run folder as soon as the seed is done (:func:`save_seed`), before the headlines; a
headline or check with too few questions for an interval is reported as not measurable
(:mod:`kbnb.report.chapter`), not a crash.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from kbnb.core.seeds import seed_everything
from kbnb.eval import stats, tuned_targets
from kbnb.methods import rait, rait_questions
from kbnb.report.chapter import declared
from kbnb.report.params import ModelParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row, recorded_inputs


@dataclass(frozen=True)
class Params(ModelParams):
    """The parameters of ``notebooks/rait.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # "tinyworld" (the embedded organism), a hub id or a local path
    dataset: str = choice("tinyworld", tuple(rait_questions.DATASET_MODES))  # tinyworld | tofu | mmlu | tofu_choice | tofu_authors
    data_dir: str = param("")  # folder with tofu/ and mmlu/ (JSON lines); "": $KBNB_DATA_DIR or the hub
    mode: str = choice("auto", ("auto", *rait_questions.MODES))  # auto | open | mc (multiple choice) | cloze (options scored as answers)
    seeds: list = seeds_param((0, 1, 2, 3, 4))  # five runs (three could not decide): split, sampling, tuning
    output_dir: str = param("runs", run=False)  # results go to output_dir/rait-<hash of the parameters>/
    max_questions: int = integer(160, 1)  # source questions per seed (the sets come from them)
    max_test: int = integer(140, 1)  # held-out questions per test set (authors/subjects never in training)
    test_frac: float = number(0.25, 0, 1, lo_open=True)  # share of authors (mmlu: questions) held out for testing
    n_samples: int = integer(10, 1)  # N sampled answers per question for Cor and Cer (open mode)
    temperature: float = number(1.0, 0, lo_open=True)  # sampling temperature of the knowledge query (the paper: 1.0)
    max_new_tokens: int = integer(32, 1)  # longest sampled or greedy answer, in tokens
    batch_size: int = integer(320, 1)  # sequences per generation batch (questions x n_samples)
    embedder: str = param("default")  # sentence embedder for Cer: default: the offline all-MiniLM-L6-v2
    tau_sim: float = number(0.9, -1, 1)  # cosine threshold tau_sim of CRSS
    repr_layer: int = integer(-1)  # block whose output is the question's representation (-1: last)
    repr_position: str = choice("last", ("last", "mean"))  # last | mean: last prompt token or mean over prompt tokens
    rehearsal_threshold: float = number(0.995, 0, 1)  # rehearse on Cor and Cer at least this (the reference: 0.995)
    rehearsal_rule: str = choice("auto", rait.REHEARSAL_RULES)  # threshold | quantile | auto: threshold, quantile if none passes
    rehearsal_quantile: float = number(0.1, 0, 1, lo_open=True)  # share of source questions the quantile rule rehearses (top Cor)
    max_rehearsal: int = integer(200, 1)  # at most this many rehearsal questions (seeded sample)
    rehearsal_epochs: int = integer(2, 0)  # epochs of rehearsal tuning
    flow_questions: str = choice("idk", ("idk", "all"))  # idk | all: re-query the idk candidates (what CRaFT uses) or all
    flow_rule: str = choice("rose", rait.FLOW_RULES)  # rose: drop idk candidates with dCor > 0; not_fell: keep dCor < 0
    n_train: int = integer(100, 1)  # questions in each RAIT training set (all three the same size)
    idk_frac: float = number(0.2, 0, 1)  # share of "I don't know" questions in a set (the reference: 0.2)
    train_epochs: int = integer(3, 0)  # epochs of RAIT tuning
    lr: float = number(3e-4, 0, lo_open=True)  # learning rate of rehearsal and RAIT tuning (AdamW)
    lora: bool = flag(False)  # LoRA adapters instead of full fine-tuning (for large models)
    autocast: str = choice("none", ("none", "bfloat16"))  # none | bfloat16 (~1.8x faster with AVX-512, ~24x slower on AVX2 only)
    train_batch_size: int = integer(16, 1)  # examples per optimisation step

    def validate(self) -> None:
        rait_questions.resolve_mode(self.dataset, self.mode)  # a mode the dataset lacks: ValueError
        if self.dataset == "tofu_authors":  # needs a TOFU-tuned model: ValueError otherwise
            tuned_targets.tuned_recipe_of(self.model_name, self.dataset)
        rait.check_threshold(self.rehearsal_threshold)  # 0 would rehearse unknown questions

    def taught(self) -> dict | None:
        """For ``dataset="tofu_authors"``: the TOFU-tuned model's ``{question: times
        seen}`` (:func:`kbnb.eval.tuned_targets.taught_questions`); None otherwise."""
        if self.dataset != "tofu_authors":
            return None
        recipe = tuned_targets.tuned_recipe_of(self.model_name, self.dataset)
        return tuned_targets.taught_questions(recipe, self.data_dir or None)

    @property
    def autocast_dtype(self) -> str | None:
        """``autocast`` as :func:`kbnb.lm.finetune.finetune` takes it (None for ``none``)."""
        return None if self.autocast == "none" else self.autocast

    @property
    def resolved_mode(self) -> str:
        """``mode`` with ``auto`` resolved for the dataset (:func:`kbnb.methods.rait_questions.resolve_mode`):
        ``open``, ``mc`` or ``cloze``. The run is hashed with ``mode`` as given."""
        return rait_questions.resolve_mode(self.dataset, self.mode)


SPEC = ChapterSpec(
    inputs=recorded_inputs,
    title="RAIT and CRaFT", params=Params, cost=250,
    rows=(
        Row("over_refusal_craft", "over-refusal after CRaFT (vs Cor-RAIT)", "or_craft_vs_cor",
            "below Cor-RAIT's", "Zhu et al. 2025, LLaMA2/3 on TriviaQA and MMLU"),
        Row("ths_craft", "truthful helpfulness score THS after CRaFT (vs Cor-RAIT)",
            "ths_craft_vs_cor", "above Cor-RAIT's", "Zhu et al. 2025, LLaMA2/3 on TriviaQA and MMLU"),
    ),
)


# ---------------------------------------------------------------- several seeds ----
def knowledge_states(model, tok, row_lists, mode: str = "open", seeds=None, **kw) -> list[dict]:
    """:func:`kbnb.methods.rait.knowledge_state` of several question lists, list ``i``
    sampled under ``seeds[i]``: a seed's samples are the same whichever other seeds run
    beside it (each list of the chapter's size already fills whole generation batches, so
    sampling the lists together would save nothing). Returns one state per list."""
    seeds = list(seeds) if seeds is not None else [None] * len(row_lists)
    if len(seeds) != len(row_lists):
        raise ValueError(f"{len(row_lists)} question lists but {len(seeds)} seeds")
    return [rait.knowledge_state(model, tok, rows, mode, seed=s, **kw)
            for rows, s in zip(row_lists, seeds)]


def answer_once(model, tok, row_lists, mode: str = "open", prompt: str = "rait",
                max_new_tokens: int = 32, batch_size: int = 64) -> list[list[str]]:
    """Greedy :func:`kbnb.methods.rait.answer` of several question lists, each distinct
    prompt generated once (greedy answers of one model are deterministic). One list of
    answers per list."""
    fmt = rait.rait_prompt if prompt == "rait" else rait.query_prompt
    keys = [[fmt(tok, r, mode) for r in rs] for rs in row_lists]
    uniq = {}
    for rs, ks in zip(row_lists, keys):
        for r, k in zip(rs, ks):
            uniq.setdefault(k, r)
    order = list(uniq)
    gens = rait.answer(model, tok, [uniq[k] for k in order], mode, prompt, max_new_tokens,
                       batch_size, progress=False) if order else []
    got = dict(zip(order, gens))
    return [[got[k] for k in ks] for ks in keys]


def rehearsal_plans(p: Params, states: dict, cands: dict | None = None) -> dict:
    """Each seed's rehearsal set (:func:`kbnb.methods.rait.rehearsal_plan` under
    ``p.rehearsal_rule``), checked right after the knowledge query: before the untuned
    answers, rehearsal and tuning. Raises ValueError with one sentence naming the
    parameter when the rule selects nothing (``threshold`` on a model never that sure),
    or (``cands``: ``{seed: (van, idk)}`` candidates) when a seed has no van or no idk
    candidate for the RAIT sets. Returns ``{seed: plan}``; each plan's ``sentence`` says
    what was done (and whether ``auto`` fell back), for the page and ``metrics.json``."""
    mode = p.resolved_mode
    plans = {}
    for s, st in states.items():
        try:
            plans[s] = rait.rehearsal_plan(st["cor"], st["cer"], p.rehearsal_rule,
                                           p.rehearsal_threshold, p.rehearsal_quantile, mode)
        except ValueError as e:
            raise ValueError(f"seed {s}: {e}") from None
        if cands is not None:
            van, idk = cands[s]
            try:
                rait.set_sizes(p.n_train, p.idk_frac, len(van), len(idk))
            except ValueError as e:
                raise ValueError(f"seed {s}: {e}") from None
    return plans


def plans_note(plans: dict) -> str:
    """The rehearsal plans in words: the sentence of the one seed, else one per seed."""
    if len(plans) == 1:
        return next(iter(plans.values()))["sentence"]
    return " ".join(f"Seed {s}: {pl['sentence']}" for s, pl in plans.items())


def plans_record(plans: dict) -> dict:
    """The plans for ``metrics.json`` (without the index arrays)."""
    return {str(s): {k: v for k, v in pl.items() if k != "idx"} for s, pl in plans.items()}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k if not isinstance(k, tuple) else "/".join(map(str, k))): _jsonable(v)
                for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        return x.item()
    return x


def save_seed(ch, seed: int, results: dict, flow: dict, sets: dict, losses: dict) -> None:
    """Write one finished seed's results (rates, labels, generations, flow, sets, losses)
    to ``<run folder>/seed-<seed>.json``, before the headlines that could still fail."""
    doc = dict(seed=seed, results=results, flow={k: v for k, v in flow.items()},
               sets=sets, losses=losses)
    (ch.out / f"seed-{seed}.json").write_text(json.dumps(_jsonable(doc)))


@dataclass
class SeedRuns:
    """What :func:`run_seeds` gives, each ``{seed: ...}``.

    items: :func:`run_items` (the headline values); results: ``{(test set, variant):
    {"labels", "Pc", "Pw", "Pr", "THS", "over_refusal", ...}}`` for Init-Basic,
    Init-Refuse and the three tuned variants; flows: :func:`kbnb.methods.rait.knowledge_flow`;
    sets: ``{variant: (van, idk)}``; set_hits: :func:`kbnb.methods.rait.conflict_hits`;
    losses: ``{variant: tuning losses}``."""
    items: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    flows: dict = field(default_factory=dict)
    sets: dict = field(default_factory=dict)
    set_hits: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)


def run_seeds(ch, p: Params, model, tok, sources: dict, states: dict, cands: dict,
              reps: dict, tests: dict, plans: dict | None = None) -> SeedRuns:
    """The chapter's run after the knowledge query: the untuned baselines, then for each
    seed rehearsal and knowledge flow, the three sets, their static conflicts, tuning and
    evaluation.

    ch: the :class:`kbnb.report.chapter.Chapter` (seeds, timings); p: the parameters;
    sources, states, cands, reps, tests: ``{seed: ...}`` of the source questions, their
    :func:`kbnb.methods.rait.knowledge_state`, their ``(van, idk)`` candidates, their
    ``[Q, d]`` representations and ``{test set: rows}``; plans: :func:`rehearsal_plans`
    (made and checked here first when not given).

    The untuned model's greedy answers (plain prompt: Init-Basic; refusal instruction:
    Init-Refuse) are computed first, each distinct test question once for all seeds. Then
    each seed starts with ``seed_everything(seed)`` and runs, in this order: rehearsal and
    re-query (:func:`kbnb.methods.rait.knowledge_flow`), :func:`kbnb.methods.rait.build_sets`,
    the sets' conflicts, the untuned labels, and
    :func:`kbnb.methods.rait.tune_and_evaluate`. Each finished seed is saved
    (:func:`save_seed`) before the next starts."""
    mode = p.resolved_mode
    if plans is None:  # the preconditions, before any generation or tuning
        plans = rehearsal_plans(p, states, cands)
    names = list(tests[ch.seeds[0]])
    with ch.timed("untuned"):
        def untuned(n, prompt):  # {seed: greedy answers}, each distinct question once
            rows = [tests[s][n] for s in ch.seeds]
            return dict(zip(ch.seeds, answer_once(model, tok, rows, mode, prompt,
                                                  p.max_new_tokens)))
        base = {n: untuned(n, "query") for n in names}
        refuse = {n: untuned(n, "rait") for n in names}
    out = SeedRuns()
    for s in ch.seeds:
        seed_everything(s)
        src, st, (_, idk_cand) = sources[s], states[s], cands[s]
        flow_idx = idk_cand if p.flow_questions == "idk" else np.arange(len(src))
        with ch.timed("rehearsal_and_flow"):  # dynamic conflict: knowledge flow
            flow = rait.knowledge_flow(
                model, tok, src, st, flow_idx, mode, threshold=p.rehearsal_threshold,
                max_rehearsal=p.max_rehearsal, rehearsal_epochs=p.rehearsal_epochs, lr=p.lr,
                train_batch_size=p.train_batch_size, lora=p.lora, seed=s,
                n_samples=p.n_samples, temperature=p.temperature,
                max_new_tokens=p.max_new_tokens, batch_size=p.batch_size,
                embedder=p.embedder, progress=False, rule=plans[s]["rule"],
                quantile=p.rehearsal_quantile, autocast=p.autocast_dtype)
        sets = rait.build_sets(st["cor"], st["cer"], flow["delta_cor"], p.n_train, p.idk_frac,
                               s, p.flow_rule)
        hits = rait.conflict_hits(reps[s], sets, p.tau_sim)
        labels0 = {n: rait.label_answers(base[n][s], tests[s][n], mode) for n in names}
        results = {(n, "Init-Basic"): dict(labels=labels0[n], **rait.rates(labels0[n]),
                                           THS=0.0, over_refusal=rait.over_refusal(
                                               labels0[n], labels0[n])) for n in names}
        for n in names:
            results[(n, "Init-Refuse")] = rait.score_labels(
                rait.label_answers(refuse[n][s], tests[s][n], mode), labels0[n])
        with ch.timed("tune_and_evaluate"):
            tuned, losses = rait.tune_and_evaluate(
                model, tok, src, sets, {n: tests[s][n] for n in names}, labels0, mode,
                epochs=p.train_epochs, lr=p.lr, batch_size=p.train_batch_size, lora=p.lora,
                seed=s, max_new_tokens=p.max_new_tokens, progress=False,
                autocast=p.autocast_dtype)
        results.update(tuned)
        save_seed(ch, s, results, flow, sets, losses)  # nothing computed lost to a late error
        ev = {v: results[("in-domain", v)] for v in ("Init-Refuse",) + tuple(rait.VARIANTS)}
        out.items[s] = run_items(ev, labels0["in-domain"], hits, flow["delta_cor"][flow_idx],
                                 st["cor"][flow_idx], p.n_samples if mode == "open" else None)
        out.results[s], out.flows[s], out.sets[s] = results, flow, sets
        out.set_hits[s], out.losses[s] = hits, losses
    return out


# ---------------------------------------------------------------- headlines, checks
VARIANT_KEYS = {"Cor-RAIT": "cor_rait", "Cor-Cer-RAIT": "cor_cer_rait", "CRaFT": "craft",
                "Init-Refuse": "init_refuse"}


def run_items(results: dict, base_labels, set_hits: dict, d_cor, flow_cor,
              n_samples: int | None) -> dict:
    """One seed's headline values with their per-question data.

    results: ``{variant: evaluate_rait(...)}`` on the in-domain test set (Init-Refuse and
    the three tuned variants); base_labels: the untuned model's labels on it;
    set_hits: ``{variant: 0/1 per idk question, max similarity > tau_sim}``; d_cor,
    flow_cor: ΔCor and the Cor before rehearsal of the re-queried questions;
    n_samples: N of the open-mode query (None in multiple-choice mode: no noise).
    Returns ``{name: {"value", "per_item", "statistic"[, "items"]}}``: ``over_refusal_<v>``,
    ``ths_<v>``, ``crss_<v>``, ``flow_spread``, ``flow_noise``."""
    base = np.asarray(base_labels)
    known = base == "correct"
    c0, w0 = (base == "correct").astype(float), (base == "wrong").astype(float)
    out = {}
    for v, r in results.items():
        k = VARIANT_KEYS[v]
        lab = np.asarray(r["labels"])
        refused = (lab[known] == "refused").astype(float)
        out[f"over_refusal_{k}"] = {"value": float(refused.mean()) if refused.size else
                                    float("nan"), "per_item": refused, "statistic": None,
                                    "items": "questions the untuned model knew"}
        cols = ((lab == "correct").astype(float), (lab == "wrong").astype(float), c0, w0)
        out[f"ths_{k}"] = {"value": rait.ths_statistic(*cols), "per_item": cols,
                           "statistic": rait.ths_statistic}
    for v, hits in set_hits.items():
        h = np.asarray(hits, dtype=float)
        out[f"crss_{VARIANT_KEYS[v]}"] = {"value": float(h.mean()), "per_item": h,
                                          "statistic": None, "items": "idk questions"}
    d = np.asarray(d_cor, dtype=float)
    out["flow_spread"] = {"value": rait.flow_spread(d), "per_item": (d,),
                          "statistic": rait.flow_spread}
    if n_samples:
        noise = lambda p: rait.flow_noise_sd(p, n_samples)  # noqa: E731
        out["flow_noise"] = {"value": noise(flow_cor), "per_item": (np.asarray(flow_cor, float),),
                             "statistic": noise}
    return out


HEADLINE_LABELS = {
    "over_refusal_init_refuse": "over-refusal, Init-Refuse",
    "over_refusal_cor_rait": "over-refusal, Cor-RAIT",
    "over_refusal_cor_cer_rait": "over-refusal, Cor-Cer-RAIT",
    "over_refusal_craft": "over-refusal, CRaFT",
    "ths_init_refuse": "THS, Init-Refuse", "ths_cor_rait": "THS, Cor-RAIT",
    "ths_cor_cer_rait": "THS, Cor-Cer-RAIT", "ths_craft": "THS, CRaFT",
    "crss_cor_rait": "CRSS, Cor-RAIT set", "crss_cor_cer_rait": "CRSS, Cor-Cer-RAIT set",
    "crss_craft": "CRSS, CRaFT set",
    "flow_spread": "knowledge flow: sd of dCor", "flow_noise": "re-sampling noise: sd",
}
# THS = Pc - Pw·Pc0/Pw0 is at most 1 and has no lower bound; spreads are at least 0
HEADLINE_BOUNDS = {k: ((None, 1.0) if k.startswith("ths_") else (0.0, None)
                       if k.startswith("flow_") else (0.0, 1.0)) for k in HEADLINE_LABELS}


# The smallest effect that matters for each claim, (size, source) or None
# (kbnb.eval.verdicts: an interval inside ±size reads "excluded at the paper's size").
SMALLEST_EFFECTS = {
    # CRaFT vs Cor-RAIT: the paper's differences of over-refusal, THS and CRSS (Zhu et al.
    # 2025, LLaMA2/3 on TriviaQA and MMLU) are the sizes these claims want, but the
    # project's references (MISSION.md, the seed report, which gives no numbers) do not
    # hold them and they could not be checked here: left without one until the paper's
    # numbers are copied in as (difference in the claim's units, "Zhu et al. 2025, Table n:
    # ..."), so they never read "excluded".
    "or_craft_vs_cor": None,
    "ths_craft_vs_cor": None,
    "crss_craft_vs_cor": None,
    # the chapter's own test that rehearsal moves Cor beyond re-sampling noise: the paper
    # reports no number for it, none
    "flow_vs_noise": None,
}


def chapter_results(ch, items_by_seed: dict) -> None:
    """Record every seed's values on ``ch``, make the headlines and the four checks:
    CRaFT vs Cor-RAIT over-refusal (lower), CRSS (lower), THS (higher), and the flow's
    spread vs re-sampling noise (higher; open mode only).

    Several seeds: intervals over seeds, checks paired over seeds. One seed: bootstraps
    over questions; over-refusal and THS paired over the same test questions; CRSS (two
    different idk sets, resampled apart) and the flow (spread minus noise on the same
    questions) by :func:`kbnb.eval.stats.bootstrap_test` of the difference. A number or
    check with too few questions for an interval (e.g. one test question the untuned
    model knew) is reported as not measurable (``ch.not_measurable_note()``)."""
    # a metric undefined in some seed (THS when the untuned model is never wrong) gets
    # no headline and no check
    last = ch.record_items(items_by_seed, HEADLINE_LABELS, HEADLINE_BOUNDS)
    several = len(ch.seeds) > 1
    who = dict(subject="CRaFT", baseline_name="Cor-RAIT")
    for name, metric, effect, better in (
            ("or_craft_vs_cor", "over_refusal", "over-refusal", "lower"),
            ("ths_craft_vs_cor", "ths", "THS", "higher")):
        new, base = f"{metric}_craft", f"{metric}_cor_rait"
        if new not in last or base not in last:
            continue
        size = declared(SMALLEST_EFFECTS, name)
        if several:
            ch.check(name, effect, ch.per_seed(new), ch.per_seed(base), better=better, **who,
                     **size)
        else:
            stat = last[new]["statistic"]
            ch.check(name, effect, last[new]["per_item"], last[base]["per_item"],
                     better=better, **({"statistic": stat} if stat else {}),
                     over=last[new].get("items", "questions"), **who, **size)
    if "crss_craft" not in last or "crss_cor_rait" not in last:
        pass
    elif several:
        ch.check("crss_craft_vs_cor", "CRSS", ch.per_seed("crss_craft"),
                 ch.per_seed("crss_cor_rait"), better="lower", **who,
                 **declared(SMALLEST_EFFECTS, "crss_craft_vs_cor"))
    else:
        h, p = stats.bootstrap_test(
            (last["crss_craft"]["per_item"], last["crss_cor_rait"]["per_item"]),
            lambda a, b: float(np.mean(a) - np.mean(b)), items="idk questions", paired=False,
            too_few="report")
        ch.check_interval("crss_craft_vs_cor", "CRSS relative to Cor-RAIT", h, p,
                          "bootstrap of the difference", better="lower", subject="CRaFT",
                          **declared(SMALLEST_EFFECTS, "crss_craft_vs_cor"))
    if "flow_noise" in last and "flow_spread" in last:
        if several:
            ch.check("flow_vs_noise", "the spread of dCor", ch.per_seed("flow_spread"),
                     ch.per_seed("flow_noise"), better="higher", subject="rehearsal",
                     baseline_name="re-sampling noise", **declared(SMALLEST_EFFECTS, "flow_vs_noise"))
        else:
            noise = last["flow_noise"]["statistic"]
            h, p = stats.bootstrap_test(
                (last["flow_spread"]["per_item"][0], last["flow_noise"]["per_item"][0]),
                lambda d, c: rait.flow_spread(d) - noise(c), items="questions",
                too_few="report")
            ch.check_interval("flow_vs_noise", "the spread of dCor above re-sampling noise",
                              h, p, "bootstrap over questions", better="higher",
                              subject="rehearsal", **declared(SMALLEST_EFFECTS, "flow_vs_noise"))


# ---------------------------------------------------------------- tables -----------
def conflicting_pairs(rows, reps, van, idk, tau: float, k: int = 8):
    """The static conflicts of a set: idk questions whose most similar van question
    (cosine of the representations ``reps`` ``[Q, d]``) exceeds ``tau``, most similar
    first, at most ``k``. A DataFrame with both questions, both labels and the cosine."""
    import pandas as pd
    sim, j = rait.nearest_neighbours(reps[idk], reps[van])
    out = []
    for a in np.argsort(-sim):
        if sim[a] <= tau or len(out) >= k:
            break
        x, y = rows[idk[a]], rows[van[j[a]]]
        out.append(dict(idk_question=x["question"], idk_label=rait.IDK,
                        van_question=y["question"], van_label=y["answer"], cosine=float(sim[a])))
    return pd.DataFrame(out, columns=["idk_question", "idk_label", "van_question", "van_label",
                                      "cosine"])


# ---------------------------------------------------------------- figures ----------
def cer_label(mode: str) -> str:
    """The certainty axis label of ``mode``: mean pairwise cosine (open) or −entropy (mc)."""
    return ("certainty Cer (mean pairwise cosine)" if mode == "open"
            else "certainty Cer (-entropy, nats)")


def cor_cer_figure(d0, mode: str):
    """The knowledge state of one seed's source questions (``d0``: a DataFrame with
    ``level``, ``cor``, ``cer``): a 2-D histogram of (Cor, Cer), and the points by
    knowledge level (jittered, ``default_rng(0)`` per level). Returns the figure."""
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    cer_lo = min(0.0, float(d0.cer.min()))
    h = ax1.hist2d(d0.cor, d0.cer, bins=[np.linspace(0, 1, 11), np.linspace(cer_lo, 1, 11)],
                   cmap="Blues")
    fig.colorbar(h[3], ax=ax1, label="questions")
    ax1.set_xlabel("correctness Cor (share of samples correct)")
    ax1.set_ylabel(cer_label(mode))
    ax1.set_title("Knowledge state of the source questions")
    for lv, g in d0.groupby("level", sort=False):
        jitter = np.random.default_rng(0).uniform(-0.015, 0.015, len(g))
        ax2.scatter(g.cor + jitter, g.cer, s=12, label=lv, alpha=0.7)
    ax2.axvline(0.5, color="k", lw=0.8, ls="--")
    ax2.set_xlabel("correctness Cor (share of samples correct)")
    ax2.set_ylabel(ax1.get_ylabel())
    ax2.set_title("... by knowledge level (jittered)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def static_figure(reps, cands, set_sims: dict, taus, tau_sim: float):
    """Static conflict of one seed: the nearest van neighbour's cosine of each idk
    question (every idk candidate, ``cands`` = ``(van, idk)``, and each set's,
    ``set_sims``: ``{variant: [n_idk]}``) and CRSS against the threshold
    (:func:`kbnb.methods.rait.crss_curve` at ``taus``). Returns the figure."""
    import matplotlib.pyplot as plt
    van_c, idk_c = cands
    cand_sim, _ = rait.nearest_neighbours(reps[idk_c], reps[van_c])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(min(0.0, float(cand_sim.min())), 1, 41)
    for v, x in set_sims.items():
        ax1.hist(x, bins=bins, histtype="step", lw=1.5, label=f"{v} set")
    ax1.hist(cand_sim, bins=bins, color="0.85", label="all idk candidates")
    ax1.axvline(tau_sim, color="k", ls="--", lw=0.8, label=f"tau_sim = {tau_sim}")
    ax1.set_xlabel("max cosine similarity of an idk question to the van questions")
    ax1.set_ylabel("idk questions")
    ax1.set_title("Nearest van neighbour of each idk question")
    ax1.legend(fontsize=7)
    for v, x in set_sims.items():
        ax2.plot(taus, rait.crss_curve(x, taus), marker=".", label=v)
    ax2.axvline(tau_sim, color="k", ls="--", lw=0.8)
    ax2.set_xlabel("similarity threshold tau_sim (cosine)")
    ax2.set_ylabel("CRSS (share of idk questions)")
    ax2.set_title("Static conflict vs threshold")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def flow_frame(d, flow: dict):
    """The re-queried questions of one seed (rows ``flow["idx"]`` of ``d``, a DataFrame
    with ``cor`` and ``cer``) with their changes ``d_cor``, ``d_cer`` in rehearsal
    (``flow``: :func:`kbnb.methods.rait.knowledge_flow`)."""
    f = d.iloc[flow["idx"]]
    return f.assign(d_cor=flow["cor_after"] - f.cor.values,
                    d_cer=flow["cer_after"] - f.cer.values)


def flow_figure(flow, mode: str, n_samples: int, seed: int):
    """The knowledge flow of one seed (``flow``: :func:`flow_frame`): arrows from each
    question's (Cor, Cer) before rehearsal to after, and the histogram of ΔCor against
    re-sampling noise alone (open mode: 20 binomial redraws of each question's Cor with N
    ``n_samples``, ``default_rng(seed)``). Returns the figure."""
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    moved = flow[flow.d_cor != 0]
    ax1.scatter(flow.cor, flow.cer, s=8, c="0.6")
    ax1.quiver(moved.cor, moved.cer, moved.d_cor, moved.d_cer, angles="xy", scale_units="xy",
               scale=1, width=0.003, color=np.where(moved.d_cor > 0, "tab:red", "tab:blue"))
    ax1.set_xlim(-0.03, 1.03)
    ax1.set_xlabel("correctness Cor (share of samples correct)")
    ax1.set_ylabel(cer_label(mode))
    ax1.set_title("Knowledge flow in rehearsal (red: Cor rose, blue: fell)")
    ax2.hist(flow.d_cor, bins=np.linspace(-1, 1, 41), color="tab:purple", label="observed")
    if mode == "open":
        rng = np.random.default_rng(seed)
        null = (rng.binomial(n_samples, flow.cor, size=(20, len(flow))) / n_samples
                - flow.cor.values).ravel()
        ax2.hist(null, bins=np.linspace(-1, 1, 41), weights=np.full(null.size, 1 / 20),
                 histtype="step", color="k", label="sampling noise alone")
    ax2.set_xlabel("dCor (change of correctness after rehearsal)")
    ax2.set_ylabel("questions")
    ax2.set_title("Distribution of dCor")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def eval_figure(ev_all, cols, n_seeds: int):
    """Bars of the columns ``cols`` (Pc, Pw, Pr, THS, over-refusal) of each variant
    (``ev_all``: the in-domain rows of the evaluation table, mean of ``n_seeds`` seeds).
    Returns the figure."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 4))
    names_v = list(ev_all.index)
    w = 0.15
    for k, c in enumerate(cols):
        ax.bar(np.arange(len(names_v)) + (k - 2) * w, ev_all[c], width=w, label=c)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(names_v)), names_v)
    ax.set_ylabel("share of held-out questions (THS: score)")
    ax.set_title("RAIT variants on held-out questions "
                 f"(in-domain, mean of {n_seeds} seeds)")
    ax.legend(fontsize=8, ncol=5)
    fig.tight_layout()
    return fig
