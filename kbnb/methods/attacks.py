"""Attacks on a LUNAR edit: does the forgotten knowledge come back?

The chapter ``notebooks/lunar_attacks.ipynb`` runs these on a model edited by
``kbnb.lunar`` (Shen et al. 2025, section "Robustness"; the seed reproduction's
``layer_skip.py``, ``reverse_direction.py``, ``quantization-4b.py``,
``create_paraphrase.py``). LUNAR changes only the down-projection ``W`` of the edited
layer(s) l, so that on forget prompts its output becomes ``W z + c · r_uv^(l)``. Each
attack tries to undo or route around that change:

* ``layer_skip`` — skip the edited layer's MLP: its output (the down-projection's
  output) is replaced by zeros, so the residual stream passes through the layer's
  MLP unchanged, ``h_{l} = h_{l-1} + attn_l(h_{l-1})`` (the seed's reading);
* ``block_skip`` — skip the whole edited block: ``h_l = h_{l-1}`` (the official code's);
* ``reverse`` — subtract ``c · r_uv^(l)`` from the down-projection's output on the
  prompt (where the edit added it), ``W' z − c · r_uv``: a white-box attacker who
  knows the steering direction;
* ``quantize`` — 4-bit quantisation of every linear weight in the transformer
  blocks: bitsandbytes NF4 (``quantize_4bit``/``dequantize_4bit``, groups of 64) or,
  when bitsandbytes is unavailable or fails, plain round-to-nearest symmetric int4
  per group (named ``rtn-int4 (fallback)`` in the output);
* ``paraphrase`` — the forget questions rephrased (TOFU's ``paraphrased_question``;
  the organism's held-out question template).

``evaluate_attacks`` measures LUNAR's metrics (``kbnb.lunar.evaluate``) for the
vanilla model, the edited model and each attack; ``recovery`` says how much of the
forgotten ROUGE-1 recall comes back. Nothing here assumes a layer count, tokenizer
or chat template.
"""
from __future__ import annotations

import copy
from contextlib import ExitStack, contextmanager

import torch
from tqdm.auto import tqdm

from kbnb.lm import activations as A
from kbnb.core.checks import check_choice

ATTACKS = ("layer_skip", "block_skip", "reverse", "quantize", "paraphrase")
QUANT_METHODS = ("auto", "nf4", "rtn")
ATTACK_LABELS = {"vanilla": "vanilla", "vanilla_paraphrase": "vanilla, paraphrased questions",
                 "lunar": "LUNAR", "layer_skip": "attack: skip edited MLP",
                 "block_skip": "attack: skip edited block", "reverse": "attack: reverse direction",
                 "quantize": "attack: 4-bit quantisation", "paraphrase": "attack: paraphrase"}


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


# ---- 1. layer skip --------------------------------------------------------------------

@contextmanager
def skip_mlp(model, layers):
    """Skip the MLP of each of ``layers``: a forward hook replaces the output of its
    down-projection (the MLP's output, ``[B, T, d_model]``) by zeros, so the residual
    stream passes through, ``h = h_attn + 0``. Identical to a model whose
    down-projection weight (and bias) are zero."""
    handles = []

    def fn(m, args, out):
        return torch.zeros_like(out)

    try:
        for l in _as_layers(model, layers):
            handles.append(A.get_module(model, l).register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def skip_block(model, layers):
    """Skip each of ``layers`` entirely: the block's output is its input hidden
    states (``[B, T, d_model]``), ``h_l = h_{l-1}``, as if the block were deleted."""
    handles = []

    def fn(m, args, kwargs, out):
        h = args[0] if args else kwargs["hidden_states"]
        return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h

    try:
        for l in _as_layers(model, layers):
            block = A.get_layers(model)[l]
            handles.append(block.register_forward_hook(fn, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


# ---- 2. reverse direction -------------------------------------------------------------

@contextmanager
def reverse_direction(model, layers, vectors, coeff: float, rows: str = "prompt"):
    """Subtract ``coeff * vectors[l]`` (``vectors``: ``[n_layers, d_model]``) from the
    down-projection's output of each of ``layers`` on the prompt only (never on
    generated tokens), at the positions the edit moved: the last prompt token for an
    edit fitted with ``rows="last"``, every prompt token otherwise
    (``kbnb.lunar.steer_like_edit`` with ``-coeff * r_uv``)."""
    from kbnb.unlearning.lunar import steer_like_edit

    with ExitStack() as stack:
        for l in _as_layers(model, layers):
            stack.enter_context(steer_like_edit(model, l, -float(coeff) * vectors[l], rows))
        yield


# ---- 3. 4-bit quantisation ------------------------------------------------------------

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


def max_distinct_per_group(W: torch.Tensor, blocksize: int = 64) -> int:
    """The largest number of distinct values in any group of ``blocksize``
    consecutive weights of ``W`` (≤ 16 after 4-bit quantisation)."""
    G, pad = _groups(W.detach().float(), blocksize)
    if pad:  # the padding zeros are not weights
        last = G[-1, :blocksize - pad]
        body = max((len(torch.unique(g)) for g in G[:-1]), default=0)
        return max(body, len(torch.unique(last)))
    return max(len(torch.unique(g)) for g in G)


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


# ---- 4. paraphrase --------------------------------------------------------------------

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


def tofu_paraphrases(data_dir, splits=("forget01", "forget05", "forget10", "retain")) -> dict:
    """``{question: paraphrased_question}`` from TOFU's ``<split>_perturbed`` files
    (those present in ``data_dir``)."""
    from kbnb.data.loaders import find_data_dir, read_jsonl

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
    """LUNAR's metrics (``kbnb.lunar.evaluate`` on ``sets["forget"]`` and
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
    import time

    from kbnb.unlearning.lunar import evaluate
    from kbnb.eval.metrics import contains_answer

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
    ctx = {"layer_skip": lambda: skip_mlp(edited, layers),
           "block_skip": lambda: skip_block(edited, layers),
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
            ev = evaluate(model, tok, s, refusals, max_new_tokens=max_new_tokens,
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


def attack_table(results: dict):
    """A DataFrame, one row per entry of ``evaluate_attacks``' result: forget ROUGE-1
    recall, refusal rate and RQ on the forget set, retain ROUGE-1, and the recovery
    share (vs. the vanilla model on the same questions: paraphrased for the
    paraphrase attack) and, on the organism, the fact recall (share of forget answers
    containing the fact's value; NaN elsewhere)."""
    import pandas as pd

    van = results["vanilla"]["metrics"]["rouge1_forget"]
    luna = results["lunar"]["metrics"]["rouge1_forget"]
    recs = []
    for name, r in results.items():
        m = r["metrics"]
        ref = van
        if name == "paraphrase" and "vanilla_paraphrase" in results:
            ref = results["vanilla_paraphrase"]["metrics"]["rouge1_forget"]
        rec = (recovery(m["rouge1_forget"], luna, ref)
               if name in ATTACKS else float("nan"))
        recs.append({"setting": ATTACK_LABELS.get(name, name), "name": name,
                     "forget ROUGE-1": m["rouge1_forget"], "refusal rate": m["refusal_rate_forget"],
                     "RQ": m["rq_forget"], "retain ROUGE-1": m["rouge1_retain_eval"],
                     "recovered share": rec, "fact recall": m.get("fact_recall_forget", float("nan"))})
    return pd.DataFrame(recs).set_index("setting")


def conclusion(results: dict, threshold: float = 0.25) -> str:
    """A sentence per attack, computed from the numbers: an attack *recovers*
    knowledge when it brings back at least ``threshold`` of the forgotten ROUGE-1
    recall (recovery share, see ``recovery``)."""
    import math

    table = attack_table(results)
    van, luna = table.loc["vanilla", "forget ROUGE-1"], table.loc["LUNAR", "forget ROUGE-1"]
    verb = "lowers" if luna < van - 1e-9 else "does not lower"
    parts = [f"LUNAR {verb} forget ROUGE-1 recall ({van:.2f} before, {luna:.2f} after)."]
    rec, norec = [], []
    for name in [n for n in ATTACKS if n in results]:
        row = table[table["name"] == name].iloc[0]
        share = row["recovered share"]
        what = ("nothing to recover" if math.isnan(share) else
                f"{share:.0%} of the forgotten recall back" if share >= 0 else
                f"none of the forgotten recall back, {share:.0%}")
        desc = f"{ATTACK_LABELS[name].removeprefix('attack: ')} (forget ROUGE-1 " \
               f"{row['forget ROUGE-1']:.2f}, {what})"
        (rec if not math.isnan(share) and share >= threshold else norec).append(desc)
    if rec:
        parts.append(f"Knowledge comes back under {len(rec)} of {len(rec) + len(norec)} "
                     "attacks: " + "; ".join(rec) + ".")
    else:
        parts.append(f"No attack brings back as much as {threshold:.0%} of the forgotten recall.")
    if norec:
        parts.append("It stays forgotten under " + "; ".join(norec) + ".")
    if "paraphrase" in results and "vanilla_paraphrase" in results:
        vm = results["vanilla_paraphrase"]["metrics"]
        s = (f"The paraphrase attack's ceiling is the vanilla model on the paraphrased "
             f"questions: forget ROUGE-1 {vm['rouge1_forget']:.2f} (vs {van:.2f} on the originals)")
        if "fact_recall_forget" in vm:
            vf = results["vanilla"]["metrics"]["fact_recall_forget"]
            s += (f", and it names the right fact in only {vm['fact_recall_forget']:.0%} of the "
                  f"paraphrased questions (vs {vf:.0%} on the originals), so this attack can "
                  "recover little even in principle")
        parts.append(s + ".")
    return " ".join(parts)


def find_lunar_dir(path, edit: str = "", seed=None):
    """The folder of one saved edit: ``path`` itself, the main edit (or ``edit``) of a
    LUNAR chapter's run folder for ``seed`` (``kbnb.lunar.find_edit``), or the single
    saved edit below ``path``."""
    from kbnb.unlearning.lunar import find_edit
    return find_edit(path, edit, seed)


DEFAULT_COEFF = 2.0  # LUNAR's steering coefficient when the edit is fitted here
RECOVERY_THRESHOLD = 0.25  # an attack "recovers" knowledge when it brings back this share
# The seed report's numbers (Llama-2-7B fine-tuned on TOFU, forget ROUGE-1 recall; the
# reproduction's layer_skip.py, reverse_direction.py, quantization-4b.py and
# create_paraphrase.py logs): under attack, after LUNAR, and before it.
SEED_REPORT = {"attack_low": 0.16, "attack_high": 0.19, "lunar": 0.19, "vanilla": 0.57,
               "source": "seed report (LUNAR reproduction), Llama-2-7B on TOFU"}


def set_args(index: dict, dataset: str, forget_split: str, n_retain: int) -> dict:
    """The :func:`kbnb.lunar.load_sets` arguments (without ``seed``) of the attacked edit:
    those stored in a LUNAR run's index (the same held-out rows as that chapter), else
    the given ones with the LUNAR chapter's other defaults."""
    from kbnb.unlearning.lunar import CHAPTER_DEFAULTS
    if index.get("sets"):
        a = dict(index["sets"])
        if a.get("dataset", dataset) != dataset:
            raise ValueError(f"dataset={dataset!r} but the LUNAR run was fitted on "
                             f"{a['dataset']!r}")
        return a
    return dict(dataset=dataset, forget_split=forget_split, n_retain=n_retain,
                n_eval=CHAPTER_DEFAULTS["n_eval"], n_ref=CHAPTER_DEFAULTS["n_ref"])


def lunar_edit(model, tok, sets: dict, lunar_dir="", layer="auto", coeff=None,
               activation: str = "residual", position: str = "last", rows: str = "last",
               solver: str = "closed_form", save_to=None, batch_size: int = 64,
               progress: bool = False, module: str = "", edit: str = "", seed: int = 0,
               cache: dict | None = None):
    """The LUNAR-edited copy of ``model`` the attacks run on.

    With ``lunar_dir`` the edit saved by the LUNAR chapter is loaded
    (``kbnb.lunar.load_lunar``): from a LUNAR run folder its main edit (the selected
    layer's) or the one named ``edit`` (``"lunar_topk"``), fitted with ``seed``; ``layer``
    (int) must then be one of its layers. With ``lunar_dir=""`` the edit is fitted here:
    ``layer="auto"`` runs the LUNAR chapter's own recipe with its defaults
    (``kbnb.lunar.run_lunar`` with ``CHAPTER_DEFAULTS``: steering vectors, layer
    selection over every layer, closed-form fit; ``cache`` shares vectors and layer
    scores across seeds); an int ``layer`` fits that layer only, with ``coeff``
    (None = ``DEFAULT_COEFF``) and ``activation``/``position``/``rows``. The fitted edit
    is saved under ``save_to`` when given. ``module`` names the MLP output projection
    relative to a block when automatic discovery cannot find it
    (``kbnb.activations.set_mlp_module``). Returns ``(edited, info)``: ``info`` holds
    ``layers``, ``vectors`` ``[n_layers, d_model]``, ``coeff``, ``rows``, ``source``."""
    from kbnb.unlearning import lunar as LU

    if module:
        A.set_mlp_module(model, module)
    if lunar_dir:
        d = find_lunar_dir(lunar_dir, edit, seed if LU.edit_index(lunar_dir) else None)
        edited, meta = LU.load_lunar(model, d, inplace=False)
        layers = [int(l) for l in meta["layers"]]
        if layer != "auto" and A.check_layer(model, layer) not in layers:
            raise ValueError(f"layer={layer} but the edit in {d} changed layers {layers}; "
                             "pass layer=\"auto\" or one of them")
        return edited, {"layers": layers, "vectors": meta["vectors"],
                        "coeff": float(meta["coeff"] if coeff is None else coeff),
                        "rows": meta.get("rows", "prompt"), "source": f"loaded from {d}",
                        "meta": {k: v for k, v in meta.items() if k != "vectors"}}
    if layer == "auto":
        D = LU.CHAPTER_DEFAULTS
        res = LU.run_lunar(model, tok, sets, layer=None, candidate_layers=D["candidate_layers"],
                           n_select=D["n_select"], top_k=1, activation=D["activation"],
                           position=D["position"], rows=D["rows"],
                           coeff=D["coeff"] if coeff is None else float(coeff),
                           solver=D["solver"], ridge=D["ridge"], batch_size=batch_size,
                           seed=seed, compare=False, cache=cache)
        e = res["edit"]
        source = "fitted here as the LUNAR chapter does (selected layer)"
    else:
        layer = A.check_layer(model, layer)
        coeff = DEFAULT_COEFF if coeff is None else float(coeff)
        fp, rp, refp = (LU.prompts_of(tok, sets[k]) for k in ("forget", "retain", "ref"))
        vectors = LU.steering_vectors(model, tok, refp, fp, activation=activation,
                                      position=position, batch_size=batch_size,
                                      progress=progress)
        e = LU.fit_lunar(model, tok, fp, rp, vectors, [layer], coeff=coeff, solver=solver,
                         rows=rows, retain_answers=[r["answer"] for r in sets["retain"]],
                         compare=False, batch_size=batch_size, position=position,
                         activation=activation, progress=progress, seed=seed)
        source = f"fitted here at layer {layer}"
    edited = LU.apply_edit(model, e.weights)
    if save_to:
        LU.save_lunar(save_to, model, e)
        source += f", saved to {save_to}"
    return edited, {"layers": list(e.layers), "vectors": e.vectors, "coeff": float(e.coeff),
                    "rows": e.rows, "source": source,
                    "meta": {"report": e.report, "activation": e.activation,
                             "position": e.position, "solver": e.solver}}


# ---- the chapter's bookkeeping ----------------------------------------------------------

def _reference_of(results: dict, name: str) -> str:
    return "vanilla_paraphrase" if name == "paraphrase" and "vanilla_paraphrase" in results \
        else "vanilla"


def record_and_check(ch, per_seed: dict, threshold: float = RECOVERY_THRESHOLD) -> list[str]:
    """Headlines and checks of the attacks chapter on a :class:`kbnb.chapter.Chapter`.

    per_seed: ``{seed: evaluate_attacks result}``. For each attack: headline
    ``recovery_<attack>`` (share of the forgotten forget ROUGE-1 recall it brings back),
    and check ``<attack>_holds``: the share is below ``threshold`` (the paper's claim:
    the knowledge does not come back). Several seeds: over seeds; one seed: over the
    forget questions. Also headlines ``forget_rouge1_lunar`` and ``forget_rouge1_vanilla``.
    Returns the attacks recorded (those with something to recover)."""
    import math

    import numpy as np

    from kbnb.report.chapter import note_constant

    one = len(ch.seeds) == 1
    s0 = ch.seeds[0]

    def r1(res, name):
        return res[name]["metrics"]["rouge1_forget"]

    for s, res in per_seed.items():
        ch.record(s, forget_rouge1_vanilla=r1(res, "vanilla"), forget_rouge1_lunar=r1(res, "lunar"))
    items = {n: per_seed[s0][n]["per_item"]["rouge1_forget"] for n in per_seed[s0]} if one else {}
    ch.headline("forget_rouge1_vanilla", per_item=items.get("vanilla"),
                label="vanilla: forget ROUGE-1")
    ch.headline("forget_rouge1_lunar", per_item=items.get("lunar"),
                label="LUNAR: forget ROUGE-1")
    done = []
    for a in [n for n in ATTACKS if n in per_seed[s0]]:
        recs = {s: recovery(r1(res, a), r1(res, "lunar"), r1(res, _reference_of(res, a)))
                for s, res in per_seed.items()}
        if any(math.isnan(v) for v in recs.values()):
            continue
        label = ATTACK_LABELS[a].removeprefix("attack: ")
        for s, v in recs.items():
            ch.record(s, **{f"recovery_{a}": v})
        if one:
            cols = tuple(np.asarray(items[n], float)
                         for n in (a, "lunar", _reference_of(per_seed[s0], a)))
            ch.headline(f"recovery_{a}", per_item=cols,
                        statistic=lambda x, l, v: recovery(x.mean(), l.mean(), v.mean()),
                        label=f"{label}: share of the forgotten recall recovered")
            x, l, v = cols
            ch.check(f"{a}_holds", f"forget ROUGE-1 regained under {label} beyond "
                     f"{threshold:.0%} of the forgotten recall", x - l - threshold * (v - l),
                     0.0, better="lower", baseline_name="none")
        else:
            ch.headline(f"recovery_{a}", label=f"{label}: share of the forgotten recall recovered")
            v = ch.check(f"{a}_holds", f"the share of the forgotten recall recovered by "
                         f"{label}", ch.per_seed(f"recovery_{a}"), threshold, better="lower")
            note_constant(v, ch.per_seed(f"recovery_{a}"))
        done.append(a)
    return done


def mean_attack_table(per_seed: dict):
    """:func:`attack_table` averaged over seeds (numeric columns), in the same order."""
    import pandas as pd
    tables = [attack_table(r) for r in per_seed.values()]
    num = pd.concat([t.drop(columns="name") for t in tables]).groupby(level=0, sort=False).mean()
    num.insert(0, "name", tables[0]["name"])
    return num


def plot_attacks(table):
    """Bars of forget and retain ROUGE-1 per setting (``table``: :func:`mean_attack_table`)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 4))
    names = list(table.index)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], table["forget ROUGE-1"], width=0.4, label="forget set",
           color="tab:red")
    ax.bar([i + 0.2 for i in x], table["retain ROUGE-1"], width=0.4,
           label="held-out retain set", color="tab:blue", alpha=0.6)
    ax.axhline(table.loc["vanilla", "forget ROUGE-1"], color="k", ls=":", lw=1,
               label="vanilla, forget set")
    ax.axhline(table.loc["LUNAR", "forget ROUGE-1"], color="tab:red", ls="--", lw=1,
               label="LUNAR, forget set")
    ax.set_xticks(list(x), names, rotation=25, ha="right")
    ax.set_ylabel("ROUGE-1 recall vs gold answer (0-1)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Forget-set ROUGE-1 under each attack on the LUNAR edit (mean over seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig
