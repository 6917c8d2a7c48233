"""The unlearning methods, one class each, behind one call:
``unlearn(method, model, tok, forget, retain, ...)``.

The losses follow locuslab/open-unlearning (``src/trainer/unlearn/*.py``,
``src/trainer/utils.py``, defaults from ``configs/trainer/*.yaml``). Each formula is written
once, in :mod:`kbnb.unlearning.losses` (``lp(y|x)`` the *summed* log-probability of the
completion ``format_example`` builds, answer + EOS after the prompt); a class here says
which loss it minimises, on which rows, and declares its parameters: their defaults (open-
unlearning's), their checks and the values the tuning search tries (``grid``, the default
first; :func:`kbnb.unlearning.tuning.grid`). The base classes and the registry are in
:mod:`kbnb.unlearning.base`.

Optimisation (every :class:`~kbnb.unlearning.base.GradientMethod`):
:func:`kbnb.unlearning.loop.train_copy`, ``steps`` AdamW steps (weight decay 0,
open-unlearning's ``finetune.yaml``) at a constant ``lr``, gradients clipped to
``max_grad_norm``; each step takes ``batch_size`` forget rows (a shuffled cycle through
them) and, for methods with a retain term, ``batch_size`` random retain rows.
Deterministic given ``seed`` on CPU. The given model is never changed: it is the frozen
reference π_ref, and a trained copy is returned. :class:`LUNAR` is a
:class:`~kbnb.unlearning.base.ClosedFormMethod`: no steps, no learning rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kbnb.core.checks import check_int, check_number
from kbnb.core.fields import choice, integer, number, param
from kbnb.lm import activations as A
from kbnb.lm.generation import pack_prompt_response
from kbnb.lm.models import format_example
from kbnb.unlearning import lunar as L
from kbnb.unlearning.base import (
    UNLEARNING_METHODS,
    ClosedFormMethod,
    GradientMethod,
    UnlearningMethod,
    check_methods,
    completion_logprobs,
    layer_of,
    method_class,
    reference_logprobs,
    register,
    select,
)
from kbnb.unlearning.loop import TrainState
from kbnb.unlearning.losses import activation_mse, dpo_loss, ga_loss, nll_loss, npo_loss, simnpo_loss
from kbnb.unlearning.lunar_pipeline import edit_model

__all__ = ["UNLEARNING_METHODS", "IDK_ANSWERS", "UnlearningMethod", "GradientMethod", "ClosedFormMethod",
           "GradAscent", "GradDiff", "NPO", "SimNPO", "IdkDPO", "RMU", "LUNAR", "check_methods",
           "method_class", "register", "unlearn"]

# TOFU's idk.jsonl is a list of such refusals; these are our own wording.
IDK_ANSWERS = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information about that.",
    "I can't answer that.",
    "That is something I don't know.",
    "I'm afraid I don't have that information.",
    "I have no idea.",
    "I am not able to answer this question.",
)


@register
class GradAscent(GradientMethod):
    """:func:`~kbnb.unlearning.losses.ga_loss` on the forget rows."""

    name, display_name, needs_retain = "ga", "GradAscent", False
    source = "open-unlearning src/trainer/unlearn/grad_ascent.py"
    summary = "gradient ascent on the forget NLL"

    def loss(self, state, idx, ridx):
        lp, n = completion_logprobs(state.policy, state.tok, select(state.forget, idx))
        f = ga_loss(lp, n)  # = −NLL(forget)
        return f, {"forget_losses": f.item(), "retain_losses": 0.0}


class RetainNLL(GradientMethod):
    """``gamma · forget_loss + alpha · nll_loss(retain)``: a subclass declares the fields
    ``gamma`` and ``alpha`` and implements :meth:`forget_loss`."""

    def forget_loss(self, state, idx):
        """The forget term (a differentiable scalar) on forget rows ``idx``."""
        raise NotImplementedError

    def loss(self, state, idx, ridx):
        f = self.forget_loss(state, idx)
        lp, n = completion_logprobs(state.policy, state.tok, select(state.retain, ridx))
        r = nll_loss(lp, n)
        return self.gamma * f + self.alpha * r, {"forget_losses": f.item(), "retain_losses": r.item()}


@register
class GradDiff(RetainNLL):
    """:func:`~kbnb.unlearning.losses.ga_loss` on the forget rows + the retain NLL."""

    name, display_name = "graddiff", "GradDiff"
    source = "open-unlearning src/trainer/unlearn/grad_diff.py, configs/trainer/GradDiff.yaml"
    summary = "gradient ascent on forget + NLL on retain"

    gamma: float = number(1.0, 0)  # weight of the forget term
    alpha: float = number(1.0, 0, grid=(1.0, 5.0))  # weight of the retain NLL

    def forget_loss(self, state, idx):
        lp, n = completion_logprobs(state.policy, state.tok, select(state.forget, idx))
        return ga_loss(lp, n)


@dataclass
class ReferenceState(TrainState):
    ref_lp: torch.Tensor | None = None  # π_ref's summed log-probabilities of the forget rows


@register
class NPO(RetainNLL):
    """:func:`~kbnb.unlearning.losses.npo_loss` on the forget rows against the frozen
    starting model + the retain NLL."""

    name, display_name = "npo", "NPO"
    source = "open-unlearning src/trainer/unlearn/npo.py, configs/trainer/NPO.yaml"
    summary = "negative preference optimisation (frozen reference) + retain NLL"
    State = ReferenceState

    beta: float = number(0.1, 0, lo_open=True, grid=(0.1, 0.5))  # NPO's inverse temperature
    gamma: float = number(1.0, 0)
    alpha: float = number(1.0, 0)

    def prepare(self, state):
        state.ref_lp = reference_logprobs(state.ref, state.tok, state.forget, state.batch_size)
        return {}

    def forget_loss(self, state, idx):
        lp, _ = completion_logprobs(state.policy, state.tok, select(state.forget, idx))
        return npo_loss(lp, state.ref_lp[idx].to(lp.device), self.beta)


@register
class SimNPO(RetainNLL):
    """:func:`~kbnb.unlearning.losses.simnpo_loss` on the forget rows (no reference model)
    + the retain NLL."""

    name, display_name = "simnpo", "SimNPO"
    source = "open-unlearning src/trainer/unlearn/simnpo.py, configs/trainer/SimNPO.yaml"
    summary = "length-normalised, reference-free NPO + retain NLL"

    beta: float = number(4.5, 0, lo_open=True)
    delta: float = number(0.0)
    gamma: float = number(0.125, 0, grid=(0.125, 1.0))  # weight of SimNPO's forget term
    alpha: float = number(1.0, 0)

    def forget_loss(self, state, idx):
        lp, n = completion_logprobs(state.policy, state.tok, select(state.forget, idx))
        return simnpo_loss(lp, n, self.beta, self.delta)


def _answers(name, v):
    if isinstance(v, str) or not v or not all(isinstance(a, str) for a in v):
        raise ValueError(f"{name}={v!r}: allowed a non-empty list of strings")
    return v


@dataclass
class PreferenceState(TrainState):
    winners: list = field(default_factory=list)  # (prompt, refusal) of each forget row
    ref_w: torch.Tensor | None = None  # π_ref's summed log-probabilities of the winners
    ref_l: torch.Tensor | None = None  # ... and of the forget rows' gold answers (the losers)


@register
class IdkDPO(RetainNLL):
    """:func:`~kbnb.unlearning.losses.dpo_loss` preferring a refusal (the winner) over the
    gold answer (the loser), against the frozen starting model, + the retain NLL. Each
    forget row gets one refusal drawn (with ``seed``) from ``idk_answers``, as TOFU's IdK
    answers are the alternate of open-unlearning's ``dpo.py``."""

    name, display_name = "idkdpo", "IdkDPO"
    source = "open-unlearning src/trainer/unlearn/dpo.py, configs/trainer/DPO.yaml"
    summary = "DPO preferring an 'I don't know' answer over the gold one + retain NLL"
    State = PreferenceState

    beta: float = number(0.1, 0, lo_open=True, grid=(0.1, 0.5))  # DPO's inverse temperature
    gamma: float = number(1.0, 0)
    alpha: float = number(1.0, 0)
    idk_answers: tuple = param(IDK_ANSWERS, _answers)

    def prepare(self, state):
        idk = list(self.idk_answers)
        chosen = [state.rng.choice(idk) for _ in state.forget]
        state.winners = [(prompt, format_example(state.tok, "", a)[1])
                         for (prompt, _), a in zip(state.forget, chosen)]
        state.ref_w = reference_logprobs(state.ref, state.tok, state.winners, state.batch_size)
        state.ref_l = reference_logprobs(state.ref, state.tok, state.forget, state.batch_size)
        return {"idk_answers_used": chosen}

    def forget_loss(self, state, idx):
        lp, _ = completion_logprobs(state.policy, state.tok,
                                    select(state.winners, idx) + select(state.forget, idx))
        lp_w, lp_l = lp[:len(idx)], lp[len(idx):]
        return dpo_loss(lp_w, lp_l, state.ref_w[idx].to(lp.device),
                        state.ref_l[idx].to(lp.device), self.beta)


def block_output(model, layer, ids, mask, grad: bool):
    """Output of block ``layer`` (the residual stream), ``[B, T, d]``."""
    with A.record_output(model, layer) as rec, torch.set_grad_enabled(grad):
        model(input_ids=ids, attention_mask=mask)
    return rec["output"]


@dataclass
class SteeringState(TrainState):
    layer: int = 0  # the steered block l
    control: torch.Tensor | None = None  # c·u, the forget activations' target


@register
class RMU(GradientMethod):
    """Representation misdirection (Li et al. 2024, WMDP): the output of block ``l`` (the
    residual stream) on forget answer tokens is pushed to ``c·u`` (``u`` a uniform random
    unit vector drawn once with ``seed``), on retain answer tokens kept at the frozen
    model's: ``gamma · activation_mse(forget, c·u) + alpha · activation_mse(retain,
    frozen)`` (:func:`~kbnb.unlearning.losses.activation_mse`). Only the MLP
    down-projections of blocks ``l−2 … l`` are trained (WMDP's and open-unlearning's
    ``trainable_params_regex``). ``l = round(layer_frac·(n_layers − 1))`` unless ``layer``
    is given (0.25: WMDP's layer 7 of Zephyr-7B's 32). ``c`` is ``steering_coeff``, or,
    when None, ``steering_scale`` × the frozen model's mean activation norm at block ``l``
    on the forget answer tokens (open-unlearning's fixed 20/300 and WMDP's 6.5 are tuned to
    particular models' activation norms)."""

    name, display_name = "rmu", "RMU"
    source = ("open-unlearning src/trainer/unlearn/rmu.py, configs/trainer/RMU.yaml; "
              "WMDP rmu/unlearn.py")
    summary = "representation misdirection: forget activations to a random vector"
    State = SteeringState

    layer: object = integer(None, none=True)  # None: from layer_frac; negative counts from the end
    layer_frac: float = number(0.25, 0, 1)
    steering_coeff: object = number(None, 0, lo_open=True, none=True)
    steering_scale: float = number(2.0, 0, lo_open=True, grid=(2.0, 8.0))  # |c·u| / activation norm
    gamma: float = number(1.0, 0)
    alpha: float = number(1000.0, 0)

    def layers(self, model):
        """``(l, [l−2 … l])``: the steered block and the blocks whose down-projections train."""
        layer = layer_of(model, self.layer, self.layer_frac)
        return layer, list(range(max(0, layer - 2), layer + 1))

    def trainable(self, policy):
        return [A.get_module(policy, j).weight for j in self.layers(policy)[1]]

    @staticmethod
    def _pack(state, pairs):
        ids, mask, labels = pack_prompt_response(state.tok, [a for a, _ in pairs],
                                                 [b for _, b in pairs], state.policy.device)
        return ids, mask, (labels != -100).float()

    def prepare(self, state):
        fp, bs = state.forget, state.batch_size
        layer, _ = self.layers(state.policy)
        # the frozen model's activations on the forget answers: the hidden size, and the
        # scale of the control vector when steering_coeff is None
        norms, count, d = 0.0, 0, None
        for s in range(0, len(fp), bs):
            ids, mask, m = self._pack(state, fp[s:s + bs])
            x = block_output(state.ref, layer, ids, mask, grad=False).float()
            d = x.shape[-1]
            norms += float((x.norm(dim=-1) * m).sum())
            count += int(m.sum())
            if self.steering_coeff is not None:
                break
        c = self.steering_coeff
        if c is None:
            c = self.steering_scale * norms / max(1, count)
        g = torch.Generator().manual_seed(state.seed)
        u = torch.rand(d, generator=g)
        state.layer = layer
        state.control = (u / u.norm() * c).to(state.policy.device)
        return {"layer": layer, "steering_coeff_used": float(c)}

    def loss(self, state, idx, ridx):
        layer, control = state.layer, state.control
        ids, mask, m = self._pack(state, select(state.forget, idx))
        x = block_output(state.policy, layer, ids, mask, grad=True)
        f = activation_mse(x, control.expand_as(x), m)
        ids, mask, m = self._pack(state, select(state.retain, ridx))
        x = block_output(state.policy, layer, ids, mask, grad=True)
        x_ref = block_output(state.ref, layer, ids, mask, grad=False)
        r = activation_mse(x, x_ref, m)
        return self.gamma * f + self.alpha * r, {"forget_losses": f.item(), "retain_losses": r.item()}


def _rows_with_question(name, v):
    if v is not None and (isinstance(v, (str, dict)) or not all(
            isinstance(r, dict) and "question" in r for r in v)):
        raise ValueError(f"{name}: allowed a list of rows with 'question' (or None)")
    return v


@register
class LUNAR(ClosedFormMethod):
    """The closed-form LUNAR edit of :mod:`kbnb.unlearning.lunar`: the steering vector from
    ``ref_rows`` (prompts the model already refuses) to the forget prompts; the
    down-projection of one layer refitted by least squares. Layer
    ``round(layer_frac·(n_layers − 1))`` unless ``layer`` is given (0.7: open-unlearning's
    ``Lunar.yaml`` layer 22 of Llama-2-7B's 32)."""

    name, display_name = "lunar", "LUNAR"
    source = "kbnb.unlearning.lunar (closed form); facebookresearch/LUNAR"
    summary = "closed-form refit of one down-projection (activation redirection)"

    ref_rows: object = param(None, _rows_with_question)  # rows (with 'question') the model refuses
    layer: object = integer(None, none=True)
    layer_frac: float = number(0.7, 0, 1)
    coeff: float = number(1.0, grid=(1.0, 2.0, 4.0))  # multiple of r_uv
    ridge: float = number(1e-6, 0)
    rows: str = choice("last", L.ROWS)

    def shown_params(self):
        shown = {k: v for k, v in super().shown_params().items() if k != "ref_rows"}
        return {**shown, "n_ref_rows": len(self.ref_rows or [])}

    def edit(self, model, tok, forget_rows, retain_rows, seed, batch_size, progress):
        if not self.ref_rows:
            raise ValueError("method='lunar' needs ref_rows=[...]: rows (with 'question') the "
                             "model already refuses, the other end of LUNAR's steering vector "
                             "(TOFU: the harmful instructions of kbnb.data.load_refusal; "
                             "tinyworld: its refusal questions)")
        layer = layer_of(model, self.layer, self.layer_frac)
        new, run = edit_model(model, tok, {"forget": forget_rows, "retain": retain_rows,
                                           "ref": self.ref_rows},
                              layer=layer, coeff=self.coeff, rows=self.rows, ridge=self.ridge,
                              retain_answers=False, batch_size=batch_size, seed=seed,
                              progress=progress)
        new.eval()
        rec = run["edit"].report[0]
        return new, {"layer": layer, "mse_before": rec["mse_before"],
                     "mse_after": rec["mse_closed_form"],
                     "forget_residual": rec["forget_residual_closed_form"],
                     "seconds": rec["seconds_closed_form"]}


def unlearn(method: str, model, tok, forget_rows, retain_rows=None, steps: int = 10,
            lr: float = 1e-5, seed: int = 0, batch_size: int = 4, max_grad_norm: float = 1.0,
            progress: bool = False, **kwargs):
    """Unlearn ``forget_rows`` (dicts with ``question``, ``answer``) from a copy of ``model``
    with ``method`` (a name in :data:`UNLEARNING_METHODS`), keeping ``retain_rows``.

    ``steps`` optimizer steps at learning rate ``lr`` (a closed-form method: both unused
    but checked); method parameters as keyword arguments (``UNLEARNING_METHODS[name].defaults()``
    lists them). Returns ``(new_model, log)``; ``log`` has ``method``, ``params`` (the
    resolved method parameters), ``steps``, ``lr``, ``seed``, ``batch_size``, ``losses``,
    ``forget_losses`` and ``retain_losses`` (one per step; empty in closed form) and
    method-specific entries."""
    m = method_class(method).from_dict(kwargs)
    check_int("steps", steps, 1)
    check_number("lr", lr, 0, lo_open=True)
    check_int("seed", seed, 0)
    check_int("batch_size", batch_size, 1)
    if max_grad_norm is not None:
        check_number("max_grad_norm", max_grad_norm, 0)
    if not forget_rows:
        raise ValueError("no forget rows")
    if m.needs_retain and not retain_rows:
        raise ValueError(f"method={method!r} needs retain rows")
    m.check_model(model)
    if isinstance(m, ClosedFormMethod):
        new, entries = m.edit(model, tok, forget_rows, retain_rows, seed, batch_size, progress)
        log = {"losses": [], "forget_losses": [], "retain_losses": [], "closed_form": True,
               **entries, "note": "closed form: steps and lr unused"}
    else:
        new, log = m.train(model, tok, forget_rows, retain_rows, steps=steps, lr=lr, seed=seed,
                           batch_size=batch_size, max_grad_norm=max_grad_norm,
                           progress=progress)
    return new, {"method": method, "params": m.shown_params(), "steps": steps, "lr": lr,
                 "seed": seed, "batch_size": batch_size, **log}
