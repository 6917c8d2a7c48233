"""TOFU's metrics of one model (:mod:`kbnb.eval.tofu`'s formulas applied): TOFU-schema
rows scored in batched forward passes (``kbnb.lm.generation.response_logprobs``), greedy
generations (``kbnb.lm.generation.generate``) scored by ROUGE-L recall, the answer-token
statistics of the membership-inference attacks; :func:`evaluate_unlearning` runs them
all, :func:`evaluate_validation` the cheap part a hyperparameter search reads."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kbnb.core.checks import check_choice
from kbnb.eval.metrics import rouge_recall
from kbnb.eval.tofu import (
    DEFAULT_K,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_RETAIN_AUC,
    MIA_ATTACKS,
    PRIVLEAK_ATTACK,
    SET_NAMES,
    UTILITY_SETS,
    aggregate_truth_ratio,
    forget_quality_from_truth_ratios,
    mia_auc,
    min_k,
    min_k_plus_plus,
    model_utility_from_parts,
    privleak,
    probability_from_logprobs,
    probability_with_options,
    truth_ratio_floored,
    truth_ratio_from_logprobs,
)
from kbnb.lm.encoding import encode_batch, model_inputs
from kbnb.lm.generation import _batched, generate, response_logprobs
from kbnb.lm.models import format_example, format_prompt

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


@torch.no_grad()
def answer_token_stats(model, tok, rows, batch_size: int = 32,
                       progress: bool = False) -> list[dict]:
    """Per row, over the tokens of the completion ``format_example(question, answer)``
    (answer + EOS): ``logprobs`` ``[T]`` of the actual tokens and ``mu``, ``var`` ``[T]``,
    the mean and variance of the log-probability under the model's next-token distribution
    there (``μ = Σ_v p_v log p_v``, ``σ² = Σ_v p_v (log p_v)² − μ²``: Min-K%++).
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
        p = lp.exp()
        mu = (p * lp).sum(-1)
        var = ((p * lp.square()).sum(-1) - mu.square())
        mu, var = mu.double().cpu(), var.double().cpu()
        start = 0
        for n in counts:
            out.append({"logprobs": tok_lp[start:start + n].numpy(),
                        "mu": mu[start:start + n].numpy(), "var": var[start:start + n].numpy()})
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
    ``kbnb.eval.tofu.truth_ratio_floored``; above 0 the truth ratio and forget quality partly
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
        out[f"{n}_rouge"] = float(np.mean(rouge_recall(g, [r["answer"] for r in present[n]],
                                                     "rougeL")))

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
        st_f = answer_token_stats(model, tok, present["forget"], batch_size, progress)
        st_h = answer_token_stats(model, tok, present["holdout"], batch_size, progress)
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


def evaluate_validation(model, tok, sets: dict, retain_reference: dict | None = None,
                        batch_size: int = 64) -> dict:
    """The cheap, generation-free metrics a hyperparameter search reads on validation
    rows (``kbnb.eval.tofu_sets.organism_validation_sets``): per-item forget truth ratios and, against
    ``retain_reference`` (this function's result for the retain model), their forget
    quality (KS p-value, as ``forget_quality_from_truth_ratios``); retain
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
