"""LUNAR's evaluation (:mod:`kbnb.unlearning.lunar`): ROUGE-1 recall, deviation score,
refusal quality, MRR/THR from the gold tokens' ranks and the refusal rate of one model
(:func:`evaluate_edit`), and a PCA of activations (:func:`pca_2d`)."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from kbnb.eval.metrics import deviation_score, is_refusal, mrr, refusal_quality, rouge1_recall, thr
from kbnb.lm.encoding import encode_batch, join_completion, model_inputs
from kbnb.lm.generation import _batched, generate
from kbnb.unlearning.lunar import prompts_of


@torch.no_grad()
def gold_token_ranks(model, tok, prompts, answers, batch_size: int = 32,
                     progress: bool = False) -> list[torch.Tensor]:
    """Rank of each gold answer token among the vocabulary under teacher forcing
    (1 = the model's top choice), one batched forward pass per batch. Returns one
    LongTensor per example, ``[len(answer tokens)]``. The answer follows the prompt as
    ``format_example`` joins it (:func:`kbnb.lm.encoding.join_completion`)."""
    out = []
    pairs = [(p, join_completion(tok, p, a)) for p, a in zip(prompts, answers)]
    for _, chunk in tqdm(list(_batched(pairs, batch_size)), disable=not progress, leave=False,
                         desc="gold ranks"):
        batch = encode_batch(tok, [p for p, _ in chunk], [a for _, a in chunk])
        logits = model(**model_inputs(model, batch)).logits[:, :-1].float()
        lab = batch["labels"][:, 1:].to(logits.device)
        keep = lab != -100
        gold = torch.gather(logits, 2, lab.clamp(min=0).unsqueeze(-1))
        ranks = (logits > gold).sum(-1) + 1  # [B, T-1]
        for b in range(len(chunk)):
            out.append(ranks[b][keep[b]].cpu())
    return out


def evaluate_edit(model, tok, sets: dict, refusals, max_new_tokens: int = 32, batch_size: int = 64,
             embedder="default", thr_k: int = 100, progress: bool = True) -> dict:
    """LUNAR's metrics for one model (vanilla or edited). ``sets`` maps names to row lists; it must hold
    ``forget`` and ``retain_eval`` (for ROUGE and DS) and may hold more (``ref``...).

    One batched greedy generation over all sets. Returns ``{"metrics": {...},
    "generations": {set: [str]}, "per_item": {...}}`` with, per set ``s``: ``rouge1_s`` (mean ROUGE-1
    recall vs the gold answer), ``refusal_rate_s`` (keyword refusals), ``rq_s`` (mean
    largest embedding similarity to ``refusals``), ``mrr_s``/``thr_s`` (gold-token
    ranks, teacher forcing); and ``ds`` from forget and retain_eval. ``per_item`` holds
    the per-question values behind the means (``rouge1_s``, ``refusal_s``: 0/1), for
    intervals over questions when there is a single seed."""
    names = list(sets)
    prompts = {n: prompts_of(tok, sets[n]) for n in names}
    flat = [p for n in names for p in prompts[n]]
    gens = generate(model, tok, flat, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    progress=progress, desc="evaluating")
    out, i = {}, 0
    for n in names:
        out[n] = gens[i:i + len(prompts[n])]
        i += len(prompts[n])
    m, per_item = {}, {}
    for n in names:
        rows = sets[n]
        per_item[f"refusal_{n}"] = [float(is_refusal(g)) for g in out[n]]
        m[f"refusal_rate_{n}"] = sum(per_item[f"refusal_{n}"]) / max(1, len(rows))
        m[f"rq_{n}"] = refusal_quality(out[n], refusals, embedder)
        if all(r.get("answer") for r in rows) and not n.startswith("ref"):
            per_item[f"rouge1_{n}"] = list(rouge1_recall(out[n], [r["answer"] for r in rows]))
            m[f"rouge1_{n}"] = sum(per_item[f"rouge1_{n}"]) / len(rows)
            ranks = gold_token_ranks(model, tok, prompts[n], [r["answer"] for r in rows], batch_size)
            m[f"mrr_{n}"] = mrr(ranks)
            m[f"thr_{n}"] = thr(ranks, thr_k)
    if "rouge1_forget" in m and "rouge1_retain_eval" in m:
        m["ds"] = deviation_score(m["rouge1_forget"], m["rouge1_retain_eval"])
    return {"metrics": m, "generations": out, "per_item": per_item}


def pca_2d(X: torch.Tensor) -> torch.Tensor:
    """First two principal-component coordinates of the rows of ``X`` ``[N, d]`` → ``[N, 2]``
    (centred; signs fixed so that the largest loading is positive)."""
    X = X.double() - X.double().mean(0)
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    V = Vh[:2]
    sign = torch.sign(V.gather(1, V.abs().argmax(1, keepdim=True))).squeeze(1)
    return (X @ (V * sign[:, None]).T).float()
