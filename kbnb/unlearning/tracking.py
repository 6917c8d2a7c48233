"""The NPO toy's algorithms: how the log-probabilities of sampled answers move during
unlearning (the chapter's glue is in :mod:`kbnb.chapters.npo_toy`).

Negative Preference Optimization (Zhang et al. 2024, "Negative Preference
Optimization: From Catastrophic Collapse to Effective Unlearning") unlearns a forget
set D_f with

    L_NPO(θ) = −(2/β) · E_{(x,y)∈D_f} log σ(−β · (log π_θ(y|x) − log π_ref(y|x)))

where log π(y|x) is the *summed* log-probability of the answer tokens and π_ref is the
frozen starting model. Its gradient is 2·σ(β·Δ)·∇log π_θ(y|x) with Δ = log π_θ − log π_ref:
gradient ascent's gradient weighted by 2σ(βΔ), a weight that starts at 1 and decays as
exp(βΔ) once the answer has lost a few 1/β nats, so the fall of log π slows down. As
β → 0 the weights are all 1 and NPO's gradient direction is gradient ascent's.

The toy samples answers to one question (:func:`sample_responses`), scores them
(:func:`score_responses`), picks likely, middling and unlikely ones
(:func:`pick_responses`, :func:`tracked_set`), unlearns while scoring them every few
steps (:func:`unlearn_and_track`, on the shared loop
:func:`kbnb.unlearning.loop.train_copy`) and measures whether the fall slows
(:func:`group_series`, :func:`slowdown`).

Conventions follow locuslab/open-unlearning (``trainer/utils.py: compute_dpo_loss``,
``trainer/unlearn/grad_ascent.py``, ``grad_diff.py``), the formulas are in
:mod:`kbnb.unlearning.losses`: NPO uses the summed token log-probability per sequence and
the mean over the batch; gradient ascent maximises the model's usual loss, the token-mean
negative log-likelihood over the batch; the retain term is added with weight α (``nll``:
token-mean NLL on a retain batch; ``kl``: KL(π_ref ‖ π_θ) of the next-token distributions,
here averaged over the retain answer tokens). The learning rate is constant (no warm-up or
decay), so any slowing of the fall comes from the loss, not from the schedule.
"""
from __future__ import annotations

import torch

from kbnb.core.checks import check_choice
from kbnb.lm.encoding import encode_batch, model_inputs
from kbnb.lm.generation import generate, response_logprobs, sequence_logprobs
from kbnb.lm.models import format_example
from kbnb.unlearning.loop import Objective, train_copy
from kbnb.unlearning.losses import ga_loss, nll_loss, npo_loss, npo_weight, retain_kl

LOSSES = ("npo", "ga")
RETAIN_LOSSES = ("none", "nll", "kl")
GROUPS = ("high", "middle", "low")


# ---- the responses to track -------------------------------------------------------------
def score_responses(model, tok, question: str, responses, batch_size: int = 32) -> torch.Tensor:
    """log π(response | question) summed over the answer tokens, ``[N]`` (float32, CPU).

    Each response is scored as the training completion ``format_example`` builds
    (answer + EOS after the chat prompt), in batched forward passes."""
    pairs = [format_example(tok, question, r) for r in responses]
    return response_logprobs(model, tok, [p for p, _ in pairs], [c for _, c in pairs],
                             batch_size=batch_size)


def sample_responses(model, tok, question: str, n_candidates: int = 200, temperature: float = 1.0,
                     max_new_tokens: int = 32, batch_size: int = 200, progress: bool = True):
    """``n_candidates`` sampled answers to ``question`` (one batched ``generate`` call per
    ``batch_size`` samples, top_p = 1), as a list of strings (duplicates kept)."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates={n_candidates!r}: must be >= 1")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0")
    prompt = format_example(tok, question, "")[0]
    out, left = [], n_candidates
    while left > 0:
        k = min(left, batch_size)
        if k == 1:
            out += generate(model, tok, [prompt], max_new_tokens, batch_size=1, do_sample=True,
                            temperature=temperature, progress=False)
        else:
            out += generate(model, tok, [prompt], max_new_tokens, batch_size=k, do_sample=True,
                            temperature=temperature, num_samples=k, progress=progress,
                            desc="sampling")[0]
        left -= k
    return out


def pick_responses(responses, logps, k: int = 5, exclude=()):
    """Deduplicate ``responses`` (dropping empty ones, those in ``exclude``, and those with a
    U+FFFD: a sampled token that decodes to part of a UTF-8 character cannot be scored as
    text faithfully), sort them by
    log-probability and return ``{"high", "middle", "low"}``: the ``k`` most likely, the ``k``
    around the median, the ``k`` least likely, each a list of ``(response, logp)`` in
    decreasing log-probability. The groups are disjoint; needs ≥ 3k distinct responses.

    ``logps`` ``[N]`` aligned with ``responses``."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"n_per_group={k!r}: must be an integer >= 1 (answers in each of "
                         f"the high / middle / low groups)")
    logps = [float(x) for x in logps]
    if len(logps) != len(responses):
        raise ValueError(f"{len(responses)} responses but {len(logps)} log-probabilities")
    skip = {e.strip() for e in exclude}
    seen = {}
    for r, lp in zip(responses, logps):
        r = r.strip()
        if r and "\ufffd" not in r and r not in skip and r not in seen:
            seen[r] = lp
    ranked = sorted(seen.items(), key=lambda x: -x[1])
    n = len(ranked)
    if n < 3 * k:
        raise ValueError(f"only {n} distinct responses (besides the excluded ones) but "
                         f"{3 * k} are needed for 3 groups of {k}: raise n_candidates or "
                         f"temperature")
    mid = min(max(k, n // 2 - k // 2), n - 2 * k)
    return {"high": ranked[:k], "middle": ranked[mid:mid + k], "low": ranked[n - k:]}


def tracked_set(groups, ground_truth: str, fixed_response: str):
    """The responses to track, as ``(label, group, text)``: the picked groups in order, then
    the ground truth (group ``ground_truth``) and the fixed response (group ``fixed``)."""
    out = [(f"{g}{i + 1}", g, r) for g in GROUPS for i, (r, _) in enumerate(groups[g])]
    return out + [("ground_truth", "ground_truth", ground_truth), ("fixed", "fixed", fixed_response)]


# ---- unlearning while tracking -----------------------------------------------------------
def answer_logprobs(model, tok, prompts, completions):
    """Summed answer log-probabilities ``[B]`` (differentiable), answer token counts ``[B]``,
    the logits ``[B, T, V]`` and labels ``[B, T]`` they came from, and the forward-pass
    inputs (with ``position_ids``, :func:`kbnb.lm.encoding.model_inputs`)."""
    batch = encode_batch(tok, prompts, completions)
    inputs = model_inputs(model, batch)
    logits = model(**inputs).logits
    labels = batch["labels"].to(logits.device)
    return sequence_logprobs(logits, labels), (labels[:, 1:] != -100).sum(-1), logits, labels, inputs


class TrackedLoss(Objective):
    """The NPO toy's loss: ``forget_loss`` (``npo`` or ``ga``) on the forget batch plus
    ``α·retain term`` (``retain_loss``: ``none``, ``nll`` or ``kl``). Logs per step
    ``forget_logp`` (batch mean of the forget answers' log π_θ before the update) and
    ``npo_weight`` (batch mean of 2σ(β·Δ); for ``ga`` the factor NPO *would* apply)."""

    def __init__(self, forget_loss: str = "npo", beta: float = 0.1, retain_loss: str = "none",
                 alpha: float = 1.0):
        self.forget_loss = check_choice("loss", forget_loss, LOSSES)
        self.retain_loss = check_choice("retain_loss", retain_loss, RETAIN_LOSSES)
        self.beta, self.alpha = beta, alpha

    def prepare(self, state):
        f = state.forget
        with torch.no_grad():  # π_ref is frozen: its log-probabilities are computed once
            state.data["ref_lp"] = response_logprobs(state.ref, state.tok, [p for p, _ in f],
                                                     [c for _, c in f])
        return {}

    def loss(self, state, idx, ridx):
        f, r, ref_lp = state.forget, state.retain, state.data["ref_lp"]
        lp, n_tok, *_ = answer_logprobs(state.policy, state.tok, [f[i][0] for i in idx],
                                        [f[i][1] for i in idx])
        if self.forget_loss == "npo":
            total = npo_loss(lp, ref_lp[idx].to(lp.device), self.beta)
        else:
            total = ga_loss(lp, n_tok)
        if self.retain_loss != "none":
            r_lp, r_n, r_logits, r_labels, r_inputs = answer_logprobs(
                state.policy, state.tok, [r[i][0] for i in ridx], [r[i][1] for i in ridx])
            if self.retain_loss == "nll":
                r_loss = nll_loss(r_lp, r_n)
            else:
                with torch.no_grad():
                    ref_logits = state.ref(**r_inputs).logits
                r_loss = retain_kl(r_logits, ref_logits, r_labels)
            total = total + self.alpha * r_loss
        delta = lp.detach().cpu() - ref_lp[idx]
        return total, {"forget_logp": lp.detach().mean().item(),
                       "npo_weight": npo_weight(delta, self.beta).mean().item()
                       if self.beta > 0 else 1.0}


def unlearn_and_track(model, tok, forget_rows, track_question: str, track_responses,
                      loss: str = "npo", beta: float = 0.1, retain_rows=None,
                      retain_loss: str = "none", alpha: float = 1.0, lr: float = 1e-5,
                      steps: int = 500, eval_every: int = 50, batch_size: int = 4,
                      max_grad_norm: float = 1.0, seed: int = 0, progress: bool = True,
                      desc=None, after=None):
    """Unlearn ``forget_rows`` (dicts with ``question``, ``answer``) from a copy of ``model``
    and record the log-probabilities of ``track_responses`` to ``track_question``.

    ``model`` is π_ref: it is never trained (its forward passes run without gradients).
    Each step takes ``batch_size`` forget rows (cycling through them in a shuffled order;
    all of them if fewer) and, with ``retain_loss`` ≠ none, ``batch_size`` random retain
    rows; loss = L_forget + α·L_retain (:class:`TrackedLoss`); AdamW at a constant ``lr``,
    gradients clipped to ``max_grad_norm`` (:func:`kbnb.unlearning.loop.train_copy`).
    Evaluations happen at step 0, every ``eval_every`` steps, and after the last step.
    ``after``: optional function of the unlearned copy, called once at the end (e.g. the
    TOFU metrics); its result is ``history["after"]``.

    Returns a dict: ``steps`` ``[E]``, ``logps`` ``[E][R]`` (summed log-probabilities of
    the R tracked responses at each evaluation), ``losses`` ``[steps]``, ``forget_logp``
    ``[steps]`` (batch mean of the forget answers' log π_θ before each update) and
    ``npo_weight`` ``[steps]`` (batch mean of 2σ(β·Δ), the factor NPO puts on gradient
    ascent's gradient; for ``ga`` the factor NPO *would* apply, as ga applies 1)."""
    objective = TrackedLoss(loss, beta, retain_loss, alpha)
    if steps < 1:
        raise ValueError(f"steps={steps!r}: must be >= 1")
    if eval_every < 1:
        raise ValueError(f"eval_every={eval_every!r}: must be >= 1")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
    if not lr > 0:
        raise ValueError(f"lr={lr!r}: must be > 0")
    if not forget_rows:
        raise ValueError("no forget rows")
    if retain_loss != "none" and not retain_rows:
        raise ValueError(f"retain_loss={retain_loss!r} needs retain rows")
    if loss == "npo" and beta <= 0:
        raise ValueError(f"beta={beta!r}: must be > 0")
    pairs = [format_example(tok, r["question"], r["answer"]) for r in forget_rows]
    retain_pairs = ([format_example(tok, r["question"], r["answer"]) for r in retain_rows]
                    if retain_loss != "none" else [])
    hist = {"steps": [], "logps": []}

    def track(step, policy):  # score the tracked answers at step 0, every eval_every, the last
        if step == 0 or step % eval_every == 0 or step == steps:
            policy.eval()
            lp = score_responses(policy, tok, track_question, track_responses)
            policy.train()
            hist["steps"].append(step)
            hist["logps"].append(lp.tolist())

    policy, log = train_copy(model, tok, objective, pairs, retain_pairs, steps=steps, lr=lr,
                             seed=seed, batch_size=batch_size, max_grad_norm=max_grad_norm,
                             on_step=track, progress=progress, desc=desc or f"{loss} unlearning")
    hist.update(losses=log["losses"], forget_logp=log["forget_logp"],
                npo_weight=log["npo_weight"])
    if after is not None:
        hist["after"] = after(policy)  # the unlearned copy, in eval mode
    return hist


# ---- summaries ----------------------------------------------------------------------------
def group_series(hist, tracked):
    """``{group: [E]}``: the mean log-probability of each group of tracked responses at each
    evaluation (``tracked`` as from ``tracked_set``)."""
    out = {}
    for g in dict.fromkeys(grp for _, grp, _ in tracked):
        cols = [i for i, (_, grp, _) in enumerate(tracked) if grp == g]
        out[g] = [sum(row[i] for i in cols) / len(cols) for row in hist["logps"]]
    return out


def slowdown(steps, values, frac: float = 0.2) -> dict:
    """Slope (nats per step) of ``values`` over the first and the last ``frac`` of the
    run (least squares on the evaluations in each segment, at least two points each), and
    ``ratio`` = last / first. A ratio well below 1 means the fall slowed down."""
    steps = [float(s) for s in steps]
    n = len(steps)
    if n < 4:
        raise ValueError(f"need at least 4 evaluations to compare slopes, have {n}")
    k = max(2, round(frac * (n - 1)) + 1)

    def slope(xs, ys):
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den

    first, last = slope(steps[:k], values[:k]), slope(steps[-k:], values[-k:])
    return {"first_slope": first, "last_slope": last,
            "ratio": last / first if first != 0 else float("nan")}
