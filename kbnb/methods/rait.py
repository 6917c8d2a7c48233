"""Refusal-aware instruction tuning (RAIT): static and dynamic conflict, and CRaFT.

Reproduces Zhu et al., "Utilize the Flow before Stepping into the Same River Twice:
Certainty Represented Knowledge Flow for Refusal-Aware Instruction Tuning" (AAAI
2025, arXiv 2410.06913; reference code opendatalab/CRaFT). The algorithms only: the
chapter ``notebooks/rait.ipynb`` runs them seed by seed through
:mod:`kbnb.chapters.rait`, which also holds its headlines and checks.

The pipeline, for any causal LM:

0. *Questions* (:mod:`kbnb.methods.rait_questions`): the dataset as question rows, split
   into source questions and held-out test sets (:func:`kbnb.methods.rait_questions.load_questions`).
1. *Knowledge state* of each source question ``x`` from N sampled answers ``â_j``
   (:func:`knowledge_state`, one batched call): correctness
   ``Cor(M, x) = (1/N) Σ_j 1(â_j ≅ x.a)`` and certainty
   ``Cer(M, x) = 1/(N(N−1)) Σ_{j≠k} cos(E(â_j), E(â_k))`` (E = sentence embedding).
   Multiple choice: ``Cor = p(gold)``, ``Cer = −H(p)`` over the options (``mc``: the
   next letter; ``cloze``: each option scored as the answer, for a model that reads no
   letters; its greedy answer is judged by the nearest option).
2. *Static conflict* (:func:`conflict_hits`, :func:`crss_curve`): ``CRSS = |{x_i ∈ D_idk :
   max_{x_j ∈ D_van} cos(r_i, r_j) > τ}| / |D_idk|``, ``r`` the model's hidden
   representation of the question (:func:`representations`); no reference code
   computes it.
3. *Dynamic conflict* (:func:`knowledge_flow`): rehearsal-tune on questions with high
   Cor and Cer (the model's own answers, :func:`rehearse`), re-query: knowledge flow
   ``ΔCor``, ``ΔCer``. Which questions are "high" is :func:`rehearsal_plan`'s rule
   (see *The rehearsal set* below).
4. Three training sets of equal size (:func:`build_sets`): Cor-RAIT, Cor-Cer-RAIT, CRaFT
   (the reference's thresholds: van Cor ≥ 0.51, idk Cor ≤ 0.49).
5. Tune with the refusal instruction and evaluate (:func:`tune_and_evaluate`,
   :func:`evaluate_rait`): correct / wrong / refused rates, ``THS = Pc − Pw·Pc0/Pw0``
   (the reference's ``cal_THS``) and over-refusal.

The rehearsal set, and what the reference assumes
-------------------------------------------------
The reference rehearses on the questions the model is all but sure of: TriviaQA rows
with Cor >= 0.995 *and* Cer >= 0.995 (``vanilla_correct_certain`` in
``data_process/instructions_construction/triviaqa_rehearsal_instructions.py``: all ten
samples right and alike) and MMLU rows with p(gold) >= 0.99 (its MMLU rehearsal config is
``train/mmlu/*_rehearsal_mmlu_test_cor0.99_n1000_*``), then a sample of exactly 1000 of
them (``df.sample(n=1000)``, which fails with fewer). It assumes a model that is very sure of
many questions: true for LLaMA-3-8B-Instruct on 87k TriviaQA questions, false for a
small model (SmolLM2-135M-Instruct's highest p(gold) on a few hundred MMLU questions is
about 0.92), where no question passes and the reference's rule has nothing to rehearse.
:func:`rehearsal_plan` therefore offers, as a documented choice (``REHEARSAL_RULES``):

- ``threshold``: the reference's rule; none passing is an error that names
  ``rehearsal_threshold`` and ``rehearsal_rule`` (raised before any rehearsal tuning);
- ``quantile``: the top ``quantile`` share of the questions by Cor (ties by Cer; open
  mode only questions answered right at least once): works on any model;
- ``auto``: ``threshold`` when at least one question passes it, else ``quantile``, and
  the plan's sentence says that it fell back (the chapter prints it and stores it in
  ``metrics.json``). On the organism the threshold always has questions, so ``auto``
  gives exactly the reference's rule there.
"""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import torch

from kbnb.core.checks import check_choice
from kbnb.core.seeds import seed_everything
from kbnb.data.prompts import LETTERS, mmlu_prompt
from kbnb.eval.metrics import contains_answer, is_refusal, rouge_recall
from kbnb.lm.activations import capture, check_layer
from kbnb.lm.embed import embed
from kbnb.lm.encoding import completion_joiner
from kbnb.lm.finetune import finetune
from kbnb.lm.generation import generate, next_token_probs
from kbnb.lm.models import format_prompt
from kbnb.lm.scoring import continuation_logprobs
from kbnb.methods.rait_questions import MODES

RAIT_INSTRUCTION = ("Answer the following question, and if you don't know the answer, "
                    "only reply with 'I don't know': ")
IDK = "I don't know."
VARIANTS = ("Cor-RAIT", "Cor-Cer-RAIT", "CRaFT")
FLOW_RULES = ("rose", "not_fell")
REHEARSAL_RULES = ("auto", "threshold", "quantile")
CLOZE_BATCH = 32  # questions per forward pass when scoring options (cloze)
COR_HI, COR_LO = 0.51, 0.49  # Cor-RAIT thresholds of the reference (van >= 0.51, idk <= 0.49)


# ---------------------------------------------------------------- prompts ------
def query_prompt(tok, row: dict, mode: str = "open") -> str:
    """The knowledge-query prompt: the question as a user turn (``open``, ``cloze``), or
    the 0-shot MMLU prompt ending in ``Answer:`` (``mc``)."""
    if mode == "mc":
        return mmlu_prompt(row)
    return format_prompt(tok, row["question"])


def rait_prompt(tok, row: dict, mode: str = "open") -> str:
    """The refusal-aware prompt of the reference (``REFUSE1``): ``RAIT_INSTRUCTION +
    question`` as a user turn; for ``mc`` the instruction precedes the MMLU prompt."""
    if mode == "mc":
        return RAIT_INSTRUCTION + mmlu_prompt(row)
    return format_prompt(tok, RAIT_INSTRUCTION + row["question"])


def completion(tok, text: str, mode: str = "open") -> str:
    """Training completion: ``sep + text + EOS`` (the letter directly for ``mc``
    van targets, as the organism and MMLU place it right after ``Answer:``). ``sep``
    is what follows the prompt: for ``open`` (a chat prompt) the chat template's
    separator (:func:`kbnb.lm.encoding.completion_joiner`: ``" "`` for the organism,
    ``""`` after a template ending in a newline); for ``mc`` (``... Answer:``) ``" "``."""
    eos = tok.eos_token or ""
    if mode == "mc" and text != IDK:
        return text.strip() + eos
    sep = " " if mode == "mc" else completion_joiner(tok)
    return sep + text.strip() + eos


# ---------------------------------------------------------------- judging -----
def is_correct(text: str, row: dict, mode: str = "open", rouge_threshold: float = 0.5) -> bool:
    """Does an answer match the row's gold?

    ``open``: normalised containment of any gold string (the reference's rule for
    TriviaQA aliases); rows with ``judge == "rouge"`` (TOFU, whose gold is a whole
    sentence) use ROUGE-L recall >= ``rouge_threshold`` (:func:`kbnb.eval.metrics.rouge_recall`
    with ``rouge_type="rougeL"``). ``mc``: the first
    non-blank character is the gold letter. ``cloze``: the gold option is the one option
    nearest to the answer (:func:`nearest_option`)."""
    if mode == "mc":
        t = text.strip()
        return bool(t) and t[0].upper() == row["gold"][0]
    if mode == "cloze":
        return nearest_option(text, row["choices"]) == row["answer_idx"]
    if row.get("judge") == "rouge":
        golds = row["gold"]
        return max(rouge_recall([text] * len(golds), golds, "rougeL")) >= rouge_threshold
    return contains_answer(text, row["gold"])


def nearest_option(text: str, choices) -> int | None:
    """The index of the option whose ROUGE-1 recall in ``text`` is the highest (the
    share of the option's words that the answer says, in any order:
    :func:`kbnb.eval.metrics.rouge_recall`), or None when several tie for it (an answer
    that names none of what tells the options apart picks none). TOFU's perturbed
    options repeat the gold sentence with another name or detail, so the words that
    differ decide."""
    r = rouge_recall([text] * len(choices), list(choices), "rouge1")
    best = max(r)
    hits = [i for i, x in enumerate(r) if x == best]
    return hits[0] if len(hits) == 1 else None


def label_answer(text: str, row: dict, mode: str = "open") -> str:
    """``refused`` (``metrics.is_refusal``), else ``correct`` or ``wrong``."""
    if is_refusal(text):
        return "refused"
    return "correct" if is_correct(text, row, mode) else "wrong"


# ---------------------------------------------------------------- knowledge state
def correctness(hits) -> np.ndarray:
    """Cor(M, x) = (1/N) Σ_j 1(â_j = x.a). ``hits`` ``[Q, N]`` booleans → ``[Q]``."""
    hits = np.asarray(hits, dtype=float)
    if hits.ndim != 2 or hits.shape[1] < 1:
        raise ValueError(f"hits must be [Q, N] with N >= 1, got shape {hits.shape}")
    return hits.mean(1)


def certainty(embeddings) -> np.ndarray:
    """Cer(M, x) = 1/(N(N−1)) Σ_{j≠k} cos(E(â_j), E(â_k)).

    ``embeddings`` ``[Q, N, d]`` (normalised here). With unit vectors
    Σ_{j≠k} e_j·e_k = ‖Σ_j e_j‖² − N, so no N×N matrix is formed. Returns ``[Q]``."""
    e = torch.as_tensor(embeddings, dtype=torch.float32)
    if e.ndim != 3 or e.shape[1] < 2:
        raise ValueError(f"embeddings must be [Q, N, d] with N >= 2 samples, got {tuple(e.shape)}")
    n = e.shape[1]
    e = torch.nn.functional.normalize(e, dim=-1)
    s = e.sum(1).pow(2).sum(-1)
    return ((s - n) / (n * (n - 1))).numpy().astype(float)


def mc_correctness(probs, answer_idx) -> np.ndarray:
    """Multiple choice: Cor = p(gold). ``probs`` ``[Q, C]``, ``answer_idx`` ``[Q]``."""
    p = np.asarray(probs, dtype=float)
    return p[np.arange(len(p)), np.asarray(answer_idx, dtype=int)]


def mc_certainty(probs) -> np.ndarray:
    """Multiple choice: Cer = −H(p) = Σ_c p_c log p_c (nats), ``[Q, C]`` → ``[Q]``;
    0 for a one-hot distribution, −log C for a uniform one."""
    p = np.asarray(probs, dtype=float)
    return (p * np.log(np.clip(p, 1e-12, 1.0))).sum(1)


def most_frequent_correct(samples, row, mode: str = "open") -> str | None:
    """The model's own most frequent correct answer among its samples (the rehearsal
    target of the reference), or None if no sample is correct."""
    good = [s for s in samples if is_correct(s, row, mode)]
    return Counter(good).most_common(1)[0][0] if good else None


def sample_answers(model, tok, prompts, n_samples: int = 10, temperature: float = 1.0,
                   max_new_tokens: int = 32, batch_size: int = 320, progress: bool = True):
    """N sampled answers per prompt in one batched ``generate`` call per batch
    (``batch_size`` sequences = ``batch_size // n_samples`` prompts). ``[Q][N]`` strings."""
    return generate(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    do_sample=True, temperature=temperature, top_p=1.0,
                    num_samples=n_samples, progress=progress, desc="sampling answers")


def sample_answers_loop(model, tok, prompts, n_samples: int = 10, temperature: float = 1.0,
                        max_new_tokens: int = 32):
    """The unbatched baseline for the benchmark: one ``generate`` call per prompt and
    per sample. Same output shape as ``sample_answers``."""
    return [[generate(model, tok, [p], max_new_tokens=max_new_tokens, batch_size=1,
                      do_sample=True, temperature=temperature, progress=False)[0]
             for _ in range(n_samples)] for p in prompts]


def knowledge_state(model, tok, rows, mode: str = "open", n_samples: int = 10,
                    temperature: float = 1.0, max_new_tokens: int = 32, batch_size: int = 320,
                    embedder="default", progress: bool = True, seed: int | None = None) -> dict:
    """Cor and Cer of the model on every row; ``seed`` (if given) seeds the sampling.

    ``open``: N samples per question (``sample_answers``), Cor by ``is_correct``,
    Cer from the sentence embeddings of the samples (each distinct text embedded
    once). ``mc``: option probabilities of the next token, Cor = p(gold),
    Cer = −entropy. ``cloze``: the same from the options scored as answers,
    ``p = softmax(ℓ_1..ℓ_C)`` with ``ℓ_i = log π(sep + option_i | prompt)``
    (:func:`kbnb.lm.scoring.continuation_logprobs`). Returns ``{"cor": [Q], "cer": [Q],
    "samples": [Q][N] | None, "probs": [Q, C] | None}``."""
    check_choice("mode", mode, MODES)
    prompts = [query_prompt(tok, r, mode) for r in rows]
    if mode == "mc":
        probs = next_token_probs(model, tok, prompts, LETTERS[:len(rows[0]["choices"])],
                                 progress=progress).numpy()
        return dict(cor=mc_correctness(probs, [r["answer_idx"] for r in rows]),
                    cer=mc_certainty(probs), samples=None, probs=probs)
    if mode == "cloze":
        sep = completion_joiner(tok)
        lp = continuation_logprobs(model, tok, prompts,
                                   [[sep + c for c in r["choices"]] for r in rows],
                                   batch_size=max(1, min(batch_size, CLOZE_BATCH)),
                                   progress=progress, desc="scoring options")
        probs = torch.softmax(lp, -1).numpy()
        return dict(cor=mc_correctness(probs, [r["answer_idx"] for r in rows]),
                    cer=mc_certainty(probs), samples=None, probs=probs)
    if n_samples < 2:
        raise ValueError(f"n_samples={n_samples}: certainty needs at least 2 samples")
    if seed is not None:
        seed_everything(seed)
    samples = sample_answers(model, tok, prompts, n_samples, temperature, max_new_tokens,
                             batch_size, progress)
    hits = [[is_correct(s, r, mode) for s in ss] for ss, r in zip(samples, rows)]
    uniq = sorted({s for ss in samples for s in ss})
    where = {t: i for i, t in enumerate(uniq)}
    e = embed(uniq, embedder)
    idx = torch.tensor([[where[s] for s in ss] for ss in samples])
    return dict(cor=correctness(hits), cer=certainty(e[idx]), samples=samples, probs=None)


# ---------------------------------------------------------------- static conflict
def representations(model, tok, prompts, layer: int = -1, position: str = "last",
                    batch_size: int = 64) -> torch.Tensor:
    """The model's hidden representation r of each question: the output of block
    ``layer`` at the ``last`` prompt token (or the ``mean`` over the prompt), ``[Q, d]``."""
    check_choice("repr_position", position, ("last", "mean"))
    layer = check_layer(model, layer, "repr_layer")
    return capture(model, tok, prompts, layers=[layer], module="block", position=position,
                   batch_size=batch_size)[0]


def nearest_neighbours(reps_idk, reps_van) -> tuple[np.ndarray, np.ndarray]:
    """For each idk question, the largest cosine similarity to any van question and
    that question's index: ``([A] floats, [A] ints)`` from ``[A, d]`` and ``[B, d]``
    (``(zeros, -1s)`` when either is empty)."""
    a = torch.nn.functional.normalize(torch.as_tensor(reps_idk, dtype=torch.float32), dim=-1)
    b = torch.nn.functional.normalize(torch.as_tensor(reps_van, dtype=torch.float32), dim=-1)
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a)), np.full(len(a), -1)
    s = a @ b.T
    v, i = s.max(1)
    return v.numpy().astype(float), i.numpy()


def crss_curve(max_sims, taus) -> np.ndarray:
    """CRSS for each τ in ``taus`` from precomputed max similarities ``[A]``."""
    s = np.asarray(max_sims, dtype=float)
    return np.array([(s > t).mean() if len(s) else np.nan for t in taus])


# ---------------------------------------------------------------- selection ---
def _rank(values, ascending: bool, rng) -> list[int]:
    """Indices sorted by value; ties broken by a seeded shuffle (not by position)."""
    idx = list(range(len(values)))
    rng.shuffle(idx)
    return sorted(idx, key=lambda i: values[i] if ascending else -values[i])


def candidates(cor, cor_hi: float = COR_HI, cor_lo: float = COR_LO):
    """Indices of the van candidates (Cor >= cor_hi) and idk candidates (Cor <= cor_lo)."""
    cor = np.asarray(cor, dtype=float)
    return np.flatnonzero(cor >= cor_hi), np.flatnonzero(cor <= cor_lo)


def craft_idk_candidates(cor, delta_cor, rule: str = "rose", cor_lo: float = COR_LO):
    """CRaFT's idk candidates: Cor <= cor_lo after dropping the questions whose
    correctness rose in rehearsal. ``rule``: ``rose`` drops ΔCor > 0 (the paper and the
    reference's MCQA script); ``not_fell`` keeps only ΔCor < 0 (the reference's
    TriviaQA script)."""
    check_choice("flow_rule", rule, FLOW_RULES)
    cor, d = np.asarray(cor, dtype=float), np.asarray(delta_cor, dtype=float)
    keep = d <= 0 if rule == "rose" else d < 0
    return np.flatnonzero((cor <= cor_lo) & keep)


def set_sizes(n_train: int, idk_frac: float, n_van_avail: int, n_idk_avail: int):
    """``(n_van, n_idk)`` for training sets of ``n_train`` questions with an idk share
    of ``idk_frac`` (the reference: 0.2), clipped to what every rule can supply, so
    that all variants have the same size."""
    if not 0 < idk_frac < 1:
        raise ValueError(f"idk_frac={idk_frac}: must lie in (0, 1)")
    n_idk = min(round(n_train * idk_frac), n_idk_avail)
    n_van = min(n_train - round(n_train * idk_frac), n_van_avail)
    if n_idk < 1 or n_van < 1:
        raise ValueError(f"cannot build RAIT sets: {n_van_avail} van candidates (Cor >= "
                         f"{COR_HI}) and {n_idk_avail} idk candidates (Cor <= {COR_LO}, after "
                         "the flow filter); RAIT needs questions the model knows and questions "
                         "it does not: raise max_questions, or use a model that knows part of "
                         "the data")
    return n_van, n_idk


def select(variant: str, cor, cer, n_van: int, n_idk: int, delta_cor=None, seed: int = 0,
           flow_rule: str = "rose", cor_hi: float = COR_HI, cor_lo: float = COR_LO):
    """Indices ``(van, idk)`` of a RAIT training set.

    - ``Cor-RAIT``: a random ``n_van`` of Cor >= cor_hi and ``n_idk`` of Cor <= cor_lo.
    - ``Cor-Cer-RAIT``: the same candidates; van = the ``n_van`` most certain,
      idk = the ``n_idk`` least certain (the reference's sort on Cer).
    - ``CRaFT``: Cor-Cer-RAIT after dropping idk candidates whose correctness rose in
      rehearsal (``craft_idk_candidates``; needs ``delta_cor``)."""
    check_choice("variant", variant, VARIANTS)
    rng = random.Random(f"{seed}-{variant}")
    cer = np.asarray(cer, dtype=float)
    van_c, idk_c = candidates(cor, cor_hi, cor_lo)
    if variant == "CRaFT":
        if delta_cor is None:
            raise ValueError("CRaFT needs delta_cor (the knowledge flow from rehearsal)")
        idk_c = craft_idk_candidates(cor, delta_cor, flow_rule, cor_lo)
    if len(van_c) < n_van or len(idk_c) < n_idk:
        raise ValueError(f"{variant}: need {n_van} van and {n_idk} idk questions, have "
                         f"{len(van_c)} and {len(idk_c)} candidates")
    if variant == "Cor-RAIT":
        van = sorted(rng.sample(list(van_c), n_van))
        idk = sorted(rng.sample(list(idk_c), n_idk))
    else:
        van = [van_c[i] for i in _rank(cer[van_c], False, rng)[:n_van]]
        idk = [idk_c[i] for i in _rank(cer[idk_c], True, rng)[:n_idk]]
    return np.array(sorted(int(i) for i in van)), np.array(sorted(int(i) for i in idk))


def training_pairs(tok, rows, van, idk, mode: str = "open", prompt: str = "rait"):
    """``(prompts, completions)``: van questions with their gold answer, idk questions
    with ``IDK``; ``prompt`` ``rait`` (the refusal instruction) or ``query``."""
    fmt = rait_prompt if prompt == "rait" else query_prompt
    ps, cs = [], []
    for i in van:
        ps.append(fmt(tok, rows[i], mode))
        cs.append(completion(tok, rows[i]["answer"], mode))
    for i in idk:
        ps.append(fmt(tok, rows[i], mode))
        cs.append(completion(tok, IDK, mode))
    return ps, cs


def check_threshold(threshold) -> float:
    """``rehearsal_threshold`` must lie in (0, 1]: Cor and Cer are shares, and 0 would
    rehearse questions the model never answered correctly."""
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) \
            or not 0 < threshold <= 1:
        raise ValueError(f"rehearsal_threshold={threshold!r}: must be in (0, 1] (the "
                         f"reference: 0.995)")
    return float(threshold)


def check_quantile(quantile) -> float:
    """``rehearsal_quantile`` must lie in (0, 1]: the share of questions rehearsed."""
    if not isinstance(quantile, (int, float)) or isinstance(quantile, bool) \
            or not 0 < quantile <= 1:
        raise ValueError(f"rehearsal_quantile={quantile!r}: must be in (0, 1] (the share "
                         "of source questions rehearsed under rehearsal_rule='quantile')")
    return float(quantile)


def _above_threshold(cor, cer, threshold: float, mode: str) -> np.ndarray:
    """``open``: Cor >= threshold and Cer >= threshold; ``mc``, ``cloze``: p(gold) >=
    threshold."""
    if mode != "open":
        return np.flatnonzero(cor >= threshold)
    return np.flatnonzero((cor >= threshold) & (cer >= threshold))


def _top_share(cor, cer, quantile: float, mode: str) -> np.ndarray:
    """The ``ceil(quantile · Q)`` questions with the highest Cor (ties: higher Cer, then
    position); open mode only those with Cor > 0 (a correct sample to rehearse)."""
    ok = np.flatnonzero(cor > 0) if mode == "open" else np.arange(len(cor))
    k = min(len(ok), max(1, int(np.ceil(quantile * len(cor) - 1e-9))))
    order = sorted(ok, key=lambda i: (-cor[i], -cer[i], i))
    return np.array(sorted(int(i) for i in order[:k]), dtype=int)


def rehearsal_plan(cor, cer, rule: str = "threshold", threshold: float = 0.995,
                   quantile: float = 0.1, mode: str = "open") -> dict:
    """Which questions rehearsal tunes on, by ``rule`` (see the module docstring):
    ``threshold`` (the reference: Cor and Cer >= threshold; ``mc``: p(gold) >=
    threshold), ``quantile`` (the top ``quantile`` share by Cor) or ``auto`` (threshold,
    falling back to quantile when no question passes it).

    Cheap (no model call): the chapter calls it right after the knowledge query, so a
    rule that cannot work stops the run before rehearsal and tuning. Raises ValueError
    naming ``rehearsal_threshold`` and ``rehearsal_rule`` when ``threshold`` selects
    nothing, and when no question has Cor > 0. Returns ``{"rule": the rule used
    (threshold | quantile), "asked": rule, "fallback": bool, "idx": candidate indices
    (before ``max_rehearsal``), "n": their number, "highest_cor": float, "min_cor": the
    lowest Cor among them, "sentence": what was done, in words}``."""
    check_choice("rehearsal_rule", rule, REHEARSAL_RULES)
    check_choice("mode", mode, MODES)
    threshold, quantile = check_threshold(threshold), check_quantile(quantile)
    cor, cer = np.asarray(cor, dtype=float), np.asarray(cer, dtype=float)
    what = "Cor (p(gold))" if mode != "open" else "Cor and Cer"
    top = float(np.max(cor)) if cor.size else float("nan")
    used, idx = rule, None
    if rule in ("auto", "threshold"):
        idx = _above_threshold(cor, cer, threshold, mode)
        used = "threshold"
        if len(idx) == 0 and rule == "threshold":
            raise ValueError(
                f"rehearsal_threshold={threshold}: no source question has {what} at or "
                f"above it (highest Cor: {top:.3f}), so rehearsal has nothing to tune on; "
                f"lower rehearsal_threshold, or set rehearsal_rule='quantile' (or 'auto') "
                "to rehearse the questions the model is surest of")
        if len(idx) == 0:
            used = "quantile"
    if used == "quantile":
        idx = _top_share(cor, cer, quantile, mode)
        if len(idx) == 0:
            raise ValueError(f"rehearsal_rule={rule!r}: no source question was ever answered "
                             "correctly (every Cor is 0), so there is nothing to rehearse; "
                             "raise max_questions or n_samples")
    low = float(cor[idx].min())
    if used == "threshold":
        sentence = (f"Rehearsal tunes on the {len(idx)} source questions with {what} >= "
                    f"{threshold:g} (the reference's rule).")
    else:
        why = (f"no source question has {what} >= rehearsal_threshold={threshold:g} (highest "
               f"Cor: {top:.3f}), an assumption of the reference that this model does not "
               "meet, so rehearsal_rule='auto' falls back to 'quantile': " if rule == "auto"
               else "rehearsal_rule='quantile': ")
        sentence = (f"{why[0].upper()}{why[1:]}rehearsal tunes on the top "
                    f"{quantile:.0%} of the source questions by Cor, {len(idx)} questions "
                    f"with Cor >= {low:.3f}.")
    return dict(rule=used, asked=rule, fallback=rule == "auto" and used == "quantile",
                idx=idx, n=int(len(idx)), highest_cor=top, min_cor=low, sentence=sentence)


def rehearsal_indices(cor, cer, threshold: float = 0.995, max_n: int | None = None,
                      seed: int = 0, mode: str = "open", rule: str = "threshold",
                      quantile: float = 0.1) -> np.ndarray:
    """Questions the model answers with high correctness and certainty, at most
    ``max_n`` of them (seeded sample). ``rule`` ``threshold`` (the reference): ``open``:
    Cor >= threshold and Cer >= threshold (the reference's TriviaQA set: 0.995 and
    0.995, i.e. all N samples right and alike); ``mc``: p(gold) >= threshold (the
    reference's MMLU set uses Cor only; it implies an entropy below that of (threshold,
    rest spread), i.e. high certainty); an empty array when none passes. ``quantile`` /
    ``auto``: see :func:`rehearsal_plan`."""
    check_threshold(threshold)
    cor, cer = np.asarray(cor, dtype=float), np.asarray(cer, dtype=float)
    if rule == "threshold":
        check_choice("mode", mode, MODES)
        keep = _above_threshold(cor, cer, threshold, mode)
    else:
        keep = rehearsal_plan(cor, cer, rule, threshold, quantile, mode)["idx"]
    idx = list(keep)
    if max_n is not None and len(idx) > max_n:
        idx = random.Random(f"{seed}-rehearsal").sample(idx, max_n)
    return np.array(sorted(int(i) for i in idx), dtype=int)


def rehearse(model, tok, rows, state, mode: str = "open", threshold: float = 0.995,
             max_n: int | None = None, epochs: int = 2, lr: float = 3e-4, batch_size: int = 16,
             lora: bool = False, seed: int = 0, progress: bool = True,
             rule: str = "threshold", quantile: float = 0.1, autocast: str | None = None):
    """Rehearsal (the first stage of CRaFT): tune a copy of the model on the questions
    it answers with high Cor and Cer (``rehearsal_indices`` under ``rule``), with the
    plain query prompt and its own most frequent correct answer as the target
    (``autocast``: None or ``"bfloat16"``, :func:`kbnb.lm.finetune.finetune`). Returns
    ``(rehearsed_model, indices, losses)``."""
    idx = rehearsal_indices(state["cor"], state["cer"], threshold, max_n, seed, mode, rule,
                            quantile)
    if len(idx) == 0:
        what = "Cor" if mode != "open" else "Cor and Cer"
        raise ValueError(f"rehearsal_threshold={threshold}: no question has {what} at or above "
                         f"it (highest Cor: {float(np.max(state['cor'])):.3f}); lower "
                         "rehearsal_threshold, set rehearsal_rule='quantile' or 'auto', or "
                         "raise max_questions")
    prompts, targets = [], []
    for i in idx:
        own = None if state["samples"] is None else \
            most_frequent_correct(state["samples"][i], rows[i], mode)
        if own is None:  # no sampled answer was correct: rehearse the gold answer
            own = rows[i]["answer"]
        prompts.append(query_prompt(tok, rows[i], mode))
        targets.append(completion(tok, own, mode))
    tuned, losses = finetune(model, tok, prompts, targets, epochs=epochs, lr=lr,
                             batch_size=batch_size, lora=lora, seed=seed, progress=progress,
                             desc="rehearsal", autocast=autocast)
    return tuned, idx, losses


def flow_noise_sd(cor, n_samples: int) -> float:
    """Sampling noise of ΔCor when nothing changed: two independent estimates of a
    binomial share p from N samples differ with sd sqrt(2 p (1 − p) / N); returns the
    root mean square over the questions' Cor (plugged in for p)."""
    p = np.asarray(cor, dtype=float)
    return float(np.sqrt(np.mean(2 * p * (1 - p) / n_samples))) if len(p) else float("nan")


def knowledge_flow(model, tok, rows, state, flow_idx, mode: str = "open", *,
                   threshold: float = 0.995, max_rehearsal: int | None = None,
                   rehearsal_epochs: int = 2, lr: float = 3e-4, train_batch_size: int = 16,
                   lora: bool = False, seed: int = 0, n_samples: int = 10,
                   temperature: float = 1.0, max_new_tokens: int = 32, batch_size: int = 320,
                   embedder="default", progress: bool = True, rule: str = "threshold",
                   quantile: float = 0.1, autocast: str | None = None) -> dict:
    """Dynamic conflict (CRaFT's first stage): :func:`rehearse` a copy of the model
    (its questions by ``rule``, ``threshold``, ``quantile``: :func:`rehearsal_plan`),
    re-query the questions ``flow_idx`` with it (:func:`knowledge_state`, sampling from
    the global RNG where the rehearsal left it) and return the knowledge flow.

    rows: the ``Q`` source questions; state: their :func:`knowledge_state` before
    rehearsal; flow_idx: ``[F]`` indices of the questions to re-query. Returns
    ``{"idx": flow_idx, "delta_cor": [Q] (ΔCor, 0 for the questions not re-queried),
    "cor_after": [F], "cer_after": [F], "n_rehearsal": int}``."""
    rehearsed, reh_idx, _ = rehearse(model, tok, rows, state, mode, threshold, max_rehearsal,
                                     rehearsal_epochs, lr, train_batch_size, lora, seed,
                                     progress=progress, rule=rule, quantile=quantile,
                                     autocast=autocast)
    after = knowledge_state(rehearsed, tok, [rows[i] for i in flow_idx], mode, n_samples,
                            temperature, max_new_tokens, batch_size, embedder,
                            progress=progress)
    del rehearsed
    delta_cor = np.zeros(len(rows))
    delta_cor[flow_idx] = after["cor"] - state["cor"][flow_idx]
    return dict(idx=flow_idx, delta_cor=delta_cor, cor_after=after["cor"],
                cer_after=after["cer"], n_rehearsal=len(reh_idx))


def build_sets(cor, cer, delta_cor, n_train: int, idk_frac: float = 0.2, seed: int = 0,
               flow_rule: str = "rose", cor_hi: float = COR_HI, cor_lo: float = COR_LO) -> dict:
    """The three RAIT training sets, of the same size: ``{variant: (van, idk)}``
    (index arrays into the source questions); sizes from ``set_sizes``."""
    van_c, _ = candidates(cor, cor_hi, cor_lo)
    craft_idk = craft_idk_candidates(cor, delta_cor, flow_rule, cor_lo)
    n_van, n_idk = set_sizes(n_train, idk_frac, len(van_c), len(craft_idk))
    return {v: select(v, cor, cer, n_van, n_idk, delta_cor, seed, flow_rule, cor_hi, cor_lo)
            for v in VARIANTS}


def conflict_hits(reps, sets: dict, tau: float) -> dict:
    """Per set, whether each idk question has a van question closer than ``tau``:
    ``{variant: [n_idk] booleans}`` (their mean is the set's CRSS). reps: ``[Q, d]``
    representations of the source questions; sets: ``{variant: (van, idk)}``."""
    return {v: nearest_neighbours(reps[idk], reps[van])[0] > tau
            for v, (van, idk) in sets.items()}


# ---------------------------------------------------------------- evaluation ---
def answer(model, tok, rows, mode: str = "open", prompt: str = "rait",
           max_new_tokens: int = 32, batch_size: int = 64, progress: bool = True):
    """Greedy answers to ``rows`` with the ``rait`` or plain ``query`` prompt."""
    fmt = rait_prompt if prompt == "rait" else query_prompt
    return generate(model, tok, [fmt(tok, r, mode) for r in rows], max_new_tokens=max_new_tokens,
                    batch_size=batch_size, progress=progress, desc=f"answering ({prompt})")


def label_answers(answers, rows, mode: str = "open") -> list[str]:
    """:func:`label_answer` of each answer against its row: ``[Q]`` labels."""
    return [label_answer(g, r, mode) for g, r in zip(answers, rows)]


def rates(labels) -> dict:
    """Shares of ``correct`` (Pc), ``wrong`` (Pw) and ``refused`` (Pr) answers."""
    n = max(1, len(labels))
    c = Counter(labels)
    return dict(Pc=c["correct"] / n, Pw=c["wrong"] / n, Pr=c["refused"] / n)


def ths(pc: float, pw: float, pc0: float, pw0: float) -> float:
    """Truthful helpfulness score THS = Pc − Pw·Pc0/Pw0: the cross product of
    (Pc, Pw) with the untuned (Pc0, Pw0), normalised by that of (1, 0) (the reference's
    ``cal_THS``). 0 for the untuned model, 1 for a perfect one; > 0 means the point
    (Pw, Pc) lies above the line through the origin and the untuned model."""
    if pw0 <= 0:
        return float("nan")
    return pc - pw * pc0 / pw0


def over_refusal(labels, base_labels) -> float:
    """Share of refusals among the questions the untuned model answered correctly."""
    known = [lab for lab, b in zip(labels, base_labels) if b == "correct"]
    return sum(lab == "refused" for lab in known) / len(known) if known else float("nan")


def score_labels(labels, base_labels) -> dict:
    """``labels`` against the untuned model's ``base_labels`` on the same questions:
    ``{"labels", "Pc", "Pw", "Pr", "THS", "over_refusal"}`` (:func:`rates`,
    :func:`ths`, :func:`over_refusal`)."""
    r, r0 = rates(labels), rates(base_labels)
    return dict(labels=labels, **r, THS=ths(r["Pc"], r["Pw"], r0["Pc"], r0["Pw"]),
                over_refusal=over_refusal(labels, base_labels))


def evaluate_rait(model, tok, rows, base_labels, mode: str = "open", prompt: str = "rait",
                  max_new_tokens: int = 32, batch_size: int = 64, progress: bool = True) -> dict:
    """Answer ``rows`` greedily and score against the untuned ``base_labels``:
    ``{"labels", "generations", "Pc", "Pw", "Pr", "THS", "over_refusal"}``
    (:func:`score_labels`)."""
    gens = answer(model, tok, rows, mode, prompt, max_new_tokens, batch_size, progress)
    s = score_labels(label_answers(gens, rows, mode), base_labels)
    return dict(labels=s.pop("labels"), generations=gens, **s)


def tune_and_evaluate(model, tok, rows, sets: dict, tests: dict, base_labels: dict,
                      mode: str = "open", *, epochs: int = 3, lr: float = 3e-4,
                      batch_size: int = 16, lora: bool = False, seed: int = 0,
                      max_new_tokens: int = 32, progress: bool = True,
                      autocast: str | None = None) -> tuple[dict, dict]:
    """Tune a fresh copy of ``model`` on each RAIT set (:func:`training_pairs` with the
    refusal instruction, :func:`kbnb.lm.finetune.finetune` under ``seed``) and
    :func:`evaluate_rait` it on every test set, the sets in their order.

    rows: the source questions the sets index; sets: ``{variant: (van, idk)}``; tests:
    ``{test_name: rows}``; base_labels: ``{test_name: the untuned model's labels}``.
    Returns ``({(test_name, variant): evaluate_rait(...)}, {variant: losses})``."""
    results, losses = {}, {}
    for v, (van, idk) in sets.items():
        p, c = training_pairs(tok, rows, van, idk, mode)
        tuned, losses[v] = finetune(model, tok, p, c, epochs=epochs, lr=lr,
                                    batch_size=batch_size, lora=lora, seed=seed,
                                    progress=progress, autocast=autocast)
        for n, test_rows in tests.items():
            results[(n, v)] = evaluate_rait(tuned, tok, test_rows, base_labels[n], mode, "rait",
                                            max_new_tokens, progress=progress)
        del tuned
    return results, losses


# ---------------------------------------------------------------- statistics ---
def ths_statistic(c, w, c0, w0) -> float:
    """THS from per-question 0/1 columns: correct and wrong of the tuned model, correct
    and wrong of the untuned one (for a bootstrap over questions)."""
    return ths(float(np.mean(c)), float(np.mean(w)), float(np.mean(c0)), float(np.mean(w0)))


def flow_spread(d_cor) -> float:
    """Spread of the knowledge flow: the standard deviation of ΔCor (ddof 1)."""
    d = np.asarray(d_cor, dtype=float)
    return float(d.std(ddof=1)) if d.size > 1 else float("nan")
