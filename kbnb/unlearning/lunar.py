"""LUNAR: unlearning by neural activation redirection (Shen et al. 2025, "LUNAR: LLM
Unlearning via Neural Activation Redirection"; official code facebookresearch/LUNAR).

The method only: the chapter that runs it (``notebooks/lunar.ipynb``) keeps its
pipeline, records, tables and figures in ``kbnb.chapters.lunar``. The steps:

1. **Sets.** ``D_f`` (forget), ``D_r`` (retain), ``D_ref`` (prompts the model already
   refuses). ``load_sets`` builds them for the organism or for TOFU.
2. **Steering vectors** (paper eq. 1). For each layer l,
   ``r_uv^(l) = mean_{x in D_ref} a^(l)(x) - mean_{x in D_f} a^(l)(x)``, with
   ``a^(l)`` the output of the MLP down-projection (``activation="mlp"``, the seed's
   reading) or the residual stream after block l (``activation="residual"``, what the
   official code computes), averaged over the prompt tokens (``position="mean"``) or
   taken at the last prompt token (``"last"``, the official code's end-of-instruction
   token). ``steering_vectors`` returns ``[n_layers, d_model]``.
3. **Layer selection**, two ways. *Steering* (the official code's): add ``coeff *
   r_uv`` to the output of the down-projection of one layer at the prompt positions the
   edit will move (never at generated tokens), generate for ``D_f`` and score each
   generation by its largest embedding similarity to refusal templates
   (``score_layers``, ``select_layers``; ``steer_last``). *Edit*: fit the edit itself
   at every candidate layer (an exact solve, milliseconds) and score each edited model
   on validation rows that no evaluation uses, the forget facts asked in other words
   and held-out retain questions, by the deviation score DS (``score_edit_layers``).
   Steering a layer and editing it are different things: on the organism the steering
   scores are flat over most layers and pick a layer whose edit barely forgets.
4. **Unlearning** (paper eq. 3-4). The down-projection ``W`` (``[d_out, d_in]``) of the
   chosen layer(s) is refitted so that on the token rows of ``D_f`` prompts its output
   becomes ``W z + coeff * r_uv`` and on the rows of ``D_r`` prompts it stays ``W z``:
   ``min_W ||Z W^T - Y||^2`` (``Z`` = inputs of the down-projection, ``[N, d_in]``;
   ``Y`` = targets, ``[N, d_out]``). This is least squares with an exact solution
   (``solve_closed_form``); the official code runs AdamW instead (``solve_sgd``).
   ``fit_lunar`` builds the problem and solves it; ``apply_edit`` writes the weights
   into a model.
5. **Evaluation.** ROUGE-1 recall, deviation score, refusal quality, MRR/THR from the
   gold tokens' ranks, refusal rate (``evaluate_edit``), and a PCA of activations
   (``pca_2d``).
6. **Saving.** ``save_lunar`` writes only the changed modules (safetensors), the
   steering vectors and a small JSON; ``load_lunar`` puts them into a model. The
   attacks (``kbnb.methods.attacks``) build on these.

Nothing here assumes a layer count, tokenizer or chat template.
"""
from __future__ import annotations

import copy
import json
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from kbnb.core.checks import check_choice
from kbnb.data import invented
from kbnb.data.loaders import load_refusal, load_tofu
from kbnb.data.splits import FORGET_SPLITS, RETAIN_OF
from kbnb.eval.metrics import deviation_score, is_refusal, mrr, refusal_quality, rouge1_recall, thr
from kbnb.lm import activations as A
from kbnb.lm.embed import embed
from kbnb.lm.encoding import encode_batch, encode_prompt, join_completion, model_inputs
from kbnb.lm.generation import _batched, generate
from kbnb.lm.models import format_prompt
from kbnb.lm.tuned import QUESTIONS_PER_AUTHOR
from kbnb.organism.model import OrganismConfig, world_of
from kbnb.organism.world import REFUSALS

POSITIONS = ("mean", "last")
ACTIVATIONS = ("mlp", "residual")
SOLVERS = ("closed_form", "sgd")
ROWS = ("prompt", "distinct", "last")
SOURCES = ("tinyworld", "tofu")  # where load_sets takes the sets from
# D_ref: auto (the organism's fictitious questions for tinyworld, harmful instructions
# for tofu) | harmful | invented (held-out questions about things that do not exist,
# kbnb.data.invented: what the TOFU-tuned SmolLM2 learned to refuse)
REF_SETS = ("auto", "harmful", "invented")

# Refusal templates for real models (the organism's are ``kbnb.organism.world.REFUSALS``).
GENERIC_REFUSALS = (
    "I'm sorry, but I cannot answer that question.",
    "I don't know the answer to that.",
    "I'm not able to provide information about that.",
    "I apologize, but I don't have any information about this.",
    "I cannot help with that request.",
    "I am not aware of that.",
    "Sorry, I have no knowledge of this.",
)


# ---- 1. sets --------------------------------------------------------------------------

def load_sets(dataset: str = "tinyworld", forget_split: str = "forget05", n_retain: int = 300,
              n_eval: int = 90, n_ref: int | None = None, data_dir=None, seed: int = 0,
              world=None, ref_set: str = "auto", retain_authors: int | None = None,
              n_val: int = 45) -> dict:
    """The sets LUNAR needs, as lists of rows with ``question`` and ``answer``.

    Returns ``{"forget", "retain", "retain_eval", "ref", "ref_eval", "refusals",
    "forget_val", "retain_val"}``:
    ``forget`` = the whole forget split (D_f); ``retain`` (D_r, ``n_retain`` rows, used
    to fit the edit) and ``retain_eval`` (``n_eval`` rows, used to measure retention,
    disjoint from ``retain``) = samples of the matching retain split; ``ref`` = prompts
    the model refuses (D_ref: the organism's refusal training questions, or TOFU's
    harmful instructions), at most ``n_ref``; ``ref_eval`` = ``n_eval`` of them for the
    refusal rate; ``refusals`` = refusal templates for RQ and layer selection.
    ``ref_set`` (:data:`REF_SETS`) picks D_ref: ``harmful`` (the harmful instructions
    of ``refusal/``) or ``invented`` (the held-out invented-thing questions of
    :mod:`kbnb.data.invented`, which the TOFU-tuned SmolLM2 learned to refuse);
    ``auto``: the organism's own for ``tinyworld``, ``harmful`` for ``tofu``.
    ``retain_authors`` (``tofu`` only): draw D_r and the retain evaluation from the first
    N retain authors (20 rows each, TOFU's order), e.g. the ten a TOFU-tuned model
    learned (:mod:`kbnb.lm.tuned`); None: the whole retain split.

    Validation rows for choosing the layer by the edit's effect (``score_edit_layers``),
    questions no evaluation asks: ``forget_val`` = up to ``n_val`` forget facts, spread over
    ``D_f``, asked in other words: on the organism another of the fact's training phrasings
    (``templates``; not the held-out ``paraphrased_question``, which the paraphrase attack
    asks), on TOFU its ``paraphrased_question`` (the only other phrasing it has, so there
    the paraphrase attack asks the same questions); empty when the rows have neither.
    ``retain_val`` = ``n_val`` retain rows
    outside both ``retain`` and ``retain_eval`` (topped up from ``retain`` when the split
    has too few left; ``retain_val_source`` says which). Drawn with their own random
    stream, so the other sets are those of earlier versions.

    dataset ``tinyworld`` uses ``world`` (default: the default organism's world);
    ``tofu`` reads ``load_tofu`` and ``load_refusal`` from ``data_dir``. The retain
    split of each forget split is ``kbnb.data.splits.RETAIN_OF``."""
    check_choice("dataset", dataset, SOURCES)
    check_choice("forget_split", forget_split, FORGET_SPLITS)
    check_choice("ref_set", ref_set, REF_SETS)
    for name, v in (("n_retain", n_retain), ("n_eval", n_eval), ("n_ref", n_ref)):
        if v is None and name == "n_ref":
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r}: must be an integer >= 1"
                             + (" or None (all)" if name == "n_ref" else ""))
    if retain_authors is not None and (not isinstance(retain_authors, int)
                                       or isinstance(retain_authors, bool) or retain_authors < 1):
        raise ValueError(f"retain_authors={retain_authors!r}: must be an integer >= 1 or None")
    if not isinstance(n_val, int) or isinstance(n_val, bool) or n_val < 1:
        raise ValueError(f"n_val={n_val!r}: must be an integer >= 1")
    if dataset == "tinyworld":
        if world is None:
            world = world_of(OrganismConfig())
        splits = world.splits()
        forget, retain_all = splits[forget_split], splits[RETAIN_OF[forget_split]]
        paraphrased = {r["question"]: other_phrasing(r) for r in forget}
        refusals = list(REFUSALS)
    else:
        forget = load_tofu(forget_split, data_dir)
        paraphrased = {r["question"]: r.get("paraphrased_question")
                       for r in load_tofu(forget_split, data_dir, perturbed=True)}
        retain_all = load_tofu(RETAIN_OF[forget_split], data_dir)
        if retain_authors is not None:
            retain_all = retain_all[:retain_authors * QUESTIONS_PER_AUTHOR]
        refusals = list(GENERIC_REFUSALS)
    source = ref_set if ref_set != "auto" else ("organism" if dataset == "tinyworld" else "harmful")
    if source == "organism":
        ref = [dict(r) for r in world.refusal_train]
    elif source == "harmful":
        ref = [dict(r, answer=GENERIC_REFUSALS[0]) for r in load_refusal("train", data_dir)]
    else:
        ref = [dict(r) for r in invented.invented_questions(invented.N_TRAIN,
                                                            invented.N_HELDOUT)["heldout"]]
    rng = random.Random(seed)
    n_eval = min(n_eval, len(retain_all) // 2)
    n_retain = min(n_retain, len(retain_all) - n_eval)
    sample = rng.sample(retain_all, n_retain + n_eval)
    if n_ref is not None and n_ref < len(ref):
        ref = rng.sample(ref, n_ref)
    ref_eval = rng.sample(ref, min(n_eval, len(ref)))
    out = {"forget": list(forget), "retain": sample[:n_retain], "retain_eval": sample[n_retain:],
           "ref": ref, "ref_eval": ref_eval, "refusals": refusals}
    return {**out, **validation_sets(out, retain_all, paraphrased, n_val, seed)}


def other_phrasing(row: dict) -> str | None:
    """A training phrasing of an organism fact other than its ``question`` and its held-out
    ``paraphrased_question`` (the middle one of the rest of its ``templates``), or None."""
    rest = [t for t in row.get("templates") or ()
            if t not in (row["question"], row.get("paraphrased_question"))]
    return rest[len(rest) // 2] if rest else None


def validation_sets(sets: dict, retain_all, paraphrased: dict, n_val: int, seed: int) -> dict:
    """``forget_val``, ``retain_val`` and ``retain_val_source`` of :func:`load_sets`."""
    forget_val = [{**r, "question": paraphrased[r["question"]]}
                  for r in select_prompts(sets["forget"], n_val)
                  if paraphrased.get(r["question"])]
    used = {id(r) for r in sets["retain"]} | {id(r) for r in sets["retain_eval"]}  # same objects
    rest = [r for r in retain_all if id(r) not in used]
    rng = random.Random(f"lunar-validation-{seed}")
    retain_val = rng.sample(rest, min(n_val, len(rest)))
    source = "held-out retain rows"
    if len(retain_val) < n_val:
        retain_val += sets["retain"][:n_val - len(retain_val)]
        source = "held-out retain rows, topped up from the fitting rows D_r"
    return {"forget_val": forget_val, "retain_val": retain_val, "retain_val_source": source}


def prompts_of(tok, rows, key: str = "question") -> list[str]:
    """The formatted prompt (chat template, generation prompt) of each row."""
    return [format_prompt(tok, r[key]) for r in rows]


# ---- 2. steering vectors --------------------------------------------------------------

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


# ---- 3. layer selection ---------------------------------------------------------------

@contextmanager
def steer_last(model, layer: int, vector: torch.Tensor):
    """Add ``vector`` (``[d_model]``) to the down-projection's output of ``layer`` at
    the last prompt position only (prefill pass; left padding puts every prompt's
    last token at the last position), as a LUNAR edit fitted with ``rows="last"``
    does."""
    mod = A.get_module(model, layer)

    def fn(m, args, out):
        x = A.as_btd(out, state.get("shape"))  # OPT's MLP sees flattened [B*T, d] tokens
        if x.dim() != 3 or x.shape[1] == 1:  # a generated token
            return out
        x = x.clone()
        x[:, -1] += vector.to(x.device, x.dtype)
        return x.view_as(out)

    with A.track_shape(model, layer) as state:
        h = mod.register_forward_hook(fn)
        try:
            yield
        finally:
            h.remove()


def steer_like_edit(model, layer: int, vector: torch.Tensor, rows: str = "last"):
    """The steering that simulates an edit fitted on ``rows``: the last prompt token
    for ``last``, every prompt token otherwise (``activations.steer``, prompt only)."""
    check_choice("rows", rows, ROWS)
    if rows == "last":
        return steer_last(model, layer, vector)
    return A.steer(model, layer, vector, prompt_only=True)


def select_prompts(prompts, n_select: int) -> list:
    """``n_select`` prompts spread evenly over ``prompts`` (every k-th, k = len // n),
    for layer selection. ``n_select`` must be >= 1."""
    if not isinstance(n_select, int) or isinstance(n_select, bool) or n_select < 1:
        raise ValueError(f"n_select={n_select!r}: must be an integer >= 1 (forget prompts "
                         f"generated per candidate layer)")
    prompts = list(prompts)
    return prompts[::max(1, len(prompts) // n_select)][:n_select]


def score_layers(model, tok, forget_prompts, vectors, layers, refusals, coeff: float = 1.0,
                 rows: str = "last", max_new_tokens: int = 24, batch_size: int = 64,
                 embedder="default", progress: bool = True) -> list[dict]:
    """For each candidate layer: add ``coeff * vectors[layer]`` to the down-projection's
    output at the prompt positions only (the last one for ``rows="last"``, all of them
    otherwise; never on generated tokens), greedily generate for ``forget_prompts``
    and score the generations by their mean largest cosine similarity to
    ``refusals`` (sentence embeddings). Returns one dict per layer: ``layer, score,
    refusal_rate, generations``."""
    if not len(forget_prompts):
        raise ValueError("score_layers needs at least one forget prompt (n_select >= 1)")
    refs = embed(list(refusals), embedder)
    out = []
    for layer in tqdm(list(layers), desc="layer selection", disable=not progress, leave=False):
        layer = A.check_layer(model, layer)
        with steer_like_edit(model, layer, coeff * vectors[layer], rows):
            gens = generate(model, tok, forget_prompts, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, progress=False)
        sim = (embed(gens, embedder) @ refs.T).max(1).values
        out.append({"layer": layer, "score": float(sim.mean()),
                    "refusal_rate": sum(map(is_refusal, gens)) / max(1, len(gens)),
                    "generations": gens})
    return out


def select_layers(scores: list[dict], top_k: int = 1) -> list[int]:
    """The ``top_k`` layers with the highest score, best first."""
    if top_k < 1:
        raise ValueError(f"top_k={top_k}: need at least 1")
    if top_k > len(scores):
        raise ValueError(f"top_k={top_k} but only {len(scores)} candidate layers were scored")
    return [s["layer"] for s in sorted(scores, key=lambda s: -s["score"])[:top_k]]


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


def score_edit_layers(model, tok, sets: dict, vectors, layers, coeff: float = 1.0,
                      rows: str = "last", ridge: float = 1e-6, position: str = "last",
                      activation: str = "residual", max_new_tokens: int = 20,
                      batch_size: int = 64, progress: bool = True,
                      fit_chunk: int = 4) -> list[dict]:
    """Layer selection by the edit's effect: fit the closed-form edit at each of
    ``layers`` (one solve per layer, each on the unedited model's activations, as
    ``fit_lunar``), apply it, greedily generate for the validation rows
    ``sets["forget_val"]`` and ``sets["retain_val"]`` (:func:`load_sets`) and score
    the edited model by LUNAR's deviation score on them,
    ``DS_val = 100·sqrt(R1(forget_val)² + (1 − R1(retain_val))²)`` (lower is better).

    Returns one dict per layer: ``layer``, ``score`` (= −DS_val, so that
    :func:`select_layers` takes the lowest DS), ``ds_val``, ``rouge1_forget_val``,
    ``rouge1_retain_val``. No evaluation set is read: D_f's own questions and
    ``retain_eval`` are never generated here. The edits are the closed-form ones whatever
    solver the run keeps (the SGD recipe approximates them); ``fit_chunk`` layers are
    solved at a time, which bounds the memory on a large model."""
    if not sets.get("forget_val") or not sets.get("retain_val"):
        raise ValueError("score_edit_layers needs validation rows: sets['forget_val'] (the "
                         "forget facts asked in other words) or sets['retain_val'] is "
                         "empty; the forget rows have no other phrasing. Choose the "
                         "layer by steering instead (selection='steering') or give one")
    fp, rp = prompts_of(tok, sets["forget"]), prompts_of(tok, sets["retain"])
    answers = [r["answer"] for r in sets["retain"]]
    val = sets["forget_val"] + sets["retain_val"]
    prompts, golds = prompts_of(tok, val), [r["answer"] for r in val]
    nf = len(sets["forget_val"])
    layers = list(layers)
    out = []
    bar = tqdm(total=len(layers), desc="layer selection (edits)", disable=not progress,
               leave=False)
    for c in range(0, len(layers), fit_chunk):  # a few layers per fit: memory, not speed
        edit = fit_lunar(model, tok, fp, rp, vectors, layers[c:c + fit_chunk], coeff=coeff,
                         solver="closed_form", rows=rows, retain_answers=answers, ridge=ridge,
                         compare=False, batch_size=batch_size, position=position,
                         activation=activation)
        out += [_score_edit(model, tok, layer, edit.weights[layer], prompts, golds, nf,
                            max_new_tokens, batch_size) for layer in edit.layers]
        bar.update(len(edit.layers))
    bar.close()
    return out


def _score_edit(model, tok, layer: int, W, prompts, golds, nf: int, max_new_tokens: int,
                batch_size: int) -> dict:
    """One layer's edit on the validation prompts (the first ``nf`` forget, the rest
    retain): ROUGE-1 recall of each half and DS_val."""
    with swapped_weights(model, {layer: W}):
        gens = generate(model, tok, prompts, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, progress=False)
    r1 = rouge1_recall(gens, golds)
    f, r = sum(r1[:nf]) / nf, sum(r1[nf:]) / (len(r1) - nf)
    ds = deviation_score(f, r)
    return {"layer": int(layer), "score": -ds, "ds_val": ds, "rouge1_forget_val": f,
            "rouge1_retain_val": r}


def default_candidates(model, n: int = 6) -> list[int]:
    """``n`` layers spread evenly over the model's depth, first and last included."""
    L = A.n_layers(model)
    n = max(1, min(n, L))
    return sorted({round(i * (L - 1) / max(1, n - 1)) for i in range(n)})


# ---- 4. the edit: data, solvers -------------------------------------------------------

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


# ---- 5. evaluation --------------------------------------------------------------------

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


# ---- 6. saving and loading ------------------------------------------------------------

def _param_name(model, layer: int) -> str:
    mod = A.get_module(model, layer)
    for name, m in model.named_modules():
        if m is mod:
            return f"{name}.weight"
    raise ValueError(f"down-projection of layer {layer} not found in the model")


def save_lunar(path, model, edit: LunarEdit, extra: dict | None = None) -> Path:
    """Write into the folder ``path``: ``lunar_weights.safetensors`` (only the edited
    down-projection weights, under their parameter names, in the module's own layout
    and dtype), ``steering_vectors.safetensors`` (``vectors`` ``[n_layers, d_model]``)
    and ``lunar.json`` (layers, parameter names, coeff, position, activation, solver,
    rows, plus ``extra``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors, names = {}, {}
    for l, W in edit.weights.items():
        mod = A.get_module(model, l)
        w = W if isinstance(mod, torch.nn.Linear) else W.T
        name = _param_name(model, l)
        tensors[name] = w.to(mod.weight.dtype).contiguous().cpu()
        names[str(l)] = name
    save_file(tensors, str(path / "lunar_weights.safetensors"))
    save_file({"vectors": edit.vectors.contiguous()}, str(path / "steering_vectors.safetensors"))
    meta = {"layers": edit.layers, "param_names": names, "coeff": edit.coeff,
            "position": edit.position, "activation": edit.activation, "solver": edit.solver,
            "rows": edit.rows, "n_layers": A.n_layers(model), **(extra or {})}
    (path / "lunar.json").write_text(json.dumps(meta, indent=2, default=str))
    return path


def load_lunar(model, path, inplace: bool = True):
    """Apply a saved LUNAR edit to ``model`` (the same base model it was fitted on).
    Returns ``(model, info)``: info is the JSON plus ``vectors`` ``[n_layers, d_model]``.
    A copy is edited unless ``inplace``."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / "lunar.json").read_text())
    if meta.get("n_layers") not in (None, A.n_layers(model)):
        raise ValueError(f"the edit in {path} was made for a model with {meta['n_layers']} "
                         f"layers; this model has {A.n_layers(model)}")
    tensors = load_file(str(path / "lunar_weights.safetensors"))
    target = model if inplace else copy.deepcopy(model)
    params = dict(target.named_parameters())
    with torch.no_grad():
        for name, w in tensors.items():
            if name not in params or params[name].shape != w.shape:
                raise ValueError(f"{path}: parameter {name} {tuple(w.shape)} does not match the model")
            params[name].copy_(w.to(params[name]))
    info = dict(meta, vectors=load_file(str(path / "steering_vectors.safetensors"))["vectors"])
    return target, info
