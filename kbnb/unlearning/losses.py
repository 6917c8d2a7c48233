"""The unlearning losses as tensor functions: every unlearning method
(:mod:`kbnb.unlearning.methods`) and the NPO toy compute their losses here, and each
formula is written once, in its function's docstring.

Conventions follow locuslab/open-unlearning (``src/trainer/utils.py: compute_dpo_loss``,
``compute_batch_nll``, ``compute_activation_loss``; ``src/trainer/unlearn/*.py``). A
sequence's ``logp`` is the *summed* log-probability of its answer tokens (differentiable,
``[B]``), ``n_tokens`` its number of answer tokens (``[B]``). The functions:
:func:`ga_loss` (gradient ascent) and :func:`nll_loss` (the model's usual loss, the retain
term); :func:`npo_loss` (Zhang et al. 2024, "Negative Preference Optimization") and
:func:`npo_weight`, the factor by which its gradient scales gradient ascent's;
:func:`simnpo_loss` (Fan et al. 2024, SimNPO); :func:`dpo_loss` (Rafailov et al. 2023,
DPO); :func:`retain_kl` (the NPO toy's KL retain term); :func:`activation_mse` (RMU, Li et
al. 2024, WMDP).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """−(2/β)·mean_i log σ(−β·(logp_i − ref_logp_i)), a scalar.

    ``logp`` ``[B]``: summed answer log-probabilities under π_θ (differentiable);
    ``ref_logp`` ``[B]``: the same under the frozen π_ref (treated as a constant).
    ∂L/∂logp_i = (2/B)·σ(β·(logp_i − ref_logp_i))."""
    if beta <= 0:
        raise ValueError(f"beta={beta!r}: must be > 0")
    delta = logp - ref_logp.detach()
    return -(2.0 / beta) * F.logsigmoid(-beta * delta).mean()


def npo_weight(delta, beta: float = 0.1):
    """The factor 2σ(β·Δ) by which NPO scales gradient ascent's per-sequence gradient
    (``delta`` ``[B]``, Δ = logp − ref_logp; returns ``[B]`` float32)."""
    return 2 * torch.sigmoid(beta * torch.as_tensor(delta, dtype=torch.float32))


def ga_loss(logp: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """Gradient ascent: minimise Σ_i logp_i / Σ_i n_tokens_i, the negative of the model's
    usual token-mean NLL over the batch (open-unlearning's ``-outputs.loss``).

    ``logp`` ``[B]`` summed answer log-probabilities, ``n_tokens`` ``[B]`` answer tokens.
    Its gradient direction is that of Σ_i ∇logp_i, NPO's as β → 0."""
    return logp.sum() / n_tokens.sum().clamp(min=1)


def nll_loss(logp: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """The model's usual loss, −Σ_i logp_i / Σ_i n_tokens_i (token mean over the batch):
    the retain term of GradDiff, NPO, SimNPO, IdkDPO and the NPO toy's ``nll``."""
    return -logp.sum() / n_tokens.sum().clamp(min=1)


def simnpo_loss(logp: torch.Tensor, n_tokens: torch.Tensor, beta: float,
                delta: float) -> torch.Tensor:
    """SimNPO's forget loss −(2/β)·mean_i log σ(β·(−logp_i/n_i − δ)): NPO without a
    reference model, on the length-normalised NLL (open-unlearning ``simnpo.py``).
    ``logp``, ``n_tokens`` ``[B]``."""
    x = -logp / n_tokens.clamp(min=1) - delta  # average NLL per sequence − δ
    return -(2.0 / beta) * F.logsigmoid(beta * x).mean()


def dpo_loss(logp_w: torch.Tensor, logp_l: torch.Tensor, ref_w: torch.Tensor,
             ref_l: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's loss −(2/β)·mean_i log σ(β·((logp_w − ref_w) − (logp_l − ref_l))), the
    winner ``w`` (IdkDPO: an "I don't know" answer) preferred over the loser ``l`` (the
    gold answer); open-unlearning ``compute_dpo_loss``. All ``[B]``; refs constant."""
    margin = (logp_w - ref_w) - (logp_l - ref_l)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


def retain_kl(logits, ref_logits, labels) -> torch.Tensor:
    """KL(π_ref ‖ π_θ) of the next-token distributions, averaged over answer tokens.

    ``logits``, ``ref_logits`` ``[B, T, V]``; ``labels`` ``[B, T]`` (-100 off the answer)."""
    keep = labels[:, 1:] != -100
    lp = F.log_softmax(logits[:, :-1].float(), -1)[keep]
    ref = F.log_softmax(ref_logits[:, :-1].float(), -1)[keep]
    return F.kl_div(lp, ref, reduction="batchmean", log_target=True)


def activation_mse(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """open-unlearning's ``compute_activation_loss``: squared error averaged over the hidden
    size, summed over the masked tokens and divided by their number, then averaged over
    rows. ``x``, ``target`` ``[B, T, d]``; ``mask`` ``[B, T]`` (1 on the tokens that count)."""
    se = (x.float() - target.float()).square().mean(-1) * mask
    return (se.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
