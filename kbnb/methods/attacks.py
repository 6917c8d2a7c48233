"""Attacks on a LUNAR edit: does the forgotten knowledge come back?

The attacks of Shen et al. 2025 (LUNAR, section "Robustness") and of the seed
reproduction (``layer_skip.py``, ``reverse_direction.py``, ``quantization-4b.py``,
``create_paraphrase.py``), on a model edited by ``kbnb.unlearning.lunar``. Algorithms
only: the chapter ``notebooks/lunar_attacks.ipynb`` keeps its records, tables, figures
and sentences in ``kbnb.chapters.lunar_attacks``.

LUNAR changes only the down-projection ``W`` of the edited layer(s) l, so that on
forget prompts its output becomes ``W z + c · r_uv^(l)``. Each attack tries to undo or
route around that change:

* ``layer_skip`` — skip the edited layer's MLP (:func:`kbnb.lm.activations.skip`): its
  output (the down-projection's output) is replaced by zeros, so the residual stream
  passes through the layer's MLP unchanged, ``h_{l} = h_{l-1} + attn_l(h_{l-1})`` (the
  seed's reading);
* ``block_skip`` — skip the whole edited block (``skip(..., "block")``): ``h_l = h_{l-1}``
  (the official code's);
* ``reverse`` — subtract ``c · r_uv^(l)`` from the down-projection's output on the
  prompt (where the edit added it), ``W' z − c · r_uv``: a white-box attacker who
  knows the steering direction;
* ``quantize`` — 4-bit quantisation of every linear weight in the transformer
  blocks: bitsandbytes NF4 (``quantize_4bit``/``dequantize_4bit``, groups of 64) or,
  when bitsandbytes is unavailable or fails, plain round-to-nearest symmetric int4
  per group (named ``rtn-int4 (fallback)`` in the output);
* ``paraphrase`` — the forget questions rephrased (TOFU's ``paraphrased_question``;
  the organism's held-out question template).

``evaluate_attacks`` measures LUNAR's metrics (``kbnb.unlearning.lunar_eval.evaluate_edit``)
for the vanilla model, the edited model and each attack; ``recovery`` says how much of
the forgotten ROUGE-1 recall comes back. Nothing here assumes a layer count, tokenizer
or chat template.
"""
from __future__ import annotations

import copy
import time
from contextlib import ExitStack, contextmanager

import torch
from tqdm.auto import tqdm

from kbnb.core.checks import check_choice
from kbnb.data.loaders import find_data_dir, read_jsonl
from kbnb.data.splits import FORGET_SPLITS
from kbnb.eval.metrics import contains_answer
from kbnb.lm import activations as A
from kbnb.unlearning.lunar_eval import evaluate_edit
from kbnb.unlearning.lunar_pipeline import steer_like_edit

ATTACKS = ("layer_skip", "block_skip", "reverse", "quantize", "paraphrase")
QUANT_METHODS = ("auto", "nf4", "rtn")


def check_attacks(attacks) -> list[str]:
    """``attacks`` as a list (a single name is accepted), each checked against
    ``ATTACKS``; a clear ValueError names the allowed values."""
    if isinstance(attacks, str):
        attacks = [attacks]
    attacks = list(attacks)
    for a in attacks:
        check_choice("attacks", a, ATTACKS)
    return attacks


def _as_layers(model, layers) -> list[int]:
    if isinstance(layers, int):
        layers = [layers]
    return [A.check_layer(model, int(l)) for l in layers]


# ---- 1. reverse direction -------------------------------------------------------------

@contextmanager
def reverse_direction(model, layers, vectors, coeff: float, rows: str = "prompt"):
    """Subtract ``coeff * vectors[l]`` (``vectors``: ``[n_layers, d_model]``) from the
    down-projection's output of each of ``layers`` on the prompt only (never on
    generated tokens), at the positions the edit moved: the last prompt token for an
    edit fitted with ``rows="last"``, every prompt token otherwise
    (``kbnb.unlearning.lunar_pipeline.steer_like_edit`` with ``-coeff * r_uv``)."""
    with ExitStack() as stack:
        for l in _as_layers(model, layers):
            stack.enter_context(steer_like_edit(model, l, -float(coeff) * vectors[l], rows))
        yield


# ---- 2. 4-bit quantisation ------------------------------------------------------------

def check_blocksize(blocksize) -> int:
    if not isinstance(blocksize, int) or isinstance(blocksize, bool) or blocksize < 1:
        raise ValueError(f"blocksize={blocksize!r}: must be an integer >= 1 (weights per "
                         f"quantisation group; bitsandbytes NF4 takes 64, 128, ... 4096)")
    return blocksize


def _groups(W: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, int]:
    """Flatten ``W`` and cut it into rows of ``blocksize`` (zero-padded): ``[G, blocksize]``."""
    check_blocksize(blocksize)
    flat = W.reshape(-1)
    pad = (-flat.numel()) % blocksize
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return flat.view(-1, blocksize), pad


def quantize_rtn(W: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """Round-to-nearest symmetric 4-bit quantisation of ``W`` (any shape), dequantised:
    per group of ``blocksize`` consecutive weights, ``s = absmax / 7`` and
    ``w_q = s · clamp(round(w / s), -8, 7)``, i.e. at most 16 distinct values per group."""
    G, pad = _groups(W.detach().float(), blocksize)
    s = G.abs().amax(1, keepdim=True).clamp(min=1e-12) / 7.0
    Q = (torch.round(G / s).clamp(-8, 7) * s).reshape(-1)
    if pad:
        Q = Q[:-pad]
    return Q.view_as(W).to(W.dtype)


def quantize_nf4(W: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """bitsandbytes NF4 quantisation of ``W`` (any shape), dequantised
    (``bitsandbytes.functional.quantize_4bit`` then ``dequantize_4bit``, absmax per
    group of ``blocksize``): what a ``load_in_4bit`` model multiplies with."""
    import bitsandbytes.functional as F

    x = W.detach().contiguous()
    dtype = x.dtype
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        x = x.float()
    q, state = F.quantize_4bit(x, blocksize=blocksize, quant_type="nf4")
    return F.dequantize_4bit(q, state).view_as(W).to(dtype)


def quantized_linears(model) -> list[tuple[str, torch.nn.Module]]:
    """The linear layers a 4-bit model quantises: every ``nn.Linear`` (or GPT-2
    ``Conv1D``) inside the transformer blocks (embeddings and the output head stay
    in full precision, as ``transformers``' bitsandbytes integration leaves them)."""
    out = []
    for i, block in enumerate(A.get_layers(model)):
        for name, m in block.named_modules():
            if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D":
                out.append((f"{i}.{name}", m))
    return out


def quantize_model(model, method: str = "auto", blocksize: int = 64, inplace: bool = False):
    """4-bit quantise (and dequantise) every linear weight in the transformer blocks.

    ``method``: ``nf4`` (bitsandbytes), ``rtn`` (round-to-nearest int4), ``auto`` = NF4,
    falling back to RTN when bitsandbytes is missing or fails. Returns ``(model, info)``:
    a copy unless ``inplace``; ``info = {"method": "bitsandbytes-nf4" | "rtn-int4" |
    "rtn-int4 (fallback: <reason>)", "blocksize", "n_weights"}``."""
    check_choice("method", method, QUANT_METHODS)
    check_blocksize(blocksize)
    target = model if inplace else copy.deepcopy(model)
    used, reason = ("rtn-int4", None) if method == "rtn" else ("bitsandbytes-nf4", None)
    if method in ("auto", "nf4"):
        try:
            probe = torch.randn(2 * blocksize, device=next(model.parameters()).device)
            quantize_nf4(probe, blocksize)
        except Exception as err:  # bitsandbytes missing or without this backend
            if method == "nf4":
                raise
            used, reason = "rtn-int4", f"{type(err).__name__}: {err}".split("\n")[0][:120]
    fn = quantize_nf4 if used == "bitsandbytes-nf4" else quantize_rtn
    mods = quantized_linears(target)
    with torch.no_grad():
        for _, m in mods:
            m.weight.copy_(fn(m.weight, blocksize))
    label = used if reason is None else f"{used} (fallback: {reason})"
    return target, {"method": label, "blocksize": blocksize, "n_weights": len(mods)}


# ---- 3. paraphrase --------------------------------------------------------------------

def paraphrase_rows(rows, lookup: dict | None = None) -> tuple[list[dict], int]:
    """Rows with ``question`` replaced by a paraphrase: the row's own
    ``paraphrased_question`` (organism rows, TOFU ``*_perturbed`` rows), else
    ``lookup[question]`` (e.g. built from TOFU's perturbed files). Returns
    ``(rows, n_paraphrased)``; rows without a paraphrase keep their question."""
    out, n = [], 0
    lookup = lookup or {}
    for r in rows:
        p = r.get("paraphrased_question") or lookup.get(r["question"])
        if p:
            n += 1
            r = dict(r, question=p, original_question=r["question"])
        out.append(dict(r))
    return out, n


def tofu_paraphrases(data_dir, splits=(*FORGET_SPLITS, "retain")) -> dict:
    """``{question: paraphrased_question}`` from TOFU's ``<split>_perturbed`` files
    (those present in ``data_dir``)."""
    folder = find_data_dir("tofu", data_dir)
    lookup = {}
    if folder is None:
        return lookup
    for s in splits:
        f = folder / f"{s}_perturbed.jsonl"
        if f.exists():
            for r in read_jsonl(f):
                if r.get("paraphrased_question"):
                    lookup[r["question"]] = r["paraphrased_question"]
    return lookup


# ---- running them all -----------------------------------------------------------------

def recovery(r1_attack: float, r1_lunar: float, r1_vanilla: float) -> float:
    """Share of the forgotten ROUGE-1 recall that an attack brings back:
    ``(R1_attack − R1_LUNAR) / (R1_vanilla − R1_LUNAR)`` (0 = nothing, 1 = all;
    NaN when LUNAR forgot nothing)."""
    gap = r1_vanilla - r1_lunar
    return (r1_attack - r1_lunar) / gap if gap > 1e-9 else float("nan")


def evaluate_attacks(vanilla, edited, tok, sets: dict, attacks, layers, vectors, coeff: float,
                     refusals, rows: str = "prompt", paraphrase_lookup: dict | None = None,
                     quant_method: str = "auto", blocksize: int = 64,
                     max_new_tokens: int = 32, batch_size: int = 64, embedder="default",
                     progress: bool = True) -> dict:
    """LUNAR's metrics (:func:`kbnb.unlearning.lunar_eval.evaluate_edit` on ``sets["forget"]`` and
    ``sets["retain_eval"]``) for the vanilla model, the edited model and each attack.

    ``layers``: the edited layers; ``vectors``: ``[n_layers, d_model]`` steering
    vectors; ``coeff``: the coefficient the reverse attack subtracts; ``rows``: the
    edit's ``rows`` (where the reverse attack subtracts). With ``paraphrase`` the
    vanilla model is also evaluated on the paraphrased questions
    (``vanilla_paraphrase``, the attack's ceiling). ``quantize`` runs last and
    quantises ``edited`` in place (no extra copy of a large model).

    Returns ``{name: {"metrics", "generations", "seconds", ...}}`` in the order
    vanilla, [vanilla_paraphrase], lunar, attacks; the quantize entry carries
    ``quant`` (method used), the paraphrase entry ``n_paraphrased``. For ``reverse``
    the teacher-forced MRR/THR are dropped (the hook is defined on prompts only)."""
    attacks = check_attacks(attacks)
    if "quantize" in attacks:
        check_blocksize(blocksize)
    layers = _as_layers(edited, layers)
    base = {"forget": sets["forget"], "retain_eval": sets["retain_eval"]}
    para, n_para = None, 0
    if "paraphrase" in attacks:
        pf, nf = paraphrase_rows(sets["forget"], paraphrase_lookup)
        pr, _ = paraphrase_rows(sets["retain_eval"], paraphrase_lookup)
        if nf == 0:
            raise ValueError("attacks includes 'paraphrase' but no forget row has a paraphrased "
                             "question (TOFU: pass the *_perturbed files' paraphrases)")
        para, n_para = {"forget": pf, "retain_eval": pr}, nf
    plan = [("vanilla", vanilla, base, None)]
    if para is not None:
        plan.append(("vanilla_paraphrase", vanilla, para, None))
    plan.append(("lunar", edited, base, None))
    order = [a for a in ATTACKS if a in attacks and a != "quantize"] + (
        ["quantize"] if "quantize" in attacks else [])
    ctx = {"layer_skip": lambda: A.skip(edited, layers),
           "block_skip": lambda: A.skip(edited, layers, "block"),
           "reverse": lambda: reverse_direction(edited, layers, vectors, coeff, rows)}
    for a in order:
        plan.append((a, edited, para if a == "paraphrase" else base, ctx.get(a)))
    results = {}
    for name, model, s, make_ctx in tqdm(plan, desc="attacks", disable=not progress):
        t0 = time.perf_counter()
        extra = {}
        if name == "quantize":
            model, info = quantize_model(edited, quant_method, blocksize, inplace=True)
            extra["quant"] = info
        with (make_ctx() if make_ctx else ExitStack()):
            ev = evaluate_edit(model, tok, s, refusals, max_new_tokens=max_new_tokens,
                          batch_size=batch_size, embedder=embedder, progress=False)
        if all("value" in r for r in s["forget"]):  # the organism: is the fact's value there?
            ev["metrics"]["fact_recall_forget"] = sum(
                contains_answer(g, r["value"]) for g, r in zip(ev["generations"]["forget"], s["forget"])
            ) / max(1, len(s["forget"]))
        if name == "reverse":
            ev["metrics"] = {k: v for k, v in ev["metrics"].items()
                             if not k.startswith(("mrr_", "thr_"))}
        if name in ("paraphrase", "vanilla_paraphrase"):
            extra["n_paraphrased"] = n_para
            extra["questions"] = [r["question"] for r in s["forget"]]
        results[name] = {**ev, **extra, "seconds": time.perf_counter() - t0}
    return results
