"""NPO toy: how the log-probabilities of sampled answers move during unlearning.

Negative Preference Optimization (Zhang et al. 2024, "Negative Preference
Optimization: From Catastrophic Collapse to Effective Unlearning") unlearns a forget
set D_f with

    L_NPO(θ) = −(2/β) · E_{(x,y)∈D_f} log σ(−β · (log π_θ(y|x) − log π_ref(y|x)))

where log π(y|x) is the *summed* log-probability of the answer tokens and π_ref is the
frozen starting model. Its gradient is 2·σ(β·Δ)·∇log π_θ(y|x) with Δ = log π_θ − log π_ref:
gradient ascent's gradient weighted by 2σ(βΔ), a weight that starts at 1 and decays as
exp(βΔ) once the answer has lost a few 1/β nats, so the fall of log π slows down. As
β → 0 the weights are all 1 and NPO's gradient direction is gradient ascent's.

Conventions follow locuslab/open-unlearning (``trainer/utils.py: compute_dpo_loss``,
``trainer/unlearn/grad_ascent.py``, ``grad_diff.py``): NPO uses the summed token
log-probability per sequence and the mean over the batch; gradient ascent maximises the
model's usual loss, the token-mean negative log-likelihood over the batch; the retain
term is added with weight α (``nll``: token-mean NLL on a retain batch; ``kl``:
KL(π_ref ‖ π_θ) of the next-token distributions, here averaged over the retain answer
tokens). The learning rate is constant (no warm-up or decay), so any slowing of the
fall comes from the loss, not from the schedule.
"""
from __future__ import annotations

import copy
import random

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kbnb.core.checks import check_choice
from kbnb.lm.encoding import encode_batch, model_inputs
from kbnb.lm.generation import generate, response_logprobs, sequence_logprobs
from kbnb.lm.models import format_example

LOSSES = ("npo", "ga")
RETAIN_LOSSES = ("none", "nll", "kl")
TRAIN_ON = ("sample", "split")
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
GROUPS = ("high", "middle", "low")
# What the chapter expects on the organism (checked, not assumed): the ground truth loses at
# least 5x more log-probability than the fixed response (whose loss is floored at 1 nat); NPO's
# last-segment slope is under 10% of its first-segment slope; GA's stays above 25%.
TARGETS = {"gt_over_fixed_min": 5.0, "npo_slope_ratio_max": 0.1, "ga_slope_ratio_min": 0.25}


# ---- the losses ----------------------------------------------------------------------
def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """−(2/β)·mean_i log σ(−β·(logp_i − ref_logp_i)), a scalar.

    ``logp`` ``[B]``: summed answer log-probabilities under π_θ (differentiable);
    ``ref_logp`` ``[B]``: the same under the frozen π_ref (treated as a constant).
    ∂L/∂logp_i = (2/B)·σ(β·(logp_i − ref_logp_i))."""
    if beta <= 0:
        raise ValueError(f"beta={beta!r}: must be > 0")
    delta = logp - ref_logp.detach()
    return -(2.0 / beta) * F.logsigmoid(-beta * delta).mean()


def ga_loss(logp: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """Gradient ascent: minimise Σ_i logp_i / Σ_i n_tokens_i, the negative of the model's
    usual token-mean NLL over the batch (open-unlearning's ``-outputs.loss``).

    ``logp`` ``[B]`` summed answer log-probabilities, ``n_tokens`` ``[B]`` answer tokens.
    Its gradient direction is that of Σ_i ∇logp_i, NPO's as β → 0."""
    return logp.sum() / n_tokens.sum().clamp(min=1)


def npo_weight(delta, beta: float = 0.1):
    """The factor 2σ(β·Δ) by which NPO scales gradient ascent's per-sequence gradient."""
    return 2 * torch.sigmoid(beta * torch.as_tensor(delta, dtype=torch.float32))


def _answer_logprobs(model, tok, prompts, completions):
    """Summed answer log-probabilities ``[B]`` (differentiable), answer token counts ``[B]``,
    the logits and labels they came from, and the forward-pass inputs (with
    ``position_ids``, :func:`kbnb.encoding.model_inputs`)."""
    batch = encode_batch(tok, prompts, completions)
    inputs = model_inputs(model, batch)
    logits = model(**inputs).logits
    labels = batch["labels"].to(logits.device)
    return sequence_logprobs(logits, labels), (labels[:, 1:] != -100).sum(-1), logits, labels, inputs


def retain_kl(logits, ref_logits, labels) -> torch.Tensor:
    """KL(π_ref ‖ π_θ) of the next-token distributions, averaged over answer tokens.

    ``logits``, ``ref_logits`` ``[B, T, V]``; ``labels`` ``[B, T]`` (-100 off the answer)."""
    keep = labels[:, 1:] != -100
    lp = F.log_softmax(logits[:, :-1].float(), -1)[keep]
    ref = F.log_softmax(ref_logits[:, :-1].float(), -1)[keep]
    return F.kl_div(lp, ref, reduction="batchmean", log_target=True)


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


# ---- unlearning ------------------------------------------------------------------------
def cycle_batches(n: int, batch_size: int, rng):
    """Endless batches of indices into ``n`` rows: all rows when ``n <= batch_size``,
    else consecutive slices of reshuffled passes (``rng.shuffle``), drawn lazily so the
    caller may use ``rng`` in between."""
    order = []
    while True:
        if n <= batch_size:
            yield list(range(n))
            continue
        if len(order) < batch_size:
            fresh = list(range(n))
            rng.shuffle(fresh)
            order += fresh
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def unlearn(model, tok, forget_rows, track_question: str, track_responses, loss: str = "npo",
            beta: float = 0.1, retain_rows=None, retain_loss: str = "none", alpha: float = 1.0,
            lr: float = 1e-5, steps: int = 500, eval_every: int = 50, batch_size: int = 4,
            max_grad_norm: float = 1.0, seed: int = 0, progress: bool = True, desc=None,
            after=None):
    """Unlearn ``forget_rows`` (dicts with ``question``, ``answer``) from a copy of ``model``
    and record the log-probabilities of ``track_responses`` to ``track_question``.

    ``model`` is π_ref: it is never trained (its forward passes run without gradients).
    Each step takes ``batch_size`` forget rows (cycling through them in a shuffled order;
    all of them if fewer) and, with ``retain_loss`` ≠ none, ``batch_size`` random retain
    rows; loss = L_forget + α·L_retain; AdamW at a constant ``lr``, gradients clipped to
    ``max_grad_norm``. Evaluations happen at step 0, every ``eval_every`` steps, and
    after the last step. ``after``: optional function of the unlearned copy, called once
    at the end (e.g. the TOFU metrics); its result is ``history["after"]``.

    Returns a dict: ``steps`` ``[E]``, ``logps`` ``[E][R]`` (summed log-probabilities of
    the R tracked responses at each evaluation), ``losses`` ``[steps]``, ``forget_logp``
    ``[steps]`` (batch mean of the forget answers' log π_θ before each update) and
    ``npo_weight`` ``[steps]`` (batch mean of 2σ(β·Δ), the factor NPO puts on gradient
    ascent's gradient; for ``ga`` the factor NPO *would* apply, as ga applies 1)."""
    check_choice("loss", loss, LOSSES)
    check_choice("retain_loss", retain_loss, RETAIN_LOSSES)
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
    rng = random.Random(seed)
    torch.manual_seed(seed)
    ref = model
    was_training = ref.training
    ref.eval()
    policy = copy.deepcopy(model)
    policy.train()
    for p in policy.parameters():
        p.requires_grad_(True)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    pairs = [format_example(tok, r["question"], r["answer"]) for r in forget_rows]
    with torch.no_grad():  # π_ref is frozen: its log-probabilities are computed once
        ref_lp = response_logprobs(ref, tok, [p for p, _ in pairs], [c for _, c in pairs])
    retain_pairs = ([format_example(tok, r["question"], r["answer"]) for r in retain_rows]
                    if retain_loss != "none" else [])

    def evaluate():
        policy.eval()
        lp = score_responses(policy, tok, track_question, track_responses)
        policy.train()
        return lp.tolist()

    hist = {"steps": [0], "logps": [evaluate()], "losses": [], "forget_logp": [], "npo_weight": []}
    batches = cycle_batches(len(pairs), batch_size, rng)
    bar = tqdm(range(1, steps + 1), desc=desc or f"{loss} unlearning", disable=not progress)
    for step in bar:
        idx = next(batches)
        lp, n_tok, *_ = _answer_logprobs(policy, tok, [pairs[i][0] for i in idx],
                                         [pairs[i][1] for i in idx])
        if loss == "npo":
            total = npo_loss(lp, ref_lp[idx].to(lp.device), beta)
        else:
            total = ga_loss(lp, n_tok)
        if retain_loss != "none":
            ridx = [rng.randrange(len(retain_pairs)) for _ in range(batch_size)]
            r_lp, r_n, r_logits, r_labels, r_inputs = _answer_logprobs(
                policy, tok, [retain_pairs[i][0] for i in ridx], [retain_pairs[i][1] for i in ridx])
            if retain_loss == "nll":
                r_loss = -r_lp.sum() / r_n.sum().clamp(min=1)
            else:
                with torch.no_grad():
                    ref_logits = ref(**r_inputs).logits
                r_loss = retain_kl(r_logits, ref_logits, r_labels)
            total = total + alpha * r_loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        hist["losses"].append(total.item())
        hist["forget_logp"].append(lp.detach().mean().item())
        delta = lp.detach().cpu() - ref_lp[idx]
        hist["npo_weight"].append(npo_weight(delta, beta).mean().item() if beta > 0 else 1.0)
        bar.set_postfix(loss=f"{total.item():.3g}", logp=f"{lp.detach().mean().item():.1f}")
        if step % eval_every == 0 or step == steps:
            hist["steps"].append(step)
            hist["logps"].append(evaluate())
    bar.close()
    opt.zero_grad(set_to_none=True)
    if after is not None:
        policy.eval()
        hist["after"] = after(policy)
    del policy, opt
    ref.train(was_training)
    return hist


# ---- data -------------------------------------------------------------------------------
def forget_and_retain(dataset: str = "tinyworld", forget_split: str = "forget10", data_dir=None,
                      world=None):
    """``(forget_rows, retain_rows)`` for ``forget_split`` and its complement (forget01 →
    retain99, forget05 → retain95, forget10 → retain90): the organism's world
    (``dataset="tinyworld"``, ``world`` from ``organism.world_of``) or TOFU."""
    check_choice("dataset", dataset, ("tinyworld", "tofu"))
    check_choice("forget_split", forget_split, tuple(RETAIN_OF))
    if dataset == "tinyworld":
        if world is None:
            from kbnb.organism.model import OrganismConfig, world_of
            world = world_of(OrganismConfig())
        splits = world.splits()
        return splits[forget_split], splits[RETAIN_OF[forget_split]]
    from kbnb.data.loaders import load_tofu
    return load_tofu(forget_split, data_dir), load_tofu(RETAIN_OF[forget_split], data_dir)


def check_sample_index(sample_index: int, rows) -> dict:
    """The row ``sample_index`` of ``rows``, or a ValueError naming the allowed range."""
    if not isinstance(sample_index, int) or not 0 <= sample_index < len(rows):
        raise ValueError(f"sample_index={sample_index!r} but the forget split has {len(rows)} "
                         f"rows (0-{len(rows) - 1})")
    return rows[sample_index]


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
    """Run :func:`unlearn` for each loss in ``losses`` and each seed of ``picked`` (from
    :func:`pick_for_seeds`), tracking each seed's answers. With ``train_on="sample"``
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
            h = unlearn(model, tok, train_rows, question, texts, loss=name, seed=seeds[0],
                        progress=False, **kw)
            pos = {t: i for i, t in enumerate(texts)}
            for s in seeds:
                cols = [pos[t] for _, _, t in picked[s]["tracked"]]
                out[s][name] = {**h, "logps": [[row[i] for i in cols] for row in h["logps"]]}
        else:
            for s in seeds:
                texts = [t for _, _, t in picked[s]["tracked"]]
                out[s][name] = unlearn(model, tok, train_rows, question, texts, loss=name,
                                       seed=s, progress=False, **kw)
    return out


def seed_summary(history: dict, tracked) -> dict:
    """The numbers of one seed's run: per loss the change (nats) of each group's mean
    log-probability from start to end, the slowdown of the ground truth's fall, the
    ground truth's fall over the fixed answer's (floored at 1 nat) and the fixed
    answer's change over the ground truth's (``fixed_over_gt``)."""
    out = {}
    for name, h in history.items():
        ser = group_series(h, tracked)
        change = {g: s[-1] - s[0] for g, s in ser.items()}
        out[name] = {"series": ser, "change": change,
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
    have no interval and only the plain booleans are returned. Returns the plain checks
    ``{name: bool}``."""
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
        if one:  # one run: no interval (the items would be the responses, not runs)
            v = ch.per_seed(k)[0]
            ch.headline(k, per_item=[v, v], label=lab + " (one seed: no interval)")
        else:
            ch.headline(k, label=lab)
    plain = {"gt_over_fixed": summaries[s0][loss]["gt_over_fixed"] >= T["gt_over_fixed_min"]}
    if "npo" in summaries[s0]:
        plain["npo_slows"] = summaries[s0]["npo"]["slowdown"]["ratio"] < T["npo_slope_ratio_max"]
    if "ga" in summaries[s0]:
        plain["ga_keeps"] = summaries[s0]["ga"]["slowdown"]["ratio"] > T["ga_slope_ratio_min"]
    if one:
        return plain
    from kbnb.report.chapter import note_constant
    v = ch.check("gt_vs_fixed", "the ground truth's fall over the fixed answer's",
                 ch.per_seed("gt_over_fixed"), T["gt_over_fixed_min"], digits=1)
    note_constant(v, ch.per_seed("gt_over_fixed"))
    if "npo" in summaries[s0]:
        v = ch.check("npo_slows", "NPO's last-over-first slope ratio",
                     ch.per_seed("npo_slope_ratio"), T["npo_slope_ratio_max"], better="lower")
        note_constant(v, ch.per_seed("npo_slope_ratio"))
    if "ga" in summaries[s0]:
        v = ch.check("ga_keeps", "gradient ascent's last-over-first slope ratio",
                     ch.per_seed("ga_slope_ratio"), T["ga_slope_ratio_min"])
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
from kbnb.eval.tofu import HEADLINE_KEYS as TOFU_KEYS, scorer as tofu_scorer  # noqa: E402,F401


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
            ch.headline(f"forget_quality_{name}", label=f"{name.upper()}: forget quality")
            ch.headline(f"model_utility_{name}", label=f"{name.upper()}: model utility")
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

