"""The unlearning methods, one registered class each, behind one call:
``unlearn(method, model, tok, forget, retain, ...)``.

The losses follow locuslab/open-unlearning (``src/trainer/unlearn/*.py``,
``src/trainer/utils.py``, defaults from ``configs/trainer/*.yaml``); their formulas are in
:mod:`kbnb.unlearning.losses`. With ``lp(y|x)`` the *summed* log-probability of the
completion ``format_example`` builds (answer + EOS after the prompt), ``|y|`` its token
count, and ``NLL`` the model's usual loss (token mean over the batch):

* ``ga`` (:class:`GradAscent`, ``grad_ascent.py``): ``−NLL(forget)``.
* ``graddiff`` (:class:`GradDiff`, ``grad_diff.py``): ``γ·(−NLL(forget)) + α·NLL(retain)``;
  γ = α = 1.
* ``npo`` (:class:`NPO`, ``npo.py``, ``utils.py: compute_dpo_loss`` with no winner):
  ``γ·(−2/β)·mean log σ(−β·(lp_θ − lp_ref)) + α·NLL(retain)``; β = 0.1, γ = α = 1
  (``NPO.yaml``); π_ref is the frozen starting model.
* ``simnpo`` (:class:`SimNPO`, ``simnpo.py``): ``γ·(−2/β)·mean log σ(β·(−lp_θ/|y| − δ)) +
  α·NLL(retain)``; β = 4.5, δ = 0, γ = 0.125, α = 1 (``SimNPO.yaml``). No reference model.
* ``idkdpo`` (:class:`IdkDPO`, ``dpo.py`` with TOFU's IdK answers as the alternate):
  ``γ·(−2/β)·mean log σ(β·((lp_θ(idk) − lp_ref(idk)) − (lp_θ(gold) − lp_ref(gold))))
  + α·NLL(retain)``; β = 0.1, γ = α = 1 (``DPO.yaml``). Each forget row gets one refusal
  drawn (with ``seed``) from ``idk_answers``.
* ``rmu`` (:class:`RMU`, ``rmu.py``; Li et al. 2024, WMDP): the output of block ``l`` (the
  residual stream) on forget answer tokens is pushed to ``c·u`` (``u`` a uniform random
  unit vector, drawn once), on retain answer tokens kept at the frozen model's; loss
  ``γ·act_mse(forget, c·u) + α·act_mse(retain, frozen)`` where ``act_mse`` = squared error
  averaged over the hidden size, over answer tokens per row, then over rows. Only the MLP
  down-projections of blocks ``l−2 … l`` are trained (WMDP's and open-unlearning's
  ``trainable_params_regex``). ``l = round(layer_frac·(n_layers − 1))`` unless ``layer``
  is given (default 0.25: WMDP's layer 7 of Zephyr-7B's 32). ``c`` = ``steering_coeff``,
  or, when None, ``steering_scale`` × the frozen model's mean activation norm at layer
  ``l`` on the forget answer tokens (open-unlearning's fixed 20/300 and WMDP's 6.5 are
  tuned to particular models' activation norms). α = 1000 (``RMU.yaml``).
* ``lunar`` (:class:`LUNAR`): the closed-form LUNAR edit of :mod:`kbnb.unlearning.lunar`
  (steering vector from ``ref_rows``, prompts the model already refuses, to the forget
  prompts; the down-projection of one layer refitted by least squares). ``steps`` and
  ``lr`` are unused (closed form). Layer ``round(layer_frac·(n_layers − 1))`` unless given
  (0.7: open-unlearning's ``Lunar.yaml`` layer 22 of Llama-2-7B's 32).

Optimisation (all but lunar): :func:`kbnb.unlearning.loop.train_copy`, ``steps`` AdamW
steps (weight decay 0, open-unlearning's ``finetune.yaml``) at a constant ``lr``,
gradients clipped to ``max_grad_norm``. Each step takes ``batch_size`` forget rows (a
shuffled cycle through them) and, for methods with a retain term, ``batch_size`` random
retain rows. Deterministic given ``seed`` on CPU. The given model is never changed: it is
the frozen reference, and a trained copy is returned.
"""
from __future__ import annotations

import torch

from kbnb.core.checks import check_choice, check_int
from kbnb.lm import activations as A
from kbnb.lm.generation import pack_prompt_response
from kbnb.lm.models import format_example
from kbnb.unlearning import lunar as L
from kbnb.unlearning.base import (
    METHODS,
    UnlearningMethod,
    check_methods,
    completion_logprobs,
    finite,
    fraction,
    layer_of,
    layer_or_none,
    method_class,
    non_negative,
    optional,
    positive,
    reference_logprobs,
    register,
    select,
)
from kbnb.unlearning.losses import activation_mse, dpo_loss, ga_loss, nll_loss, npo_loss, simnpo_loss

__all__ = ["METHODS", "IDK_ANSWERS", "UnlearningMethod", "GradAscent", "GradDiff", "NPO", "SimNPO",
           "IdkDPO", "RMU", "LUNAR", "check_methods", "method_class", "register", "unlearn"]

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
class GradAscent(UnlearningMethod):
    name, display_name, needs_retain = "ga", "GradAscent", False
    source = "open-unlearning src/trainer/unlearn/grad_ascent.py"
    summary = "gradient ascent on the forget NLL"

    def loss(self, state, idx, ridx):
        lp, n = completion_logprobs(state.policy, state.tok, select(state.forget, idx))
        f = ga_loss(lp, n)  # = −NLL(forget)
        return f, {"forget_losses": f.item(), "retain_losses": 0.0}


@register
class GradDiff(UnlearningMethod):
    """``γ·forget_loss + α·NLL(retain)``; subclasses replace :meth:`forget_loss`."""

    name, display_name = "graddiff", "GradDiff"
    defaults = {"gamma": 1.0, "alpha": 1.0}
    checks = {"gamma": non_negative, "alpha": non_negative}
    source = "open-unlearning src/trainer/unlearn/grad_diff.py, configs/trainer/GradDiff.yaml"
    summary = "gradient ascent on forget + NLL on retain"

    def forget_loss(self, state, idx):
        """The forget term (a differentiable scalar) on forget rows ``idx``."""
        lp, n = completion_logprobs(state.policy, state.tok, select(state.forget, idx))
        return ga_loss(lp, n)

    def loss(self, state, idx, ridx):
        f = self.forget_loss(state, idx)
        lp, n = completion_logprobs(state.policy, state.tok, select(state.retain, ridx))
        r = nll_loss(lp, n)
        return (self.params["gamma"] * f + self.params["alpha"] * r,
                {"forget_losses": f.item(), "retain_losses": r.item()})


@register
class NPO(GradDiff):
    name, display_name = "npo", "NPO"
    defaults = {"beta": 0.1, "gamma": 1.0, "alpha": 1.0}
    checks = {"beta": positive, **GradDiff.checks}
    source = "open-unlearning src/trainer/unlearn/npo.py, configs/trainer/NPO.yaml"
    summary = "negative preference optimisation (frozen reference) + retain NLL"

    def prepare(self, state):
        state.data["ref_lp"] = reference_logprobs(state.ref, state.tok, state.forget,
                                                  state.batch_size)
        return {}

    def forget_loss(self, state, idx):
        lp, _ = completion_logprobs(state.policy, state.tok, select(state.forget, idx))
        return npo_loss(lp, state.data["ref_lp"][idx].to(lp.device), self.params["beta"])


@register
class SimNPO(GradDiff):
    name, display_name = "simnpo", "SimNPO"
    defaults = {"beta": 4.5, "delta": 0.0, "gamma": 0.125, "alpha": 1.0}
    checks = {"beta": positive, "delta": finite, **GradDiff.checks}
    source = "open-unlearning src/trainer/unlearn/simnpo.py, configs/trainer/SimNPO.yaml"
    summary = "length-normalised, reference-free NPO + retain NLL"

    def forget_loss(self, state, idx):
        lp, n = completion_logprobs(state.policy, state.tok, select(state.forget, idx))
        return simnpo_loss(lp, n, self.params["beta"], self.params["delta"])


def _answers(name, v):
    if isinstance(v, str) or not v or not all(isinstance(a, str) for a in v):
        raise ValueError(f"{name}={v!r}: allowed a non-empty list of strings")
    return v


@register
class IdkDPO(GradDiff):
    name, display_name = "idkdpo", "IdkDPO"
    defaults = {"beta": 0.1, "gamma": 1.0, "alpha": 1.0, "idk_answers": IDK_ANSWERS}
    checks = {"beta": positive, **GradDiff.checks, "idk_answers": _answers}
    source = "open-unlearning src/trainer/unlearn/dpo.py, configs/trainer/DPO.yaml"
    summary = "DPO preferring an 'I don't know' answer over the gold one + retain NLL"

    def prepare(self, state):
        idk = list(self.params["idk_answers"])
        chosen = [state.rng.choice(idk) for _ in state.forget]
        wp = [(prompt, format_example(state.tok, "", a)[1])
              for (prompt, _), a in zip(state.forget, chosen)]
        state.data["winners"] = wp
        state.data["ref_w"] = reference_logprobs(state.ref, state.tok, wp, state.batch_size)
        state.data["ref_l"] = reference_logprobs(state.ref, state.tok, state.forget,
                                                 state.batch_size)
        return {"idk_answers_used": chosen}

    def forget_loss(self, state, idx):
        d = state.data
        lp, _ = completion_logprobs(state.policy, state.tok,
                                    select(d["winners"], idx) + select(state.forget, idx))
        lp_w, lp_l = lp[:len(idx)], lp[len(idx):]
        return dpo_loss(lp_w, lp_l, d["ref_w"][idx].to(lp.device), d["ref_l"][idx].to(lp.device),
                        self.params["beta"])


def block_output(model, layer, ids, mask, grad: bool):
    """Output of block ``layer`` (the residual stream), ``[B, T, d]``."""
    store = {}

    def hook(mod, args, out):
        store["x"] = out[0] if isinstance(out, tuple) else out

    h = A.get_layers(model)[layer].register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(grad):
            model(input_ids=ids, attention_mask=mask)
    finally:
        h.remove()
    return store["x"]


@register
class RMU(UnlearningMethod):
    name, display_name = "rmu", "RMU"
    defaults = {"layer": None, "layer_frac": 0.25, "steering_coeff": None, "steering_scale": 2.0,
                "gamma": 1.0, "alpha": 1000.0}
    checks = {"layer": layer_or_none, "layer_frac": fraction, "steering_coeff": optional(positive),
              "steering_scale": positive, "gamma": non_negative, "alpha": non_negative}
    source = ("open-unlearning src/trainer/unlearn/rmu.py, configs/trainer/RMU.yaml; "
              "WMDP rmu/unlearn.py")
    summary = "representation misdirection: forget activations to a random vector"

    def layers(self, model):
        """``(l, [l−2 … l])``: the steered block and the blocks whose down-projections train."""
        layer = layer_of(model, self.params["layer"], self.params["layer_frac"])
        return layer, list(range(max(0, layer - 2), layer + 1))

    def trainable(self, policy):
        return [A.get_module(policy, j).weight for j in self.layers(policy)[1]]

    @staticmethod
    def _pack(state, pairs):
        ids, mask, labels = pack_prompt_response(state.tok, [a for a, _ in pairs],
                                                 [b for _, b in pairs], state.policy.device)
        return ids, mask, (labels != -100).float()

    def prepare(self, state):
        p, fp, bs = self.params, state.forget, state.batch_size
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
            if p["steering_coeff"] is not None:
                break
        c = p["steering_coeff"]
        if c is None:
            c = p["steering_scale"] * norms / max(1, count)
        g = torch.Generator().manual_seed(state.seed)
        u = torch.rand(d, generator=g)
        state.data["layer"] = layer
        state.data["control"] = (u / u.norm() * c).to(state.policy.device)
        return {"layer": layer, "steering_coeff_used": float(c)}

    def loss(self, state, idx, ridx):
        layer, control = state.data["layer"], state.data["control"]
        ids, mask, m = self._pack(state, select(state.forget, idx))
        x = block_output(state.policy, layer, ids, mask, grad=True)
        f = activation_mse(x, control.expand_as(x), m)
        ids, mask, m = self._pack(state, select(state.retain, ridx))
        x = block_output(state.policy, layer, ids, mask, grad=True)
        x_ref = block_output(state.ref, layer, ids, mask, grad=False)
        r = activation_mse(x, x_ref, m)
        return (self.params["gamma"] * f + self.params["alpha"] * r,
                {"forget_losses": f.item(), "retain_losses": r.item()})


def _rows_with_question(name, v):
    if v is not None and (isinstance(v, (str, dict)) or not all(
            isinstance(r, dict) and "question" in r for r in v)):
        raise ValueError(f"{name}: allowed a list of rows with 'question' (or None)")
    return v




@register
class LUNAR(UnlearningMethod):
    """Closed form: :meth:`run` replaces the training loop."""

    name, display_name = "lunar", "LUNAR"
    defaults = {"ref_rows": None, "layer": None, "layer_frac": 0.7, "coeff": 1.0, "ridge": 1e-6,
                "rows": "last"}
    checks = {"ref_rows": _rows_with_question, "layer": layer_or_none, "layer_frac": fraction,
              "coeff": finite, "ridge": non_negative,
              "rows": lambda n, v: check_choice(n, v, L.ROWS)}
    source = "kbnb.unlearning.lunar (closed form); facebookresearch/LUNAR"
    summary = "closed-form refit of one down-projection (activation redirection)"

    def shown_params(self):
        shown = {k: v for k, v in super().shown_params().items() if k != "ref_rows"}
        return {**shown, "n_ref_rows": len(self.params["ref_rows"] or [])}

    def run(self, model, tok, forget_rows, retain_rows, steps, lr, seed, batch_size,
            max_grad_norm, progress):
        p = self.params
        if not p["ref_rows"]:
            raise ValueError("method='lunar' needs ref_rows=[...]: rows (with 'question') the "
                             "model already refuses, the other end of LUNAR's steering vector "
                             "(TOFU: the harmful instructions of kbnb.data.load_refusal; "
                             "tinyworld: its refusal questions)")
        layer = layer_of(model, p["layer"], p["layer_frac"])
        fp, rp = L.prompts_of(tok, forget_rows), L.prompts_of(tok, retain_rows)
        refp = L.prompts_of(tok, p["ref_rows"])
        vectors = L.steering_vectors(model, tok, refp, fp, batch_size=batch_size,
                                     progress=progress)
        edit = L.fit_lunar(model, tok, fp, rp, vectors, [layer], coeff=p["coeff"],
                           solver="closed_form", rows=p["rows"], ridge=p["ridge"], compare=False,
                           batch_size=batch_size, seed=seed, progress=progress)
        new = L.apply_edit(model, edit.weights)
        new.eval()
        rec = edit.report[0]
        return new, {"losses": [], "forget_losses": [], "retain_losses": [], "closed_form": True,
                     "layer": layer, "mse_before": rec["mse_before"],
                     "mse_after": rec["mse_closed_form"],
                     "forget_residual": rec["forget_residual_closed_form"],
                     "seconds": rec["seconds_closed_form"],
                     "note": "closed form: steps and lr unused"}


def unlearn(method: str, model, tok, forget_rows, retain_rows=None, steps: int = 10,
            lr: float = 1e-5, seed: int = 0, batch_size: int = 4, max_grad_norm: float = 1.0,
            progress: bool = False, **kwargs):
    """Unlearn ``forget_rows`` (dicts with ``question``, ``answer``) from a copy of ``model``
    with ``method`` (a name in :data:`METHODS`), keeping ``retain_rows``.

    ``steps`` optimizer steps at learning rate ``lr`` (lunar: closed form, both unused but
    checked); method parameters as keyword arguments (``METHODS[name].defaults`` lists
    them). Returns ``(new_model, log)``; ``log`` has ``method``, ``params`` (the resolved
    method parameters), ``steps``, ``lr``, ``seed``, ``batch_size``, ``losses``,
    ``forget_losses`` and ``retain_losses`` (one per step) and method-specific entries."""
    m = method_class(method)(**kwargs)
    check_int("steps", steps, 1)
    positive("lr", lr)
    check_int("seed", seed, 0)
    check_int("batch_size", batch_size, 1)
    if max_grad_norm is not None:
        non_negative("max_grad_norm", max_grad_norm)
    if not forget_rows:
        raise ValueError("no forget rows")
    if m.needs_retain and not retain_rows:
        raise ValueError(f"method={method!r} needs retain rows")
    m.check_model(model)
    new, log = m.run(model, tok, forget_rows, retain_rows, steps, lr, seed, batch_size,
                     max_grad_norm, progress)
    return new, {"method": method, "params": m.shown_params(), "steps": steps, "lr": lr,
                 "seed": seed, "batch_size": batch_size, **log}
