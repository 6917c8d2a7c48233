"""LUNAR: unlearning by neural activation redirection (Shen et al. 2025, "LUNAR: LLM
Unlearning via Neural Activation Redirection"; official code facebookresearch/LUNAR).

The method's algorithm. The rest of it lives beside this module:
:mod:`kbnb.unlearning.lunar_sets` (the sets), :mod:`kbnb.unlearning.lunar_pipeline`
(layer selection and the whole recipe, :func:`kbnb.unlearning.lunar_pipeline.edit_model`),
:mod:`kbnb.unlearning.lunar_eval` (the metrics) and :mod:`kbnb.unlearning.lunar_store`
(saving and loading edits); the chapter (``notebooks/lunar.ipynb``) keeps its records,
tables and figures in ``kbnb.chapters.lunar``. The steps:

1. **Sets.** ``D_f`` (forget), ``D_r`` (retain), ``D_ref`` (prompts the model already
   refuses): :func:`kbnb.unlearning.lunar_sets.load_sets`, for the organism or TOFU.
2. **Steering vectors** (paper eq. 1). For each layer l,
   ``r_uv^(l) = mean_{x in D_ref} a^(l)(x) - mean_{x in D_f} a^(l)(x)``, with
   ``a^(l)`` the output of the MLP down-projection (``activation="mlp"``, the seed's
   reading) or the residual stream after block l (``activation="residual"``, what the
   official code computes), averaged over the prompt tokens (``position="mean"``) or
   taken at the last prompt token (``"last"``, the official code's end-of-instruction
   token). ``steering_vectors`` returns ``[n_layers, d_model]``.
3. **Layer selection** (:mod:`kbnb.unlearning.lunar_pipeline`), by steering a layer (the
   official code's) or by the effect of the edit itself on validation rows.
4. **Unlearning** (paper eq. 3-4). The down-projection ``W`` (``[d_out, d_in]``) of the
   chosen layer(s) is refitted so that on the token rows of ``D_f`` prompts its output
   becomes ``W z + coeff * r_uv`` and on the rows of ``D_r`` prompts it stays ``W z``:
   ``min_W ||Z W^T - Y||^2`` (``Z`` = inputs of the down-projection, ``[N, d_in]``;
   ``Y`` = targets, ``[N, d_out]``). This is least squares with an exact solution
   (``solve_closed_form``); the official code runs AdamW instead (``solve_sgd``).
   ``fit_lunar`` builds the problem and solves it; ``apply_edit`` writes the weights
   into a model (``swapped_weights``: in place, for a block).
5. **Evaluation** (:mod:`kbnb.unlearning.lunar_eval`) and **saving**
   (:mod:`kbnb.unlearning.lunar_store`); the attacks (``kbnb.methods.attacks``) build on
   these.

Nothing here assumes a layer count, tokenizer or chat template.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from kbnb.core.checks import check_choice
from kbnb.lm import activations as A
from kbnb.lm.encoding import encode_prompt, join_completion
from kbnb.lm.models import format_prompt

POSITIONS = ("mean", "last")
ACTIVATIONS = ("mlp", "residual")
SOLVERS = ("closed_form", "sgd")
ROWS = ("prompt", "distinct", "last")


def prompts_of(tok, rows, key: str = "question") -> list[str]:
    """The formatted prompt (chat template, generation prompt) of each row."""
    return [format_prompt(tok, r[key]) for r in rows]


# ---- steering vectors -----------------------------------------------------------------

def _capture_module(model, activation: str):
    check_choice("activation", activation, ACTIVATIONS)
    return A.mlp_out_name(model) if activation == "mlp" else "block"


def mean_activations(model, tok, prompts, layers=None, activation: str = "residual",
                     position: str = "last", batch_size: int = 32, progress: bool = False):
    """Activations ``[n_layers, N, d_model]`` of ``prompts`` in ``layers`` (all by
    default), captured in one forward pass per batch: the down-projection's output
    (``mlp``) or the block's output (``residual``), averaged over the prompt tokens
    (``mean``) or at the last token (``last``)."""
    check_choice("position", position, POSITIONS)
    return A.capture(model, tok, prompts, layers=layers, module=_capture_module(model, activation),
                     kind="output", position=position, batch_size=batch_size, progress=progress)


def steering_vectors(model, tok, ref_prompts, forget_prompts, activation: str = "residual",
                     position: str = "last", batch_size: int = 32, progress: bool = False):
    """r_uv for every layer, ``[n_layers, d_model]`` (paper eq. 1):
    mean activation over ``ref_prompts`` minus mean activation over ``forget_prompts``."""
    a_ref = mean_activations(model, tok, ref_prompts, None, activation, position, batch_size, progress)
    a_f = mean_activations(model, tok, forget_prompts, None, activation, position, batch_size, progress)
    return a_ref.mean(1) - a_f.mean(1)


# ---- the prompts layer selection reads -----------------------------------------------

def select_prompts(prompts, n_select: int) -> list:
    """``n_select`` prompts spread evenly over ``prompts`` (every k-th, k = len // n),
    for layer selection. ``n_select`` must be >= 1."""
    if not isinstance(n_select, int) or isinstance(n_select, bool) or n_select < 1:
        raise ValueError(f"n_select={n_select!r}: must be an integer >= 1 (forget prompts "
                         f"generated per candidate layer)")
    prompts = list(prompts)
    return prompts[::max(1, len(prompts) // n_select)][:n_select]


# ---- the edit: data, solvers, applying it -------------------------------------------

def _linear_weight(module) -> torch.Tensor:
    """Weight of a projection as ``[d_out, d_in]`` (``nn.Linear``; GPT-2's Conv1D is
    stored transposed)."""
    w = getattr(module, "weight", None)
    if w is not None and (type(w).__name__ in ("Params4bit", "Int8Params")
                          or not torch.is_floating_point(w)):
        raise TypeError(f"cannot edit the quantized {type(module).__name__} ({type(w).__name__}, "
                        f"{w.dtype}): LUNAR needs full-precision weights; load the model "
                        f"without load_in_4bit/load_in_8bit")
    if isinstance(module, torch.nn.Linear):
        return module.weight
    if type(module).__name__ == "Conv1D":
        return module.weight.T
    raise TypeError(f"cannot edit {type(module).__name__}: LUNAR needs a linear down-projection")


def _set_linear_weight(module, W: torch.Tensor) -> None:
    with torch.no_grad():
        if isinstance(module, torch.nn.Linear):
            module.weight.copy_(W.to(module.weight))
        else:
            module.weight.copy_(W.T.to(module.weight))


def shared_prefix_lengths(tok, prompts, others) -> list[int]:
    """For each prompt, the number of leading tokens it shares with at least one of
    ``others``. In a causal model those positions have exactly the same activations
    in both prompts, so no edit can treat them differently."""
    enc = lambda ps: [tuple(encode_prompt(tok, p)) for p in ps]
    prefixes = set()
    for ids in enc(others):
        for t in range(1, len(ids) + 1):
            prefixes.add(ids[:t])
    out = []
    for ids in enc(prompts):
        k = 0
        while k < len(ids) and ids[:k + 1] in prefixes:
            k += 1
        out.append(k)
    return out


def down_proj_inputs(model, tok, prompts, layers, batch_size: int = 32, skip=None,
                     progress: bool = False) -> dict:
    """Inputs of the down-projection at every prompt token, per layer: ``{layer: Z}``
    with ``Z`` ``[N_tokens, d_in]`` (float32, CPU), one forward pass per batch for all
    layers. ``skip`` (one int per prompt) drops that many leading tokens of each
    prompt."""
    layers = [A.check_layer(model, l) for l in layers]
    acts = A.capture(model, tok, prompts, layers=layers, kind="input", position="all",
                     batch_size=batch_size, progress=progress)
    skip = skip or [0] * len(acts)
    return {l: torch.cat([a[i, s:] for a, s in zip(acts, skip)]) for i, l in enumerate(layers)}


@dataclass
class LunarProblem:
    """The least-squares problem of one layer: rows ``Z`` ``[N, d_in]``, targets ``Y``
    ``[N, d_out]`` (bias removed), the original weight ``W0`` ``[d_out, d_in]``, and
    how many of the rows (the first ``n_forget``) come from the forget set."""
    layer: int
    Z: torch.Tensor
    Y: torch.Tensor
    W0: torch.Tensor
    n_forget: int


def build_problems(model, tok, forget_prompts, retain_prompts, vectors, layers,
                   coeff: float = 1.0, rows: str = "last", retain_answers=None,
                   keep_responses=None, batch_size: int = 32,
                   progress: bool = False) -> list[LunarProblem]:
    """Training rows and targets (paper eq. 3-4) for each layer in ``layers``.

    Forget rows: the down-projection's inputs ``z`` at the tokens of each forget
    prompt, target ``W z + coeff * r_uv``. Retain rows: the same for retain prompts,
    target ``W z`` (unchanged). ``rows`` picks the forget prompts' tokens:
    ``prompt`` = every token, as the official code does; ``distinct`` = all but the
    leading tokens a forget prompt shares with some retain prompt (chat-template and
    question-template prefix): their activations are identical to the retain
    prompt's, so they cannot be both moved and kept; ``last`` = the last token only.
    With ``retain_answers`` (one gold answer per retain prompt) the retain rows also
    cover the answer tokens (teacher forcing), so that the edit keeps the
    down-projection unchanged while the model writes retained answers.
    ``keep_responses``: (prompt, response) pairs whose response tokens are added as
    unchanged rows too."""
    check_choice("rows", rows, ROWS)
    if rows == "distinct":
        skip = shared_prefix_lengths(tok, forget_prompts, retain_prompts)
    elif rows == "last":
        skip = [len(encode_prompt(tok, p)) - 1 for p in forget_prompts]
    else:
        skip = None
    Zf = down_proj_inputs(model, tok, forget_prompts, layers, batch_size, skip, progress)
    if retain_answers is not None:
        eos = tok.eos_token or ""
        retain_prompts = [p + join_completion(tok, p, a) + eos
                          for p, a in zip(retain_prompts, retain_answers)]
    Zr = down_proj_inputs(model, tok, retain_prompts, layers, batch_size, None, progress)
    if keep_responses:
        eos = tok.eos_token or ""
        texts = [p + join_completion(tok, p, r) + eos for p, r in keep_responses]
        n_p = [len(encode_prompt(tok, p)) for p, _ in keep_responses]
        Zk = down_proj_inputs(model, tok, texts, layers, batch_size, n_p, progress)
        Zr = {l: torch.cat([Zr[l], Zk[l]]) for l in Zr}
    problems = []
    for l in Zf:
        mod = A.get_module(model, l)
        W0 = _linear_weight(mod).detach().float().cpu()
        Z = torch.cat([Zf[l], Zr[l]])
        Y = Z @ W0.T
        Y[:len(Zf[l])] += coeff * vectors[l].float().cpu()
        problems.append(LunarProblem(l, Z, Y, W0, len(Zf[l])))
    return problems


def mse(W: torch.Tensor, Z: torch.Tensor, Y: torch.Tensor) -> float:
    """Mean squared error ``mean((Z W^T - Y)^2)`` over all rows and outputs (the
    official code's ``nn.MSELoss``)."""
    return float(((Z.double() @ W.double().T - Y.double()) ** 2).mean())


def solve_closed_form(Z: torch.Tensor, Y: torch.Tensor, W0: torch.Tensor | None = None,
                      ridge: float = 1e-6, method: str = "min_change") -> torch.Tensor:
    """Exact least-squares fit of a linear map, ``[d_out, d_in]``.

    Z ``[N, d_in]`` rows, Y ``[N, d_out]`` targets. With ``λ = ridge · mean(diag(ZᵀZ))``:

    * ``min_change`` (default): the minimiser of ``||Z Wᵀ − Y||² + λ||W − W0||²``,
      ``W* = W0 + (Y − Z W0ᵀ)ᵀ Z (ZᵀZ + λI)⁻¹``: the least-squares solution that moves
      ``W`` only in the directions the rows span, leaving it unchanged elsewhere (the
      down-projection keeps its behaviour on inputs unlike any training row);
    * ``ridge``: ``W* = Yᵀ Z (ZᵀZ + λI)⁻¹``, shrinking towards zero.

    For ``λ → 0`` and ``ZᵀZ`` invertible both equal ordinary least squares. Solved in
    float64 with a Cholesky factorisation of the ``[d_in, d_in]`` Gram matrix."""
    check_choice("method", method, ("min_change", "ridge"))
    Z, Y = Z.double(), Y.double()
    G = Z.T @ Z
    lam = ridge * float(G.diagonal().mean()) if ridge > 0 else 0.0
    G = G + lam * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    if method == "min_change":
        if W0 is None:
            raise ValueError("method='min_change' needs W0, the original weight")
        rhs = Z.T @ (Y - Z @ W0.double().T)  # [d_in, d_out]
    else:
        rhs = Z.T @ Y
    try:
        L = torch.linalg.cholesky(G)
        X = torch.cholesky_solve(rhs, L)
    except RuntimeError:  # singular Gram matrix with ridge=0: least-norm solution
        X = torch.linalg.lstsq(G, rhs).solution
    W = X.T
    if method == "min_change":
        W = W0.double() + W
    return W.float()


def solve_sgd(Z: torch.Tensor, Y: torch.Tensor, W0: torch.Tensor, lr: float = 1e-2,
              epochs: int = 20, batch_size: int = 64, gamma: float = 0.9,
              weight_decay: float = 0.01, seed: int = 0, target_mse: float | None = None,
              progress: bool = False) -> tuple[torch.Tensor, list[float]]:
    """The official LUNAR recipe: a copy of the down-projection (initialised at
    ``W0``) trained with AdamW (``lr``, PyTorch's default ``weight_decay`` 0.01) on
    shuffled batches of ``batch_size`` token rows, MSE loss, learning rate times
    ``gamma`` after each epoch. Returns ``(W [d_out, d_in], mse after each epoch)``.
    With ``target_mse`` it stops after the first epoch that reaches it (benchmark)."""
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r}: must be an integer >= 1")
    if not lr > 0:
        raise ValueError(f"lr={lr!r}: must be > 0")
    g = torch.Generator().manual_seed(seed)
    W = torch.nn.Parameter(W0.detach().clone().float())
    opt = torch.optim.AdamW([W], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    Z, Y = Z.float(), Y.float()
    history = []
    for _ in tqdm(range(epochs), desc="sgd epochs", disable=not progress, leave=False):
        perm = torch.randperm(len(Z), generator=g)
        for s in range(0, len(Z), batch_size):
            idx = perm[s:s + batch_size]
            loss = torch.nn.functional.mse_loss(Z[idx] @ W.T, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        history.append(mse(W.detach(), Z, Y))
        if target_mse is not None and history[-1] <= target_mse:
            break
    return W.detach().clone(), history


@dataclass
class LunarEdit:
    """New down-projection weights per layer and how they were obtained."""
    weights: dict  # layer -> W [d_out, d_in] (float32, CPU)
    vectors: torch.Tensor  # [n_layers, d_model] steering vectors
    layers: list
    coeff: float
    position: str
    activation: str
    solver: str
    rows: str
    report: list = field(default_factory=list)  # per layer: mse and seconds of each solver


def fit_lunar(model, tok, forget_prompts, retain_prompts, vectors, layers, coeff: float = 1.0,
              solver: str = "closed_form", rows: str = "last", retain_answers=None,
              keep_responses=None, ridge: float = 1e-6,
              compare: bool = True, batch_size: int = 32, seed: int = 0,
              position: str = "last", activation: str = "residual",
              progress: bool = False) -> LunarEdit:
    """Fit the LUNAR edit of the down-projection in each of ``layers``.

    Each layer is solved on activations of the unedited model (as the official code
    does for its multi-layer variant). ``solver`` picks the weights kept; with
    ``compare`` the other solver also runs, and ``report`` holds both solvers' MSE
    (``mse_closed_form``, ``mse_sgd``), their times in seconds, and the MSE before the
    edit (``mse_before``)."""
    check_choice("solver", solver, SOLVERS)
    problems = build_problems(model, tok, forget_prompts, retain_prompts, vectors, layers,
                              coeff, rows, retain_answers, keep_responses, batch_size,
                              progress)
    weights, report = {}, []
    for p in problems:
        rec = {"layer": p.layer, "rows_forget": p.n_forget, "rows_retain": len(p.Z) - p.n_forget,
               "mse_before": mse(p.W0, p.Z, p.Y)}
        Ws = {}
        for name in SOLVERS:
            if name != solver and not compare:
                continue
            t0 = time.perf_counter()
            if name == "closed_form":
                Ws[name] = solve_closed_form(p.Z, p.Y, p.W0, ridge=ridge)
            else:
                Ws[name], hist = solve_sgd(p.Z, p.Y, p.W0, seed=seed, progress=progress)
                rec["sgd_history"] = hist
            rec[f"seconds_{name}"] = time.perf_counter() - t0
            rec[f"mse_{name}"] = mse(Ws[name], p.Z, p.Y)
            # how far the forget rows are from their targets, relative to the shift
            shift = (p.Y[:p.n_forget] - p.Z[:p.n_forget] @ p.W0.T).norm(dim=1).mean()
            err = (p.Z[:p.n_forget] @ Ws[name].T - p.Y[:p.n_forget]).norm(dim=1).mean()
            rec[f"forget_residual_{name}"] = float(err / shift.clamp(min=1e-12))
        weights[p.layer] = Ws[solver]
        report.append(rec)
    return LunarEdit(weights, vectors.detach().float().cpu(), [p.layer for p in problems], coeff,
                     position, activation, solver, rows, report)


def apply_edit(model, weights: dict, inplace: bool = False):
    """A model whose down-projections in ``weights`` (``{layer: W [d_out, d_in]}``) are
    replaced; a deep copy unless ``inplace``."""
    target = model if inplace else copy.deepcopy(model)
    for l, W in weights.items():
        _set_linear_weight(A.get_module(target, int(l)), W)
    return target


@contextmanager
def swapped_weights(model, weights: dict):
    """Within the block, ``model``'s down-projections in ``weights`` (``{layer: W
    [d_out, d_in]}``) are replaced in place; restored on exit (no copy of the model)."""
    saved = {}
    try:
        for l, W in weights.items():
            module = A.get_module(model, int(l))
            saved[l] = _linear_weight(module).detach().clone()
            _set_linear_weight(module, W)
        yield model
    finally:
        for l, W in saved.items():
            _set_linear_weight(A.get_module(model, int(l)), W)


def _param_name(model, layer: int) -> str:
    mod = A.get_module(model, layer)
    for name, m in model.named_modules():
        if m is mod:
            return f"{name}.weight"
    raise ValueError(f"down-projection of layer {layer} not found in the model")

