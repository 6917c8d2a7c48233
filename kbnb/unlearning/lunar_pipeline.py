"""LUNAR's layer selection and its whole recipe (:mod:`kbnb.unlearning.lunar`), in one
function every caller uses: :func:`edit_model` (steering vectors, the layer, the fit, the
edited model).

Layer selection, two ways. *Steering* (the official code's): add ``coeff * r_uv`` to the
output of the down-projection of one layer at the prompt positions the edit will move
(never at generated tokens), generate for ``D_f`` and score each generation by its largest
embedding similarity to refusal templates (:func:`score_layers`, :func:`select_layers`;
:func:`steer_like_edit`). *Edit*: fit the edit itself at every candidate layer (an exact
solve, milliseconds) and score each edited model on validation rows that no evaluation
uses, the forget facts asked in other words and held-out retain questions, by the
deviation score DS (:func:`score_edit_layers`). Steering a layer and editing it are
different things: on the organism the steering scores are flat over most layers and pick a
layer whose edit barely forgets.
"""
from __future__ import annotations

from tqdm.auto import tqdm

from kbnb.core.checks import check_choice
from kbnb.eval.metrics import deviation_score, is_refusal, rouge1_recall
from kbnb.lm import activations as A
from kbnb.lm.embed import embed
from kbnb.lm.generation import generate
from kbnb.unlearning.lunar import (
    ROWS,
    apply_edit,
    fit_lunar,
    prompts_of,
    select_prompts,
    steering_vectors,
    swapped_weights,
)

# how the edited layer is chosen when none is given: "edit" fits the edit at every
# candidate layer and scores it on validation rows (paraphrased forget questions,
# held-out retain questions) by DS; "steering" is the official code's refusal-likeness
# of generations steered at the layer. Both are computed when they can be.
SELECTIONS = ("edit", "steering")


# ---- layer selection --------------------------------------------------------------------

def steer_like_edit(model, layer: int, vector, rows: str = "last"):
    """The steering that simulates an edit fitted on ``rows``: the last prompt token
    for ``last``, every prompt token otherwise (:func:`kbnb.lm.activations.steer`,
    prompt only)."""
    check_choice("rows", rows, ROWS)
    return A.steer(model, layer, vector, prompt_only=True, last_only=rows == "last")


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


def score_edit_layers(model, tok, sets: dict, vectors, layers, coeff: float = 1.0,
                      rows: str = "last", ridge: float = 1e-6, position: str = "last",
                      activation: str = "residual", max_new_tokens: int = 20,
                      batch_size: int = 64, progress: bool = True,
                      fit_chunk: int = 4) -> list[dict]:
    """Layer selection by the edit's effect: fit the closed-form edit at each of
    ``layers`` (one solve per layer, each on the unedited model's activations, as
    ``fit_lunar``), apply it, greedily generate for the validation rows
    ``sets["forget_val"]`` and ``sets["retain_val"]`` (:func:`kbnb.unlearning.lunar_sets.load_sets`) and score
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


def candidate_layers_of(model, layer=None, candidate_layers=None, top_k: int = 1) -> list[int]:
    """The layers scored for selection: ``candidate_layers`` (None: every layer), plus
    ``layer`` when given; checked against the model's depth and ``top_k``."""
    L = A.n_layers(model)
    cands = list(range(L)) if candidate_layers is None else \
        [A.check_layer(model, l, "candidate_layers") for l in candidate_layers]
    if layer is not None:
        layer = A.check_layer(model, layer)
        if layer not in cands:
            cands = sorted(cands + [layer])
    if top_k > len(cands):
        raise ValueError(f"top_k={top_k} but only {len(cands)} candidate layers")
    return cands


# ---- the recipe -------------------------------------------------------------------------

def edit_model(model, tok, sets: dict, layer: int | None = None, *, candidate_layers=None,
               selection: str = "edit", n_select: int = 45, top_k: int | None = None,
               score_given: bool = False, activation: str = "residual", position: str = "last",
               rows: str = "last", coeff: float = 2.0, solver: str = "closed_form",
               ridge: float = 1e-6, retain_answers: bool = True, compare: bool = False,
               fit_other: bool = False, apply: bool = True, batch_size: int = 64,
               embedder="default", seed: int = 0, cache: dict | None = None,
               progress: bool = False):
    """LUNAR from the sets to the edited model: steering vectors (from ``sets["ref"]`` to
    ``sets["forget"]``), the layer, the fit of its down-projection
    (:func:`kbnb.unlearning.lunar.fit_lunar` on the forget and ``sets["retain"]`` prompts)
    and the edited copy of ``model``.

    ``layer`` given: that layer is edited; the candidate layers are scored by steering
    only with ``score_given`` (the LUNAR chapter reports their scores and ranks its top-k
    edit by them). ``layer=None``: chosen among ``candidate_layers`` (None: every layer) by
    ``selection`` (:data:`SELECTIONS`): ``"edit"`` (:func:`score_edit_layers` on the
    validation rows ``sets["forget_val"]`` and ``sets["retain_val"]``, which no evaluation
    reads) or ``"steering"`` (:func:`score_layers`, the official code's, on ``n_select``
    forget prompts and the refusal templates ``sets["refusals"]``). Both rankings are
    computed, so the other one's layer is reported; the edit ranking needs the validation
    rows (without them only steering is scored). ``cache`` (a dict kept across calls): the
    vectors and the steering scores depend only on the forget and reference prompts, so
    calls that share them compute them once.

    Fits: the main layer (``compare``: both solvers run); with ``top_k`` also the
    ``top_k`` best-ranked layers together (the main one first); with ``fit_other`` also
    the layer the other selection picks. ``retain_answers``: the retain rows cover the
    gold answers' tokens too (teacher forcing). ``apply=False``: no copy of the model.

    Returns ``(edited model or None, run)``; ``run``: ``{"vectors", "scores",
    "edit_scores", "ranked", "selection", "layer_given", "main_layers", "topk_layers",
    "other_layer", "edit", "edit_topk", "edit_other", "retain_val_source"}``, the edits
    :class:`kbnb.unlearning.lunar.LunarEdit` s; None where not computed (``other_layer``
    also when a layer was given, or when the other selection picks the same layer)."""
    check_choice("selection", selection, SELECTIONS)
    fp, rp, refp = (prompts_of(tok, sets[k]) for k in ("forget", "retain", "ref"))
    scores = edit_scores = None
    rankings = {}
    if layer is not None and not score_given:
        layer = A.check_layer(model, layer)
        vectors = steering_vectors(model, tok, refp, fp, activation=activation,
                                   position=position, batch_size=batch_size, progress=progress)
    else:
        cands = candidate_layers_of(model, layer, candidate_layers, top_k or 1)
        key = (tuple(fp), tuple(refp), activation, position, tuple(cands), n_select, coeff,
               rows, str(embedder))
        cache = {} if cache is None else cache
        if key not in cache:
            vectors = steering_vectors(model, tok, refp, fp, activation=activation,
                                       position=position, batch_size=batch_size,
                                       progress=progress)
            scores = score_layers(model, tok, select_prompts(fp, n_select), vectors, cands,
                                  sets["refusals"], coeff=coeff, rows=rows, max_new_tokens=20,
                                  batch_size=batch_size, embedder=embedder, progress=False)
            cache[key] = (vectors, scores)
        vectors, scores = cache[key]
        has_val = bool(sets.get("forget_val")) and bool(sets.get("retain_val")) and layer is None
        if selection == "edit" and not has_val and layer is None:
            raise ValueError("selection='edit' needs validation rows (the forget rows' "
                             "paraphrased_question): these sets have none; use "
                             "selection='steering' or give layer")
        edit_scores = score_edit_layers(
            model, tok, sets, vectors, cands, coeff=coeff, rows=rows, ridge=ridge,
            position=position, activation=activation, max_new_tokens=20,
            batch_size=batch_size, progress=False) if has_val else None
        rankings["steering"] = select_layers(scores, len(scores))
        if edit_scores is not None:
            rankings["edit"] = select_layers(edit_scores, len(edit_scores))
    main = [A.check_layer(model, layer)] if layer is not None else None
    if rankings:
        ranked = rankings[selection] if selection in rankings else rankings["steering"]
    else:
        ranked = main
    main = main or ranked[:1]
    other = next((r[0] for k, r in rankings.items() if k != selection), None)
    other = None if layer is not None or other is None or other == main[0] else other
    topk = None if top_k is None else (main + [l for l in ranked if l not in main])[:max(top_k, 1)]
    answers = [r["answer"] for r in sets["retain"]] if retain_answers else None
    kw = dict(coeff=coeff, solver=solver, rows=rows, retain_answers=answers, ridge=ridge,
              batch_size=batch_size, seed=seed, position=position, activation=activation,
              progress=progress)
    edit = fit_lunar(model, tok, fp, rp, vectors, main, compare=compare, **kw)
    edit_topk = None if topk is None else fit_lunar(model, tok, fp, rp, vectors, topk,
                                                    compare=False, **kw)
    edit_other = None if other is None or not fit_other else fit_lunar(
        model, tok, fp, rp, vectors, [other], compare=False, **kw)
    run = {"vectors": vectors, "scores": scores, "edit_scores": edit_scores, "ranked": ranked,
           "selection": selection, "layer_given": layer is not None, "main_layers": main,
           "topk_layers": topk, "other_layer": other, "edit": edit, "edit_topk": edit_topk,
           "edit_other": edit_other, "retain_val_source": sets.get("retain_val_source")}
    return (apply_edit(model, edit.weights) if apply else None), run
