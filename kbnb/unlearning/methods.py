"""Unlearning methods behind one call: ``unlearn(method, model, tok, forget, retain, ...)``.

The losses follow locuslab/open-unlearning (``src/trainer/unlearn/*.py``,
``src/trainer/utils.py``, defaults from ``configs/trainer/*.yaml``). With ``lp(y|x)``
the *summed* log-probability of the completion ``format_example`` builds (answer +
EOS after the prompt), ``|y|`` its token count, and ``NLL`` the model's usual loss
(token mean over the batch):

* ``ga`` (``grad_ascent.py``): ``−NLL(forget)``.
* ``graddiff`` (``grad_diff.py``): ``γ·(−NLL(forget)) + α·NLL(retain)``; γ = α = 1.
* ``npo`` (``npo.py``, ``utils.py: compute_dpo_loss`` with no winner):
  ``γ·(−2/β)·mean log σ(−β·(lp_θ − lp_ref)) + α·NLL(retain)``; β = 0.1, γ = α = 1
  (``NPO.yaml``); π_ref is the frozen starting model.
* ``simnpo`` (``simnpo.py``): ``γ·(−2/β)·mean log σ(β·(−lp_θ/|y| − δ)) + α·NLL(retain)``;
  β = 4.5, δ = 0, γ = 0.125, α = 1 (``SimNPO.yaml``). No reference model.
* ``idkdpo`` (``dpo.py`` with TOFU's IdK answers as the alternate):
  ``γ·(−2/β)·mean log σ(β·((lp_θ(idk) − lp_ref(idk)) − (lp_θ(gold) − lp_ref(gold))))
  + α·NLL(retain)``; β = 0.1, γ = α = 1 (``DPO.yaml``). Each forget row gets one refusal
  drawn (with ``seed``) from ``idk_answers``.
* ``rmu`` (``rmu.py``; Li et al. 2024, WMDP): the output of block ``l`` (the residual
  stream) on forget answer tokens is pushed to ``c·u`` (``u`` a uniform random unit
  vector, drawn once), on retain answer tokens kept at the frozen model's; loss
  ``γ·act_mse(forget, c·u) + α·act_mse(retain, frozen)`` where ``act_mse`` = squared error
  averaged over the hidden size, over answer tokens per row, then over rows. Only the MLP
  down-projections of blocks ``l−2 … l`` are trained (WMDP's and open-unlearning's
  ``trainable_params_regex``). ``l = round(layer_frac·(n_layers − 1))`` unless ``layer``
  is given (default 0.25: WMDP's layer 7 of Zephyr-7B's 32). ``c`` = ``steering_coeff``,
  or, when None, ``steering_scale`` × the frozen model's mean activation norm at layer
  ``l`` on the forget answer tokens (open-unlearning's fixed 20/300 and WMDP's 6.5 are
  tuned to particular models' activation norms). α = 1000 (``RMU.yaml``).
* ``lunar``: the closed-form LUNAR edit of ``kbnb.lunar`` (steering vector from
  ``ref_rows``, prompts the model already refuses, to the forget prompts; the
  down-projection of one layer refitted by least squares). ``steps`` and ``lr`` are
  unused (closed form). Layer ``round(layer_frac·(n_layers − 1))`` unless given (0.7:
  open-unlearning's ``Lunar.yaml`` layer 22 of Llama-2-7B's 32).

Optimisation (all but lunar): ``steps`` AdamW steps (weight decay 0, open-unlearning's
``finetune.yaml``) at a constant ``lr``, gradients clipped to ``max_grad_norm``. Each
step takes ``batch_size`` forget rows (a shuffled cycle through them) and, for methods
with a retain term, ``batch_size`` random retain rows. Deterministic given ``seed`` on
CPU. The given model is never changed: it is the frozen reference, and a trained copy
is returned.
"""
from __future__ import annotations

import copy
import math
import random
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kbnb.lm import activations as A
from kbnb.lm.generation import pack_prompt_response, response_logprobs, sequence_logprobs
from kbnb.lm.models import format_example
from kbnb.unlearning.npo import cycle_batches, ga_loss, npo_loss

# a paired t test over seeds of a deterministic method (LUNAR's closed form) has identical
# differences; scipy warns about it, the interval and verdict are still right
warnings.filterwarnings("ignore", message="Precision loss occurred in moment calculation")

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


@dataclass(frozen=True)
class Method:
    name: str
    defaults: dict
    needs_retain: bool
    source: str
    summary: str


# ---- validation -------------------------------------------------------------------------

def _int_at_least(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}={v!r}: must be an integer >= {lo}")
    return v


def _positive(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}={v!r}: must be a finite number > 0")
    return float(v)


def _non_negative(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}={v!r}: must be a finite number >= 0")
    return float(v)


def _finite(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name}={v!r}: must be a finite number")
    return float(v)


def _fraction(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise ValueError(f"{name}={v!r}: must be a number in [0, 1]")
    return float(v)


def _layer(model, layer, layer_frac, name="layer"):
    L = A.n_layers(model)
    if layer is None:
        return round(_fraction("layer_frac", layer_frac) * (L - 1))
    return A.check_layer(model, layer, name)


# ---- the shared training loop -------------------------------------------------------------

def _logps(model, tok, pairs):
    """Summed completion log-probabilities ``[B]`` (differentiable) and token counts ``[B]``."""
    ids, mask, labels = pack_prompt_response(tok, [p for p, _ in pairs], [c for _, c in pairs],
                                             model.device)
    lp = sequence_logprobs(model(input_ids=ids, attention_mask=mask).logits, labels)
    return lp, (labels[:, 1:] != -100).sum(-1)


def _nll(model, tok, pairs):
    lp, n = _logps(model, tok, pairs)
    return -lp.sum() / n.sum().clamp(min=1)


def _ref_logps(ref, tok, pairs, batch_size):
    return response_logprobs(ref, tok, [p for p, _ in pairs], [c for _, c in pairs],
                             batch_size=batch_size, reduce="sum")


def _train(name, model, tok, forget_rows, retain_rows, steps, lr, seed, batch_size,
           max_grad_norm, progress, make_loss, trainable=None):
    """Run ``steps`` AdamW steps on a deep copy of ``model``. ``make_loss(policy, ref,
    f_pairs, r_pairs, rng)`` returns ``loss(policy, f_idx, r_idx) -> (total, forget,
    retain, extra)``. ``trainable(policy)`` lists the parameters to train (all if None)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    ref = model
    ref_training = ref.training
    ref.eval()
    policy = copy.deepcopy(model)
    policy.train()
    chosen = None if trainable is None else {id(p) for p in trainable(policy)}
    for p in policy.parameters():
        p.requires_grad_(chosen is None or id(p) in chosen)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    f_pairs = [format_example(tok, r["question"], r["answer"]) for r in forget_rows]
    r_pairs = [format_example(tok, r["question"], r["answer"]) for r in (retain_rows or [])]
    loss_fn, extra_log = make_loss(policy, ref, f_pairs, r_pairs, rng)
    log = {"losses": [], "forget_losses": [], "retain_losses": [], **extra_log}
    batches = cycle_batches(len(f_pairs), batch_size, rng)
    for _ in tqdm(range(steps), desc=f"{name} unlearning", disable=not progress, leave=False):
        idx = next(batches)
        ridx = [rng.randrange(len(r_pairs)) for _ in range(batch_size)] if r_pairs else []
        total, f_loss, r_loss = loss_fn(idx, ridx)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        log["losses"].append(total.item())
        log["forget_losses"].append(float(f_loss))
        log["retain_losses"].append(float(r_loss))
    opt.zero_grad(set_to_none=True)
    for p in policy.parameters():
        p.requires_grad_(True)
    policy.eval()
    ref.train(ref_training)
    log["trained_params"] = len(params)
    return policy, log


def _sel(pairs, idx):
    return [pairs[i] for i in idx]


# ---- the methods -----------------------------------------------------------------------

def _ga(tok, p, batch_size):
    def make(policy, ref, fp, rp, rng):
        def loss(idx, ridx):
            lp, n = _logps(policy, tok, _sel(fp, idx))
            f = ga_loss(lp, n)  # = −NLL(forget)
            return f, f.item(), 0.0
        return loss, {}
    return make


def _graddiff(tok, p, batch_size):
    def make(policy, ref, fp, rp, rng):
        def loss(idx, ridx):
            lp, n = _logps(policy, tok, _sel(fp, idx))
            f = ga_loss(lp, n)
            r = _nll(policy, tok, _sel(rp, ridx))
            return p["gamma"] * f + p["alpha"] * r, f.item(), r.item()
        return loss, {}
    return make


def _npo(tok, p, batch_size):
    def make(policy, ref, fp, rp, rng):
        ref_lp = _ref_logps(ref, tok, fp, batch_size)

        def loss(idx, ridx):
            lp, _ = _logps(policy, tok, _sel(fp, idx))
            f = npo_loss(lp, ref_lp[idx].to(lp.device), p["beta"])
            r = _nll(policy, tok, _sel(rp, ridx))
            return p["gamma"] * f + p["alpha"] * r, f.item(), r.item()
        return loss, {}
    return make


def _simnpo(tok, p, batch_size):
    def make(policy, ref, fp, rp, rng):
        def loss(idx, ridx):
            lp, n = _logps(policy, tok, _sel(fp, idx))
            x = -lp / n.clamp(min=1) - p["delta"]  # average NLL per sequence − δ
            f = -(2.0 / p["beta"]) * F.logsigmoid(p["beta"] * x).mean()
            r = _nll(policy, tok, _sel(rp, ridx))
            return p["gamma"] * f + p["alpha"] * r, f.item(), r.item()
        return loss, {}
    return make


def _idkdpo(tok, p, batch_size):
    def make(policy, ref, fp, rp, rng):
        idk = list(p["idk_answers"])
        chosen = [rng.choice(idk) for _ in fp]
        wp = [(prompt, format_example(tok, "", a)[1]) for (prompt, _), a in zip(fp, chosen)]
        ref_w = _ref_logps(ref, tok, wp, batch_size)
        ref_l = _ref_logps(ref, tok, fp, batch_size)

        def loss(idx, ridx):
            lp, _ = _logps(policy, tok, _sel(wp, idx) + _sel(fp, idx))
            lp_w, lp_l = lp[:len(idx)], lp[len(idx):]
            margin = (lp_w - ref_w[idx].to(lp.device)) - (lp_l - ref_l[idx].to(lp.device))
            f = -(2.0 / p["beta"]) * F.logsigmoid(p["beta"] * margin).mean()
            r = _nll(policy, tok, _sel(rp, ridx))
            return p["gamma"] * f + p["alpha"] * r, f.item(), r.item()
        return loss, {"idk_answers_used": chosen}
    return make


def _block_output(model, layer, ids, mask, grad: bool):
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


def _act_mse(x, target, mask):
    """open-unlearning's ``compute_activation_loss``: squared error averaged over the hidden
    size, summed over the masked tokens and divided by their number, then averaged over rows."""
    se = (x.float() - target.float()).square().mean(-1) * mask
    return (se.sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def _rmu_layers(model, p):
    l = _layer(model, p["layer"], p["layer_frac"])
    return l, list(range(max(0, l - 2), l + 1))


def _rmu(tok, p, batch_size, seed):
    def make(policy, ref, fp, rp, rng):
        l, _ = _rmu_layers(policy, p)

        def pack(pairs):
            ids, mask, labels = pack_prompt_response(tok, [a for a, _ in pairs],
                                                     [b for _, b in pairs], policy.device)
            return ids, mask, (labels != -100).float()

        # the frozen model's activations on the forget answers: the hidden size, and the
        # scale of the control vector when steering_coeff is None
        norms, count, d = 0.0, 0, None
        for s in range(0, len(fp), batch_size):
            ids, mask, m = pack(fp[s:s + batch_size])
            x = _block_output(ref, l, ids, mask, grad=False).float()
            d = x.shape[-1]
            norms += float((x.norm(dim=-1) * m).sum())
            count += int(m.sum())
            if p["steering_coeff"] is not None:
                break
        c = p["steering_coeff"]
        if c is None:
            c = p["steering_scale"] * norms / max(1, count)
        g = torch.Generator().manual_seed(seed)
        u = torch.rand(d, generator=g)
        control = (u / u.norm() * c).to(policy.device)

        def loss(idx, ridx):
            ids, mask, m = pack(_sel(fp, idx))
            x = _block_output(policy, l, ids, mask, grad=True)
            f = _act_mse(x, control.expand_as(x), m)
            ids, mask, m = pack(_sel(rp, ridx))
            x = _block_output(policy, l, ids, mask, grad=True)
            x_ref = _block_output(ref, l, ids, mask, grad=False)
            r = _act_mse(x, x_ref, m)
            return p["gamma"] * f + p["alpha"] * r, f.item(), r.item()
        return loss, {"layer": l, "steering_coeff_used": float(c)}
    return make


def _rmu_trainable(p):
    def trainable(policy):
        _, layers = _rmu_layers(policy, p)
        return [A.get_module(policy, j).weight for j in layers]
    return trainable


def _lunar(model, tok, forget_rows, retain_rows, p, batch_size, seed, progress):
    from kbnb.unlearning import lunar as L

    if not p["ref_rows"]:
        raise ValueError("method='lunar' needs ref_rows=[...]: rows (with 'question') the model "
                         "already refuses, the other end of LUNAR's steering vector (TOFU: the "
                         "harmful instructions of kbnb.data.load_refusal; tinyworld: its "
                         "refusal questions)")
    layer = _layer(model, p["layer"], p["layer_frac"])
    fp, rp = L.prompts_of(tok, forget_rows), L.prompts_of(tok, retain_rows)
    refp = L.prompts_of(tok, p["ref_rows"])
    vectors = L.steering_vectors(model, tok, refp, fp, batch_size=batch_size, progress=progress)
    edit = L.fit_lunar(model, tok, fp, rp, vectors, [layer], coeff=p["coeff"],
                       solver="closed_form", rows=p["rows"], ridge=p["ridge"], compare=False,
                       batch_size=batch_size, seed=seed, progress=progress)
    new = L.apply_edit(model, edit.weights)
    new.eval()
    rec = edit.report[0]
    log = {"losses": [], "forget_losses": [], "retain_losses": [], "closed_form": True,
           "layer": layer, "mse_before": rec["mse_before"],
           "mse_after": rec["mse_closed_form"],
           "forget_residual": rec["forget_residual_closed_form"],
           "seconds": rec["seconds_closed_form"], "note": "closed form: steps and lr unused"}
    return new, log


METHODS = {
    "ga": Method("ga", {}, False, "open-unlearning src/trainer/unlearn/grad_ascent.py",
                 "gradient ascent on the forget NLL"),
    "graddiff": Method("graddiff", {"gamma": 1.0, "alpha": 1.0}, True,
                       "open-unlearning src/trainer/unlearn/grad_diff.py, configs/trainer/GradDiff.yaml",
                       "gradient ascent on forget + NLL on retain"),
    "npo": Method("npo", {"beta": 0.1, "gamma": 1.0, "alpha": 1.0}, True,
                  "open-unlearning src/trainer/unlearn/npo.py, configs/trainer/NPO.yaml",
                  "negative preference optimisation (frozen reference) + retain NLL"),
    "simnpo": Method("simnpo", {"beta": 4.5, "delta": 0.0, "gamma": 0.125, "alpha": 1.0}, True,
                     "open-unlearning src/trainer/unlearn/simnpo.py, configs/trainer/SimNPO.yaml",
                     "length-normalised, reference-free NPO + retain NLL"),
    "idkdpo": Method("idkdpo", {"beta": 0.1, "gamma": 1.0, "alpha": 1.0,
                                "idk_answers": IDK_ANSWERS}, True,
                     "open-unlearning src/trainer/unlearn/dpo.py, configs/trainer/DPO.yaml",
                     "DPO preferring an 'I don't know' answer over the gold one + retain NLL"),
    "rmu": Method("rmu", {"layer": None, "layer_frac": 0.25, "steering_coeff": None,
                          "steering_scale": 2.0, "gamma": 1.0, "alpha": 1000.0}, True,
                  "open-unlearning src/trainer/unlearn/rmu.py, configs/trainer/RMU.yaml; "
                  "WMDP rmu/unlearn.py",
                  "representation misdirection: forget activations to a random vector"),
    "lunar": Method("lunar", {"ref_rows": None, "layer": None, "layer_frac": 0.7, "coeff": 1.0,
                              "ridge": 1e-6, "rows": "last"}, True,
                    "kbnb.lunar (closed form); facebookresearch/LUNAR",
                    "closed-form refit of one down-projection (activation redirection)"),
}


def _check_params(method, p):
    for k in ("beta",):
        if k in p:
            _positive(k, p[k])
    for k in ("gamma", "alpha", "ridge"):
        if k in p:
            _non_negative(k, p[k])
    if "delta" in p:
        _finite("delta", p["delta"])
    if "coeff" in p:
        _finite("coeff", p["coeff"])
    if "layer_frac" in p:
        _fraction("layer_frac", p["layer_frac"])
    if p.get("steering_coeff") is not None:
        _positive("steering_coeff", p["steering_coeff"])
    if "steering_scale" in p:
        _positive("steering_scale", p["steering_scale"])
    if "idk_answers" in p and (isinstance(p["idk_answers"], str) or not p["idk_answers"]):
        raise ValueError("idk_answers must be a non-empty list of strings")


def unlearn(method: str, model, tok, forget_rows, retain_rows=None, steps: int = 10,
            lr: float = 1e-5, seed: int = 0, batch_size: int = 4, max_grad_norm: float = 1.0,
            progress: bool = False, **kwargs):
    """Unlearn ``forget_rows`` (dicts with ``question``, ``answer``) from a copy of ``model``
    with ``method`` (one of ``METHODS``), keeping ``retain_rows``.

    ``steps`` optimizer steps at learning rate ``lr`` (lunar: closed form, both unused but
    checked); method parameters as keyword arguments (``METHODS[name].defaults`` lists
    them). Returns ``(new_model, log)``; ``log`` has ``method``, ``params`` (the resolved
    method parameters), ``steps``, ``lr``, ``seed``, ``batch_size``, ``losses``,
    ``forget_losses`` and ``retain_losses`` (one per step) and method-specific entries."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: allowed {', '.join(map(repr, METHODS))}")
    spec = METHODS[method]
    unknown = set(kwargs) - set(spec.defaults)
    if unknown:
        allowed = ", ".join(spec.defaults) or "none"
        raise ValueError(f"method={method!r} has no parameter(s) {', '.join(sorted(unknown))}; "
                         f"allowed: {allowed}")
    _int_at_least("steps", steps, 1)
    _positive("lr", lr)
    _int_at_least("seed", seed, 0)
    _int_at_least("batch_size", batch_size, 1)
    if max_grad_norm is not None:
        _non_negative("max_grad_norm", max_grad_norm)
    if not forget_rows:
        raise ValueError("no forget rows")
    if spec.needs_retain and not retain_rows:
        raise ValueError(f"method={method!r} needs retain rows")
    p = {**spec.defaults, **kwargs}
    _check_params(method, p)
    if p.get("layer") is not None:
        A.check_layer(model, p["layer"])
    if method == "lunar":
        new, log = _lunar(model, tok, forget_rows, retain_rows, p, batch_size, seed, progress)
    else:
        builders = {"ga": _ga, "graddiff": _graddiff, "npo": _npo, "simnpo": _simnpo,
                    "idkdpo": _idkdpo}
        make = _rmu(tok, p, batch_size, seed) if method == "rmu" else builders[method](tok, p, batch_size)
        trainable = _rmu_trainable(p) if method == "rmu" else None
        new, log = _train(method, model, tok, forget_rows,
                          retain_rows if spec.needs_retain else None, steps, lr, seed,
                          batch_size, max_grad_norm, progress, make, trainable)
    shown = {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items() if k != "ref_rows"}
    if "ref_rows" in p:
        shown["n_ref_rows"] = len(p["ref_rows"] or [])
    return new, {"method": method, "params": shown, "steps": steps, "lr": lr, "seed": seed,
                 "batch_size": batch_size, **log}


# ---- the unlearning chapter: every method, measured as open-unlearning measures it --------

REPORTED = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "privleak")
LABELS = {"forget_quality": "forget quality", "model_utility": "model utility",
          "forget_truth_ratio": "forget truth ratio", "forget_rouge": "forget ROUGE-L",
          "privleak": "privleak (%)", "forget_prob": "forget probability",
          "mia_auc": "MIA AUC (Min-K%)"}
TABLE_METRICS = REPORTED + ("forget_prob", "mia_auc")
DISPLAY_NAMES = {"ga": "GradAscent", "graddiff": "GradDiff", "npo": "NPO", "simnpo": "SimNPO",
                 "idkdpo": "IdkDPO", "rmu": "RMU", "lunar": "LUNAR"}


def log10_fq(values) -> list[float]:
    """``log10`` of forget qualities (floored at 1e-300 so that 0 stays finite): the scale
    the field plots them on and the one on which the chapter compares them."""
    return [math.log10(max(float(v), 1e-300)) for v in values]


def check_methods(methods) -> list[str]:
    """``methods`` as a list of registry names; an unknown name is refused with the list."""
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    if not methods:
        raise ValueError(f"methods=[]: give at least one of {', '.join(map(repr, METHODS))}")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: {m!r} is not a method; allowed "
                             f"{', '.join(map(repr, METHODS))}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods={methods}: a method is listed twice")
    return methods


def plain(results: dict) -> dict:
    """``evaluate_unlearning`` results without the per-item lists and generations."""
    return {k: v for k, v in results.items()
            if not k.endswith("_generations") and k != "forget_truth_ratios"}


def run_methods(model, tok, sets: dict, retain_rows, methods, seeds, retain_ref: dict,
                steps: int, lr: float, batch_size: int = 8, max_new_tokens: int = 32,
                eval_batch_size: int = 64, ref_rows=None, progress: bool = False) -> dict:
    """Unlearn ``sets["forget"]`` with every method and seed and evaluate each result with
    ``kbnb.tofu_metrics.evaluate_unlearning`` against ``retain_ref``. Returns
    ``{method: {seed: {"results": plain results, "log": unlearning log summary,
    "forget_truth_ratios": [...], "seconds": s}}}``."""
    import time

    from kbnb.eval.tofu import evaluate_unlearning

    out = {}
    for method in check_methods(methods):
        out[method] = {}
        for seed in seeds:
            t0 = time.time()
            kw = {"ref_rows": ref_rows} if method == "lunar" else {}
            new, log = unlearn(method, model, tok, sets["forget"], retain_rows, steps=steps,
                               lr=lr, seed=seed, batch_size=batch_size, progress=progress, **kw)
            res = evaluate_unlearning(new, tok, sets, retain_reference=retain_ref,
                                      max_new_tokens=max_new_tokens, batch_size=eval_batch_size)
            del new
            out[method][seed] = {
                "results": plain(res), "forget_truth_ratios": res["forget_truth_ratios"],
                "final_loss": log["losses"][-1] if log["losses"] else None,
                "seconds": time.time() - t0}
    return out


def results_table(rows: dict, headlines: dict, digits: int = 3):
    """One table of every model x metric: ``rows`` maps a row name to plain values (the
    untouched and retain organisms: one deterministic value each), ``headlines`` maps a
    method to ``{metric: headline dict}`` (mean ± half the 95% interval over seeds)."""
    import pandas as pd

    from kbnb.eval.stats import format_mean_ci

    def num(v):
        return "n/a" if v is None else (f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.{digits}f}")

    def cell(h):
        if h["mean"] != 0 and abs(h["mean"]) < 1e-3:
            return f"{h['mean']:.2e} ({h['ci95'][0]:.1e} to {h['ci95'][1]:.1e})"
        return format_mean_ci(h, digits)

    table = [{"model": name, **{LABELS[k]: num(vals.get(k)) for k in TABLE_METRICS}}
             for name, vals in rows.items()]
    for method, hs in headlines.items():
        table.append({"model": DISPLAY_NAMES.get(method, method),
                      **{LABELS[k]: cell(hs[k]) for k in TABLE_METRICS}})
    return pd.DataFrame(table).set_index("model")


FQ_FLOOR = 1e-30  # forget qualities below this are drawn at it (open-unlearning's reach 1e-239)


def fq_mu_figure(points: dict, per_seed: dict, base: dict, retain: dict, reference: dict,
                 reference_label: str):
    """The field's plot: model utility (x) against forget quality (y, log scale), this run
    (left: methods' seed means with their seeds, the untouched and the retain organism)
    beside open-unlearning's reference numbers (right), each labelled."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    clip = lambda v: max(float(v), FQ_FLOOR)  # noqa: E731
    for i, (m, (mu, fq)) in enumerate(points.items()):
        c = colors[i % len(colors)]
        s_mu, s_fq = per_seed[m]
        ax1.scatter(s_mu, [clip(v) for v in s_fq], color=c, s=12, alpha=0.5)
        ax1.scatter([mu], [clip(fq)], color=c, s=60, edgecolor="k",
                    label=DISPLAY_NAMES.get(m, m))
    for name, vals, marker in (("untouched organism", base, "s"), ("retain organism", retain, "*")):
        ax1.scatter([vals["model_utility"]], [clip(vals["forget_quality"])], marker=marker,
                    s=140, color="k", facecolor="none" if marker == "s" else "k", label=name)
    for i, (m, (fq, mu, _)) in enumerate(reference.items()):
        marker = {"finetuned": "s", "retain": "*"}.get(m, "o")
        ax2.scatter([mu], [clip(fq)], marker=marker, s=70 if marker == "o" else 140,
                    color="k" if marker != "o" else colors[(list(DISPLAY_NAMES).index(m)
                                                              if m in DISPLAY_NAMES else i)
                                                             % len(colors)],
                    facecolor="none" if marker == "s" else None,
                    label={"finetuned": "finetuned", "retain": "retain"}.get(
                        m, DISPLAY_NAMES.get(m, m)))
    for ax, title in ((ax1, "This run (the organism; big dots: mean over seeds)"),
                      (ax2, reference_label)):
        ax.set_yscale("log")
        ax.axhline(0.05, color="tab:gray", ls=":", lw=1)
        ax.axhline(FQ_FLOOR, color="tab:gray", ls="--", lw=0.8)
        ax.set_xlabel("model utility (harmonic mean of 9 parts, 0 to 1)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="lower left" if ax is ax2 else "best")
        ax.set_xlim(-0.02, 1.02)
    ax1.set_ylabel(f"forget quality (KS p-value, log; below {FQ_FLOOR:.0e} drawn at it)")
    ax1.set_ylim(FQ_FLOOR / 10, 3)
    fig.tight_layout()
    return fig


def discussion(base: dict, retain: dict, means: dict, mu_keep: float = 0.9) -> dict:
    """Computed sentences for the chapter's discussion (``means``: method → {metric: seed
    mean}): which methods reach a forget quality above 0.05 (the KS test no longer tells
    them from the retain organism), which keep ``mu_keep`` of the organism's utility, and
    the best trade-off."""
    def fmt(v):
        return f"{v:.2g}" if v < 1e-3 else f"{v:.3f}"

    mu0 = base["model_utility"]
    keep = {m for m, v in means.items() if v["model_utility"] >= mu_keep * mu0}
    fq_ok = {m for m, v in means.items() if v["forget_quality"] > 0.05}
    both = sorted(keep & fq_ok, key=lambda m: -means[m]["forget_quality"])
    names = lambda ms: ", ".join(DISPLAY_NAMES.get(m, m) for m in ms) or "none"  # noqa: E731
    out = {
        "fq_above_005": names(sorted(fq_ok)),
        "mu_kept": names(sorted(keep)),
        "best_tradeoff": (
            f"{DISPLAY_NAMES.get(both[0], both[0])} reaches a forget quality of "
            f"{fmt(means[both[0]]['forget_quality'])} (mean over seeds) with a model utility of "
            f"{means[both[0]]['model_utility']:.3f}, {means[both[0]]['model_utility'] / mu0:.0%} "
            f"of the untouched organism's"
            if both else
            f"No method reaches a forget quality above 0.05 while keeping {mu_keep:.0%} of the "
            f"untouched organism's model utility ({mu0:.3f}) at these settings"),
    }
    best_fq = max(means, key=lambda m: means[m]["forget_quality"])
    out["best_fq"] = (f"{DISPLAY_NAMES.get(best_fq, best_fq)} has the highest mean forget quality "
                      f"({fmt(means[best_fq]['forget_quality'])}, model utility "
                      f"{means[best_fq]['model_utility']:.3f})")
    return out


def chapter_sets(dataset: str, forget_split: str, world=None, data_dir=None,
                 n_retain: int | None = 90) -> dict:
    """The five evaluation sets: ``tofu_metrics.organism_sets`` on the organism's world,
    ``tofu_metrics.tofu_sets`` on real TOFU."""
    from kbnb.eval.tofu import organism_sets, tofu_sets
    if dataset == "tinyworld":
        return organism_sets(world, forget_split, n_retain)
    return tofu_sets(forget_split, data_dir, n_retain)


def chapter_retain_rows(dataset: str, forget_split: str, world=None, data_dir=None) -> list:
    """Rows of the methods' retain term: the organism's known retain facts, or TOFU's
    retain split."""
    from kbnb.eval.tofu import _check_split, organism_retain_rows
    if dataset == "tinyworld":
        return organism_retain_rows(world, forget_split)
    from kbnb.data.loaders import load_tofu
    return load_tofu(_check_split(forget_split)[0], data_dir)


def chapter_ref_rows(dataset: str, world=None, data_dir=None) -> list:
    """LUNAR's reference prompts (questions the model already refuses): the organism's
    refusal questions, or the harmful instructions for a real model."""
    if dataset == "tinyworld":
        return list(world.refusal_train)
    from kbnb.data.loaders import load_refusal
    return load_refusal("train", data_dir)


def chapter_retain_evaluation(retain_model: str, model_name: str, dataset: str, sets: dict,
                              forget_split: str, n_retain, max_new_tokens: int,
                              device: str = "auto") -> dict | None:
    """The retain model's ``evaluate_unlearning`` results against itself (forget quality
    1, privleak 0), or None when there is none (``retain_model=""``, or ``"auto"`` for a
    model that is not the organism: forget quality is then reported as not available).

    ``"auto"`` on the organism: the retain organism (trained once and cached,
    ``kbnb.tofu_metrics.retain_evaluation``); otherwise a hub id or directory."""
    from kbnb.lm.models import load_model, resolve_device
    from kbnb.organism.model import parse_organism_name
    from kbnb.eval.tofu import evaluate_against, evaluate_unlearning, retain_evaluation

    if not retain_model:
        return None
    dev = str(resolve_device(device))
    if retain_model == "auto":
        if parse_organism_name(model_name) is None or dataset != "tinyworld":
            return None
        return retain_evaluation(model_name, forget_split, n_retain=n_retain,
                                 max_new_tokens=max_new_tokens, device=dev)
    model, tok = load_model(retain_model, device=dev)
    res = evaluate_unlearning(model, tok, sets, max_new_tokens=max_new_tokens, batch_size=64)
    res = {**res, **evaluate_against(res, res)}
    res["model_name"] = retain_model
    return res


def chapter_targets(base: dict, retain: dict | None, means: dict) -> dict:
    """The chapter's targets on the organism, each measured (None: not measurable)."""
    if retain is None:
        return {"note": "no retain model: forget quality and privleak are not available"}
    mu0 = base["model_utility"]
    ok = [m for m, v in means.items()
          if v.get("forget_quality", 0) > 0.1 and v["model_utility"] >= 0.9 * mu0]
    return {
        "retain_fq_self": retain["forget_quality"],
        "retain_fq_self_is_1": abs(retain["forget_quality"] - 1.0) < 1e-9,
        "retain_mu_minus_untouched_mu": retain["model_utility"] - mu0,
        "retain_mu_within_005": abs(retain["model_utility"] - mu0) <= 0.05,
        "untouched_fq": base["forget_quality"],
        "untouched_fq_below_001": base["forget_quality"] < 0.01,
        "methods_fq_above_01_with_mu_090": ok,
        "some_method_fq_above_01_with_mu_090": bool(ok),
    }


def table_intro(base: dict, retain: dict | None, n_seeds: int) -> str:
    """The sentence above the results table."""
    s = (f"Each method's cell is the mean over {n_seeds} seeds ± half its 95% t interval; "
         "the untouched and the retain model are deterministic and have one value. ")
    if retain is None:
        return s + "There is no retain model, so forget quality and privleak are not available."
    return s + (f"The untouched model's forget quality is {base['forget_quality']:.2g} and its "
                f"model utility {base['model_utility']:.3f}; the retain model's are "
                f"{retain['forget_quality']:.2g} (against itself) and "
                f"{retain['model_utility']:.3f}.")


def discussion_text(d: dict, targets: dict, base: dict, retain: dict | None) -> str:
    """The computed discussion paragraph."""
    if retain is None:
        return ("Without a retain model forget quality cannot be computed; the table still "
                "shows truth ratio, ROUGE, probability and utility.")
    return (f"{d['best_tradeoff']}. {d['best_fq']}. Methods whose mean forget quality is "
            f"above 0.05: {d['fq_above_005']}; methods that keep at least 90% of the "
            f"untouched model's utility: {d['mu_kept']}. On TOFU with Llama-3.2-1B, "
            "open-unlearning reports NPO at a forget quality of 0.02 with a model utility of "
            "0.46 (the finetuned model: 0.60), and every other method below 1e-11 on forget10: "
            "the comparison is of shapes, not of numbers, since the organism is a different "
            "model trained on different data, with other step counts and learning rates.")


def targets_text(t: dict) -> str:
    """The targets as measured, one sentence."""
    if "note" in t:
        return t["note"] + "."
    yes = lambda b: "met" if b else "missed"  # noqa: E731
    ok = ", ".join(DISPLAY_NAMES.get(m, m) for m in t["methods_fq_above_01_with_mu_090"])
    return (f"Targets: the retain model's forget quality against itself is "
            f"{t['retain_fq_self']:.3g} ({yes(t['retain_fq_self_is_1'])}: 1); its utility differs "
            f"from the untouched model's by {t['retain_mu_minus_untouched_mu']:+.3f} "
            f"({yes(t['retain_mu_within_005'])}: within 0.05); the untouched model's forget "
            f"quality is {t['untouched_fq']:.2g} ({yes(t['untouched_fq_below_001'])}: below "
            f"0.01); a method with forget quality above 0.1 and at least 90% of the utility: "
            f"{ok or 'none'} ({yes(t['some_method_fq_above_01_with_mu_090'])}).")
