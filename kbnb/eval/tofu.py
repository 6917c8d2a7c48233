"""TOFU unlearning metrics as the field computes them (locuslab/open-unlearning).

Every definition below follows open-unlearning's evaluator; the file each one comes
from is named next to it. The pure functions take arrays of log-probabilities (so
they can be checked by hand); the model-facing ones score TOFU-schema rows in batched
forward passes (``kbnb.lm.generation.response_logprobs``) and greedy generations
(``kbnb.lm.generation.generate``); ``evaluate_unlearning`` runs them all.

Conventions (open-unlearning ``src/evals/metrics/utils.py: evaluate_probability``):
an answer is scored as the training completion ``kbnb.lm.models.format_example`` builds
(answer + EOS after the prompt), and its *average loss* is the mean negative
log-probability over those completion tokens. Its (length-normalised) probability is
``exp(−average loss)`` = the geometric mean of the token probabilities.

* **probability** (``memorization.py: probability``): mean over items of
  ``exp(mean token log-prob of the answer)``.
* **probability with options** (``memorization.py: probability_w_options``; used for
  real authors and world facts): per item ``p(answer) / (p(answer) + Σ_k p(perturbed_k)
  + 1e−10)`` with each ``p`` length-normalised as above; mean over items.
* **ROUGE-L recall** (``utils.py: eval_text_similarity``, ``rouge_type:
  rougeL_recall``): ``rouge_score`` RougeScorer(["rougeL"], use_stemmer=True),
  ``score(gold, generation).recall`` of greedy generations (``max_new_tokens`` new
  tokens; open-unlearning's ``configs/generation/default.yaml`` says 200, our default
  :data:`DEFAULT_MAX_NEW_TOKENS` is 64), mean over items.
* **truth ratio** (``memorization.py: truth_ratio``): per item
  ``R = exp(−mean_k L(perturbed_k)) / (exp(−L(correct)) + 1e−10)``, ``L`` = average
  loss; i.e. the geometric mean over the perturbed answers of their length-normalised
  probabilities, divided by the correct answer's. "Correct" is the paraphrased answer
  for forget and retain (``forget_Truth_Ratio.yaml``, ``retain_Truth_Ratio.yaml``) and
  the answer itself for real authors and world facts (``ra_Truth_Ratio.yaml``,
  ``wf_Truth_Ratio.yaml``). Aggregated with ``closer_to_1_better`` =
  ``mean(min(R, 1/(R + 1e−10)))`` on the forget set and ``true_better`` =
  ``mean(max(0, 1 − R))`` on the other three.
* **forget quality** (``privacy.py: ks_test``, ``forget_quality.yaml``): the p-value of
  ``scipy.stats.ks_2samp(R_unlearned_forget, R_retain_model_forget)`` over the per-item
  forget truth ratios of the unlearned model and of the retain model (trained without
  the forget set), both on the forget set. (An older open-unlearning version passed
  ``1/(R + 1e−10)`` for both samples; the KS statistic is the same up to that epsilon.)
* **model utility** (``utility.py: hm_aggregate``, ``model_utility.yaml``):
  ``scipy.stats.hmean`` of nine numbers: {probability, ROUGE-L recall, truth ratio
  (``true_better``)} on retain, and {probability with options, ROUGE-L recall, truth
  ratio (``true_better``)} on real authors and on world facts.
* **membership inference** (``mia/utils.py: mia_auc``): ``roc_auc_score`` with label 0
  for forget rows and 1 for holdout rows, scores where higher means "looks unseen":
  LOSS (``mia/loss.py``) = average loss; Min-K% (``mia/min_k.py``) = ``−mean`` of the
  lowest ``max(1, int(n·k))`` token log-probs; Min-K%++ (``mia/min_k_plus_plus.py``) =
  ``−mean`` of the lowest ``max(1, int(n·k))`` of ``(log p(x_t) − μ_t)/σ_t`` with
  ``μ_t = Σ_v p_v log p_v``, ``σ_t² = Σ_v p_v (log p_v)² − μ_t²`` (clamped at 1e−6) under
  the model's next-token distribution. ``k = 0.4`` (``mia_min_k*.yaml``). Min-K and
  Min-K++ use the answer tokens without the last one (``utils.py: tokenwise_logprobs``
  drops the EOS prediction); LOSS uses them all. AUC → 1 when the forget answers are
  much more likely than the holdout answers (memorised), ≈ 0.5 for a model that never
  saw them.
* **privleak** (``privacy.py: privleak``, ``privleak.yaml``: attack ``mia_min_k``,
  ``ref_value: 0.5``): with MUSE's ``1 − AUC`` convention,
  ``((1 − AUC) − (1 − AUC_retain)) / ((1 − AUC_retain) + 1e−10) · 100``
  = ``(AUC_retain − AUC) / (1 − AUC_retain) · 100``. Negative: the forget set is still
  more recognisable than it is to the retain model (under-unlearning); positive:
  over-unlearning; 0: as the retain model. ``AUC_retain = 0.5`` when no retain model was
  evaluated (open-unlearning's default).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kbnb.core.checks import check_choice
from kbnb.data.loaders import load_tofu
from kbnb.data.splits import HOLDOUT_OF, RETAIN_OF, check_forget_split
from kbnb.lm.encoding import encode_batch, model_inputs
from kbnb.lm.generation import _batched, generate, response_logprobs
from kbnb.lm.models import format_example, format_prompt, load_model, resolve_model_path
from kbnb.organism.model import retain_organism_name, world_for
from kbnb.organism.world import ATTRIBUTES

EPS = 1e-10  # open-unlearning's epsilon in truth ratio, probability_w_options, privleak
AGGREGATORS = ("closer_to_1_better", "true_better")
MIA_ATTACKS = ("loss", "min_k", "min_k_plus_plus")
SET_NAMES = ("forget", "retain", "real_authors", "world_facts", "holdout")
UTILITY_SETS = ("retain", "real_authors", "world_facts")
DEFAULT_K = 0.4  # configs/eval/tofu_metrics/mia_min_k.yaml, mia_min_k_plus_plus.yaml
DEFAULT_MAX_NEW_TOKENS = 64  # ours: the organism's answers are short; configs/generation/default.yaml: 200
PRIVLEAK_ATTACK = "min_k"  # configs/eval/tofu_metrics/privleak.yaml
DEFAULT_RETAIN_AUC = 0.5  # privleak.yaml ref_value


# ---- pure functions on log-probabilities ----------------------------------------------

def _as_2d(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def probability_from_logprobs(mean_logprobs) -> np.ndarray:
    """Per item ``exp(mean token log-prob)`` (``[N]``); ``[N, K]`` input (several
    correct answers) is averaged over K in log space first, as ``aggregate_to_1D``."""
    return np.exp(np.nanmean(_as_2d(mean_logprobs), axis=1))


def truth_ratio_from_logprobs(correct_mean_logprobs, wrong_mean_logprobs) -> np.ndarray:
    """Per-item truth ratio ``exp(mean_k lp_wrong_k) / (exp(lp_correct) + 1e-10)``.

    ``correct_mean_logprobs`` ``[N]`` (or ``[N, K']``), ``wrong_mean_logprobs`` ``[N, K]``:
    mean token log-probabilities (= minus open-unlearning's ``avg_loss``); NaN entries
    (ragged option lists) are ignored."""
    c = np.nanmean(_as_2d(correct_mean_logprobs), axis=1)
    w = np.nanmean(_as_2d(wrong_mean_logprobs), axis=1)
    if len(c) != len(w):
        raise ValueError(f"{len(c)} correct but {len(w)} wrong rows")
    return np.exp(w) / (np.exp(c) + EPS)


FLOOR_SHARE = 0.01  # the floor "decides" a ratio when 1e-10 is at least 1% of its denominator


def truth_ratio_floored(correct_mean_logprobs, share: float = FLOOR_SHARE) -> np.ndarray:
    """Per item: whether the reference formula's ``+1e-10`` decides the truth ratio, not
    the model, i.e. ``1e-10 / (exp(lp_correct) + 1e-10) ≥ share`` (boolean ``[N]``).

    When an unlearned model gives the correct answer a length-normalised probability
    near 1e-10 or below (gradient ascent drives it to ~1e-13), ``R`` becomes
    ``exp(lp_wrong) / 1e-10``: a number set by the epsilon, however the model ranks the
    correct answer against the perturbed ones. A forget quality computed from such
    ratios measures the floor as well."""
    c = np.nanmean(_as_2d(correct_mean_logprobs), axis=1)
    return EPS / (np.exp(c) + EPS) >= share


def aggregate_truth_ratio(truth_ratios, aggregator: str) -> float:
    """``closer_to_1_better``: ``mean(min(R, 1/(R + 1e-10)))`` (forget set: 1 when the
    paraphrase is no likelier than the perturbations); ``true_better``:
    ``mean(max(0, 1 − R))`` (other sets: 1 when the truth is far likelier)."""
    check_choice("aggregator", aggregator, AGGREGATORS)
    r = np.asarray(truth_ratios, dtype=np.float64)
    if aggregator == "closer_to_1_better":
        return float(np.mean(np.minimum(r, 1 / (r + EPS))))
    return float(np.mean(np.maximum(0.0, 1 - r)))


def probability_with_options(correct_mean_logprobs, wrong_mean_logprobs) -> np.ndarray:
    """Per item ``p_c / (p_c + Σ_k p_k + 1e-10)`` with length-normalised ``p = exp(mean
    token log-prob)``; ``correct`` ``[N]``, ``wrong`` ``[N, K]`` (NaN = no option)."""
    c = probability_from_logprobs(correct_mean_logprobs)
    w = np.nansum(np.exp(_as_2d(wrong_mean_logprobs)), axis=1)
    return c / (c + w + EPS)


def forget_quality_from_truth_ratios(truth_ratios, retain_truth_ratios) -> float:
    """p-value of the two-sample KS test between the unlearned model's per-item forget
    truth ratios and the retain model's (``scipy.stats.ks_2samp``)."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(truth_ratios, float), np.asarray(retain_truth_ratios, float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("forget quality needs per-item truth ratios of both models")
    return float(ks_2samp(a, b).pvalue)


def model_utility_from_parts(parts) -> float:
    """Harmonic mean (``scipy.stats.hmean``) of the utility numbers: a dict (its values)
    or a sequence. 0 if any part is 0; parts must be finite and ≥ 0."""
    from scipy.stats import hmean

    vals = np.asarray(list(parts.values()) if isinstance(parts, dict) else list(parts), float)
    if vals.size == 0:
        raise ValueError("model utility needs at least one part")
    if not np.all(np.isfinite(vals)) or np.any(vals < 0):
        raise ValueError(f"model utility parts must be finite and >= 0, got {vals.tolist()}")
    if np.any(vals == 0):
        return 0.0
    return float(hmean(vals))


def _bottom_k_mean(values: np.ndarray, k: float) -> float:
    if not 0 < k <= 1:
        raise ValueError(f"k={k!r}: must be in (0, 1]")
    if values.size == 0:
        return 0.0  # open-unlearning scores an item with no tokens 0
    n = max(1, int(len(values) * k))
    return float(-np.mean(np.sort(values)[:n]))


def min_k(token_logprobs, k: float = DEFAULT_K) -> float:
    """Min-K% Prob score: ``−mean`` of the ``max(1, int(n·k))`` lowest token log-probs
    (higher = looks unseen)."""
    return _bottom_k_mean(np.asarray(token_logprobs, dtype=np.float64), k)


def vocab_moments(vocab_logprobs) -> tuple[np.ndarray, np.ndarray]:
    """``(μ, σ²)`` per position of a ``[T, V]`` matrix of next-token log-probabilities:
    ``μ = Σ_v p_v log p_v``, ``σ² = Σ_v p_v (log p_v)² − μ²``."""
    lp = torch.as_tensor(np.asarray(vocab_logprobs), dtype=torch.float64)
    p = lp.exp()
    mu = (p * lp).sum(-1)
    var = (p * lp.square()).sum(-1) - mu.square()
    return mu.numpy(), var.numpy()


def min_k_plus_plus(token_logprobs, mu, var, k: float = DEFAULT_K) -> float:
    """Min-K%++ score: ``z_t = (log p(x_t) − μ_t) / sqrt(max(σ_t², 1e-6))``, then ``−mean``
    of the ``max(1, int(n·k))`` lowest ``z_t`` (higher = looks unseen). ``mu``, ``var``
    from ``vocab_moments``."""
    lp = np.asarray(token_logprobs, dtype=np.float64)
    mu, var = np.asarray(mu, dtype=np.float64), np.asarray(var, dtype=np.float64)
    if not lp.shape == mu.shape == var.shape:
        raise ValueError(f"shapes differ: {lp.shape}, {mu.shape}, {var.shape}")
    z = (lp - mu) / np.sqrt(np.maximum(var, 1e-6))
    return _bottom_k_mean(z, k)


def mia_auc(forget_scores, holdout_scores) -> float:
    """ROC AUC with forget = label 0, holdout = label 1 (open-unlearning's convention):
    1 when every forget row scores lower (looks more familiar) than every holdout row."""
    from sklearn.metrics import roc_auc_score

    f, h = list(map(float, forget_scores)), list(map(float, holdout_scores))
    if not f or not h:
        raise ValueError("MIA AUC needs forget and holdout scores")
    return float(roc_auc_score([0] * len(f) + [1] * len(h), f + h))


def privleak(auc: float, retain_auc: float = DEFAULT_RETAIN_AUC) -> float:
    """open-unlearning's privleak, MUSE's ``1 − AUC`` convention:
    ``((1 − auc) − (1 − retain_auc)) / ((1 − retain_auc) + 1e-10) · 100``.
    Negative = under-unlearning, positive = over-unlearning, 0 = like the retain model."""
    s, r = 1 - float(auc), 1 - float(retain_auc)
    return (s - r) / (r + EPS) * 100


# ---- scoring rows ------------------------------------------------------------------------

def _options(row: dict, key: str) -> list[str]:
    v = row.get(key)
    if v is None or (isinstance(v, (list, tuple)) and not v):
        raise ValueError(f"row {row.get('question', '')[:60]!r} has no {key!r}")
    return [v] if isinstance(v, str) else list(v)


def option_logprobs(model, tok, rows, key: str, batch_size: int = 32,
                    progress: bool = False) -> np.ndarray:
    """Mean token log-probability of each option ``row[key]`` (a string or a list of
    strings) as the completion of ``row["question"]``, ``[N, K_max]`` (NaN-padded when
    rows have different numbers of options), in one batched scoring pass."""
    return _score_groups(model, tok, {"x": (rows, key)}, batch_size, progress)["x"]


def _score_groups(model, tok, groups: dict, batch_size: int, progress: bool = False) -> dict:
    """``groups``: name → (rows, key). Scores every (question, option) of every group in
    one ``response_logprobs`` call; returns name → ``[N, K_max]`` mean log-probs."""
    flat, where = [], []
    for name, (rows, key) in groups.items():
        for i, r in enumerate(rows):
            for j, opt in enumerate(_options(r, key)):
                flat.append(format_example(tok, r["question"], opt))
                where.append((name, i, j))
    lp = response_logprobs(model, tok, [p for p, _ in flat], [c for _, c in flat],
                           batch_size=batch_size, reduce="mean", progress=progress).double()
    out = {}
    for name, (rows, key) in groups.items():
        kmax = max((len(_options(r, key)) for r in rows), default=0)
        out[name] = np.full((len(rows), kmax), np.nan)
    for (name, i, j), v in zip(where, lp.tolist()):
        out[name][i, j] = v
    return out


def rouge_l_recall(predictions, references) -> list[float]:
    """ROUGE-L recall of each prediction against its gold answer (``rouge_score``,
    Porter stemmer, ``scorer.score(gold, prediction)``), one float per pair."""
    from rouge_score import rouge_scorer

    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(r, p)["rougeL"].recall for p, r in zip(predictions, references)]


@torch.no_grad()
def answer_token_stats(model, tok, rows, batch_size: int = 32, moments: bool = True,
                       progress: bool = False) -> list[dict]:
    """Per row, over the tokens of the completion ``format_example(question, answer)``
    (answer + EOS): ``logprobs`` ``[T]`` of the actual tokens and, with ``moments``,
    ``mu``, ``var`` ``[T]`` of the model's next-token distribution there (Min-K%++).
    One forward pass per batch, through the shared encoding (left padding with
    ``position_ids``, :func:`kbnb.lm.encoding.encode_batch` and ``model_inputs``), so a
    row's statistics do not depend on the batch it shares."""
    pairs = [format_example(tok, r["question"], r["answer"]) for r in rows]
    out = []
    for _, chunk in tqdm(list(_batched(pairs, batch_size)), disable=not progress, leave=False,
                         desc="token stats"):
        batch = encode_batch(tok, [p for p, _ in chunk], [c for _, c in chunk])
        logits = model(**model_inputs(model, batch)).logits[:, :-1]
        lab = batch["labels"][:, 1:].to(logits.device)
        keep = lab != -100
        counts = keep.sum(-1).tolist()
        # only the answer positions: [N_tokens, V] instead of [B, T, V]
        lp = F.log_softmax(logits[keep].float(), -1)
        tok_lp = lp.gather(1, lab[keep].unsqueeze(-1)).squeeze(-1).double().cpu()
        if moments:
            p = lp.exp()
            mu = (p * lp).sum(-1)
            var = ((p * lp.square()).sum(-1) - mu.square())
            mu, var = mu.double().cpu(), var.double().cpu()
        start = 0
        for n in counts:
            rec = {"logprobs": tok_lp[start:start + n].numpy()}
            if moments:
                rec["mu"] = mu[start:start + n].numpy()
                rec["var"] = var[start:start + n].numpy()
            out.append(rec)
            start += n
    return out


def mia_scores(stats: list[dict], attack: str, k: float = DEFAULT_K) -> list[float]:
    """MIA score per row from ``answer_token_stats`` (higher = looks unseen). ``loss``:
    average loss over all completion tokens; ``min_k``, ``min_k_plus_plus``: over the
    completion tokens without the last (open-unlearning drops the EOS prediction)."""
    check_choice("attack", attack, MIA_ATTACKS)
    out = []
    for s in stats:
        lp = s["logprobs"]
        if attack == "loss":
            out.append(float(-lp.mean()) if lp.size else 0.0)
        elif attack == "min_k":
            out.append(min_k(lp[:-1], k))
        else:
            out.append(min_k_plus_plus(lp[:-1], s["mu"][:-1], s["var"][:-1], k))
    return out


# ---- the whole evaluation ------------------------------------------------------------

def _check_rows(name, rows, keys):
    for i, r in enumerate(rows):
        missing = [k for k in keys if r.get(k) in (None, "", [])]
        if missing:
            raise ValueError(f"sets[{name!r}][{i}] lacks {', '.join(missing)} (TOFU schema: "
                             f"question, answer, paraphrased_answer, perturbed_answer)")


def retain_reference_from(results: dict) -> dict:
    """What a later ``evaluate_unlearning`` needs from the retain model's evaluation:
    its per-item forget truth ratios and its MIA AUCs."""
    keys = ["forget_truth_ratios", "mia_auc", "mia_attack"] + [f"mia_{a}_auc" for a in MIA_ATTACKS]
    return {k: results[k] for k in keys if k in results}


def evaluate_unlearning(model, tok, sets: dict, retain_reference: dict | None = None,
                        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, batch_size: int = 32,
                        k: float = DEFAULT_K, privleak_attack: str = PRIVLEAK_ATTACK,
                        progress: bool = False) -> dict:
    """TOFU's metrics for one model, as a flat dict.

    ``sets``: lists of TOFU-schema rows under ``forget`` (question, answer,
    paraphrased_answer, perturbed_answer), ``retain`` (the same), ``real_authors`` and
    ``world_facts`` (question, answer, perturbed_answer), ``holdout`` (question,
    answer). ``forget`` and ``retain`` are required; a missing optional set gives None
    for its metrics (model utility is then the harmonic mean of the parts present,
    listed in ``model_utility_parts``; MIA and privleak need ``holdout``).

    ``retain_reference``: the retain model's results on the same sets
    (``retain_reference_from(evaluate_unlearning(retain_model, ...))``): its per-item
    ``forget_truth_ratios`` (for forget quality) and MIA AUCs (for privleak). Without
    it, ``forget_quality`` is None (``forget_quality_note`` says why) and privleak uses
    a retain AUC of 0.5, as open-unlearning does.

    Keys: ``forget_quality``, ``forget_quality_note``, ``model_utility``,
    ``model_utility_parts``, ``forget_prob``, ``forget_rouge``, ``forget_truth_ratio``
    (closer_to_1_better), ``forget_truth_ratios`` (per item),
    ``forget_truth_ratio_floored`` (share of forget items whose ratio the ``+1e-10`` decides,
    :func:`truth_ratio_floored`; above 0 the truth ratio and forget quality partly
    measure the floor, not the model), ``{retain, real_authors,
    world_facts}_{prob, rouge, truth_ratio}`` (true_better; ``prob`` is probability with
    options for real authors and world facts), ``mia_{loss, min_k, min_k_plus_plus}_auc``,
    ``mia_attack``, ``mia_auc`` (that attack's AUC), ``privleak``,
    ``privleak_retain_auc``, ``{set}_generations``."""
    check_choice("privleak_attack", privleak_attack, MIA_ATTACKS)
    unknown = set(sets) - set(SET_NAMES)
    if unknown:
        raise ValueError(f"unknown sets {sorted(unknown)}: allowed {', '.join(SET_NAMES)}")
    for name in ("forget", "retain"):
        if not sets.get(name):
            raise ValueError(f"sets[{name!r}] is required and must not be empty")
    need = {"forget": ("question", "answer", "paraphrased_answer", "perturbed_answer"),
            "retain": ("question", "answer", "paraphrased_answer", "perturbed_answer"),
            "real_authors": ("question", "answer", "perturbed_answer"),
            "world_facts": ("question", "answer", "perturbed_answer"),
            "holdout": ("question", "answer")}
    present = {n: list(sets[n]) for n in SET_NAMES if sets.get(n)}
    for n, rows in present.items():
        _check_rows(n, rows, need[n])
    was_training = model.training
    model.eval()
    out = {}

    # greedy generations, one batched call over every QA set
    gen_sets = [n for n in ("forget", "retain", "real_authors", "world_facts") if n in present]
    prompts = [format_prompt(tok, r["question"]) for n in gen_sets for r in present[n]]
    gens = generate(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    progress=progress, desc="generating")
    i = 0
    for n in gen_sets:
        g = gens[i:i + len(present[n])]
        i += len(g)
        out[f"{n}_generations"] = g
        out[f"{n}_rouge"] = float(np.mean(rouge_l_recall(g, [r["answer"] for r in present[n]])))

    # every answer / paraphrase / perturbation, one batched scoring call
    groups = {}
    for n in gen_sets:
        groups[f"{n}/answer"] = (present[n], "answer")
        groups[f"{n}/perturbed"] = (present[n], "perturbed_answer")
        if n in ("forget", "retain"):
            groups[f"{n}/paraphrased"] = (present[n], "paraphrased_answer")
    lp = _score_groups(model, tok, groups, batch_size, progress)

    for n in gen_sets:
        correct = lp[f"{n}/paraphrased"] if n in ("forget", "retain") else lp[f"{n}/answer"]
        tr = truth_ratio_from_logprobs(correct, lp[f"{n}/perturbed"])
        if n == "forget":
            out["forget_truth_ratios"] = tr.tolist()
            out["forget_truth_ratio"] = aggregate_truth_ratio(tr, "closer_to_1_better")
            out["forget_truth_ratio_floored"] = float(truth_ratio_floored(correct).mean())
            out["forget_prob"] = float(probability_from_logprobs(lp["forget/answer"]).mean())
        else:
            out[f"{n}_truth_ratio"] = aggregate_truth_ratio(tr, "true_better")
            if n == "retain":
                out[f"{n}_prob"] = float(probability_from_logprobs(lp[f"{n}/answer"]).mean())
            else:
                out[f"{n}_prob"] = float(probability_with_options(
                    lp[f"{n}/answer"], lp[f"{n}/perturbed"]).mean())
    for n in ("real_authors", "world_facts"):
        if n not in present:
            for m in ("prob", "rouge", "truth_ratio"):
                out[f"{n}_{m}"] = None

    parts = {f"{n}_{m}": out[f"{n}_{m}"] for n in UTILITY_SETS if n in present
             for m in ("prob", "rouge", "truth_ratio")}
    out["model_utility"] = model_utility_from_parts(parts)
    out["model_utility_parts"] = list(parts)

    # membership inference: forget vs holdout
    out["mia_attack"] = privleak_attack
    if "holdout" in present:
        st_f = answer_token_stats(model, tok, present["forget"], batch_size, True, progress)
        st_h = answer_token_stats(model, tok, present["holdout"], batch_size, True, progress)
        for a in MIA_ATTACKS:
            out[f"mia_{a}_auc"] = mia_auc(mia_scores(st_f, a, k), mia_scores(st_h, a, k))
        out["mia_auc"] = out[f"mia_{privleak_attack}_auc"]
    else:
        for a in MIA_ATTACKS:
            out[f"mia_{a}_auc"] = None
        out["mia_auc"] = None

    # against the retain model
    ref = retain_reference or {}
    if ref.get("forget_truth_ratios") is not None:
        out["forget_quality"] = forget_quality_from_truth_ratios(out["forget_truth_ratios"],
                                                                 ref["forget_truth_ratios"])
        out["forget_quality_note"] = ("KS-test p-value of the forget truth ratios against the "
                                      "retain model's")
    else:
        out["forget_quality"] = None
        out["forget_quality_note"] = (
            "no retain reference: forget quality compares this model's per-item forget truth "
            "ratios with those of a model trained without the forget set (KS test); evaluate "
            "that retain model once and pass retain_reference=retain_reference_from(its results)")
    if out["mia_auc"] is None:
        out["privleak"], out["privleak_retain_auc"] = None, None
    else:
        r_auc = ref.get(f"mia_{privleak_attack}_auc")
        if r_auc is None and ref.get("mia_auc") is not None:
            if ref.get("mia_attack", privleak_attack) != privleak_attack:
                raise ValueError(f"retain_reference's mia_auc is for {ref['mia_attack']!r}, "
                                 f"not {privleak_attack!r}")
            r_auc = ref["mia_auc"]
        out["privleak_retain_auc"] = DEFAULT_RETAIN_AUC if r_auc is None else float(r_auc)
        out["privleak"] = privleak(out["mia_auc"], out["privleak_retain_auc"])
    model.train(was_training)
    return out


# ---- the sets on the organism or on TOFU, the retain reference, one call per model -------

def organism_sets(world, forget_split: str = "forget10", n_retain: int | None = 90) -> dict:
    """The five TOFU evaluation sets on a tinyworld ``world``: ``forget`` (the split),
    ``retain`` (the first ``n_retain`` rows of the retain split's known authors, as TOFU's
    retain_perturbed is a fully trained subset of its retain split; None = all),
    ``real_authors`` (the famous authors), ``world_facts`` (city facts) and ``holdout``
    (unseen authors, as many as the forget split has). Deterministic: shared by seeds."""
    check_forget_split(forget_split)
    s = world.splits()
    retain = [r for r in s[RETAIN_OF[forget_split]] if r["group"] == "known"]
    retain = retain if n_retain is None else retain[:n_retain]
    return {"forget": [paraphrased_perturbations(r, world) for r in s[forget_split]],
            "retain": [paraphrased_perturbations(r, world) for r in retain],
            "real_authors": world.real_author_rows(), "world_facts": world.world_fact_rows(),
            "holdout": s[HOLDOUT_OF[forget_split]]}


def organism_validation_sets(world, forget_split: str = "forget10", n_retain: int = 90) -> dict:
    """Validation rows for choosing a method's hyperparameters, read by no evaluation:
    ``forget`` = the forget split's facts asked with their paraphrased question (the
    evaluation asks the original one), ``retain`` = the ``n_retain`` known retain rows
    after the evaluation's first ``n_retain`` (trained on by the methods' retain term,
    as the evaluation's are). Perturbations as :func:`organism_sets`."""
    check_forget_split(forget_split)
    s = world.splits()
    known = [r for r in s[RETAIN_OF[forget_split]] if r["group"] == "known"]
    retain = known[n_retain:2 * n_retain]
    if not retain:
        raise ValueError(f"n_retain={n_retain}: no known retain rows are left after the "
                         f"evaluation's for validation ({len(known)} in all)")
    forget = [dict(paraphrased_perturbations(r, world), question=r["paraphrased_question"])
              for r in s[forget_split]]
    return {"forget": forget, "retain": [paraphrased_perturbations(r, world) for r in retain]}


def tofu_validation_sets(forget_split: str = "forget10", data_dir=None,
                         n_retain: int | None = None) -> dict:
    """:func:`organism_validation_sets` on real TOFU: the forget split's
    ``paraphrased_question`` s, and the rows of ``retain_perturbed`` after the
    evaluation's first ``n_retain`` (none left when the evaluation takes all 400)."""
    check_forget_split(forget_split)
    retain = load_tofu("retain_perturbed", data_dir)
    rest = [] if n_retain is None else retain[n_retain:2 * n_retain]
    if not rest:
        raise ValueError(f"n_retain={n_retain}: retain_perturbed has {len(retain)} rows and the "
                         "evaluation takes them all; give n_retain (at most half of them) to "
                         "leave validation rows")
    forget = [dict(r, question=r["paraphrased_question"])
              for r in load_tofu(forget_split, data_dir, perturbed=True)]
    return {"forget": forget, "retain": rest}


def evaluate_validation(model, tok, sets: dict, retain_reference: dict | None = None,
                        batch_size: int = 64) -> dict:
    """The cheap, generation-free metrics a hyperparameter search reads on validation
    rows (:func:`organism_validation_sets`): per-item forget truth ratios and, against
    ``retain_reference`` (this function's result for the retain model), their forget
    quality (KS p-value, as :func:`forget_quality_from_truth_ratios`); retain
    probability and truth ratio (``true_better``) and their harmonic mean,
    ``utility`` (model utility's retain part without ROUGE: no greedy generation)."""
    was_training = model.training
    model.eval()
    groups = {"forget/paraphrased": (sets["forget"], "paraphrased_answer"),
              "forget/perturbed": (sets["forget"], "perturbed_answer"),
              "retain/answer": (sets["retain"], "answer"),
              "retain/paraphrased": (sets["retain"], "paraphrased_answer"),
              "retain/perturbed": (sets["retain"], "perturbed_answer")}
    lp = _score_groups(model, tok, groups, batch_size)
    model.train(was_training)
    tr = truth_ratio_from_logprobs(lp["forget/paraphrased"], lp["forget/perturbed"])
    out = {"forget_truth_ratios": tr.tolist(),
           "forget_truth_ratio": aggregate_truth_ratio(tr, "closer_to_1_better"),
           "forget_truth_ratio_floored": float(truth_ratio_floored(lp["forget/paraphrased"]).mean()),
           "retain_prob": float(probability_from_logprobs(lp["retain/answer"]).mean()),
           "retain_truth_ratio": aggregate_truth_ratio(
               truth_ratio_from_logprobs(lp["retain/paraphrased"], lp["retain/perturbed"]),
               "true_better")}
    out["utility"] = model_utility_from_parts([out["retain_prob"], out["retain_truth_ratio"]])
    ref = (retain_reference or {}).get("forget_truth_ratios")
    out["forget_quality"] = None if ref is None else forget_quality_from_truth_ratios(tr, ref)
    return out


def retain_validation(model_name: str = "tinyworld", forget_split: str = "forget10",
                      n_retain: int = 90, batch_size: int = 64, device: str = "cpu",
                      cache: bool = True) -> dict:
    """:func:`evaluate_validation` of the retain organism of ``model_name`` on its
    validation rows (:func:`organism_validation_sets`), the reference of a
    hyperparameter search's forget quality; cached beside :func:`retain_evaluation`'s."""
    import json
    from pathlib import Path

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


def paraphrased_perturbations(row: dict, world) -> dict:
    """The row with its perturbed answers in the paraphrased answer's phrasing (``X's
    father worked as a W.`` beside ``X's father worked as a V.``), as TOFU's perturbed
    answers perturb its paraphrased answer: the forget and retain truth ratios then
    compare the right and wrong values in one phrasing, not a trained phrasing (the
    world rows' perturbations use the training answer's) with a held-out one."""
    attr = next(a for a in ATTRIBUTES if a.name == row["attribute"])
    by_answer = {attr.answer.format(n=row["author"], v=w): w for w in world._values(attr)}
    wrong = [by_answer[p] for p in row["perturbed_answer"]]
    return {**row, "perturbed_answer": [attr.paraphrased_answer.format(n=row["author"], v=w)
                                        for w in wrong]}


def organism_retain_rows(world, forget_split: str = "forget10") -> list[dict]:
    """Rows an unlearning method keeps (its retain term): the retain split's known facts
    (partial authors' facts include ones never trained on)."""
    check_forget_split(forget_split)
    return [r for r in world.splits()[RETAIN_OF[forget_split]] if r["group"] == "known"]


def tofu_sets(forget_split: str = "forget10", data_dir=None, n_retain: int | None = None) -> dict:
    """The five sets of real TOFU (``kbnb.data.load_tofu``): forget and retain with
    perturbations (``{split}_perturbed``, ``retain_perturbed``), real authors and world
    facts (``*_perturbed``), the matching holdout split."""
    check_forget_split(forget_split)
    retain = load_tofu("retain_perturbed", data_dir)
    return {"forget": load_tofu(forget_split, data_dir, perturbed=True),
            "retain": retain if n_retain is None else retain[:n_retain],
            "real_authors": load_tofu("real_authors", data_dir, perturbed=True),
            "world_facts": load_tofu("world_facts", data_dir, perturbed=True),
            "holdout": load_tofu(HOLDOUT_OF[forget_split], data_dir)}


def _digest_of(obj) -> str:
    import hashlib
    import json
    from pathlib import Path
    code = Path(__file__).read_bytes()
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()
                          + code).hexdigest()[:12]


def retain_evaluation(model_name: str = "tinyworld", forget_split: str = "forget10",
                      n_retain: int | None = 90, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                      batch_size: int = 64, device: str = "cpu", cache: bool = True) -> dict:
    """``evaluate_unlearning`` of the *retain organism* of ``model_name`` (``tinyworld[:N]``;
    trained on first use, see ``kbnb.organism.retain_organism_name``) on the organism's
    sets, against itself (so its forget quality is 1 and its privleak 0). Cached as JSON
    in the retain organism's folder, keyed by the arguments and this module's code.
    ``retain_reference_from`` of it is what ``fq_mu`` and ``evaluate_unlearning`` need."""
    import json
    from pathlib import Path

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


def evaluate_against(results: dict, reference: dict) -> dict:
    """``forget_quality`` and ``privleak`` of already computed ``evaluate_unlearning``
    results against a retain reference (no model call)."""
    out = {"forget_quality": forget_quality_from_truth_ratios(
        results["forget_truth_ratios"], reference["forget_truth_ratios"])}
    a = results.get("mia_attack", PRIVLEAK_ATTACK)
    if results.get("mia_auc") is not None and reference.get(f"mia_{a}_auc") is not None:
        out["privleak_retain_auc"] = float(reference[f"mia_{a}_auc"])
        out["privleak"] = privleak(results["mia_auc"], out["privleak_retain_auc"])
    return out


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


HEADLINE_KEYS = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge",
                 "privleak")


def scorer(tok, world, forget_split: str = "forget10", model_name: str = "tinyworld"):
    """A function of an edited or unlearned organism returning :data:`HEADLINE_KEYS` of
    :func:`fq_mu` on ``forget_split`` (against the retain organism, trained once and
    cached), for chapters that change the organism (LUNAR, the NPO toy)."""
    def score(model):
        r = fq_mu(model, tok, world, forget_split, model_name=model_name)
        return {k: r.get(k) for k in HEADLINE_KEYS}
    return score
