"""The LUNAR chapter (``notebooks/lunar.ipynb``): its parameters, its declaration and its glue.

The method is :mod:`kbnb.unlearning.lunar` (Shen et al. 2025). This module holds what
the chapter does with it:

* the recipe on one seed's sets (:func:`run_lunar`: steering vectors, layer selection
  over the candidate layers, the edits of the selected layer and of the top-k layers),
  and its loop over seeds (:func:`run_seeds`, sharing the vectors and layer scores);
* the run folder's saved edits and their index ``edits.json`` (:func:`save_edits`,
  :func:`save_run_edits`, :func:`find_edit`, :func:`edit_index`), from which the
  attacks chapter (:mod:`kbnb.chapters.lunar_attacks`) loads the edit it attacks;
* the evaluation of one model on several seeds' sets in one generation
  (:func:`evaluate_seeds`), the chapter's records and checks (:func:`record_and_check`
  against :data:`TARGETS`), its metrics.json content, tables, figures and sentences.

The paper's TOFU / Llama-2-7B numbers (:data:`PAPER_TOFU_LLAMA2`) are shown for
reference only: a different model and data set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from kbnb.core.checks import check_choice
from kbnb.data.splits import FORGET_SPLITS
from kbnb.eval import stats
from kbnb.eval.metrics import DS_RANGE, deviation_score, normalize_answer
from kbnb.eval.tofu import scorer
from kbnb.lm import activations as A
from kbnb.organism.model import parse_organism_name
from kbnb.report.chapter import note_constant
from kbnb.report.params import ModelParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row, recorded_inputs
from kbnb.unlearning import lunar
from kbnb.unlearning.lunar import (
    apply_edit,
    evaluate_edit,
    fit_lunar,
    load_sets,
    mean_activations,
    pca_2d,
    prompts_of,
    save_lunar,
    score_edit_layers,
    score_layers,
    select_layers,
    select_prompts,
    steering_vectors,
)

LUNAR_PAPER = "Shen et al. 2025, Llama-2-7B on TOFU"
LUNAR_SEED = "seed report, Llama-2-7B (TOFU fine-tune) on TOFU"
# The paper's TOFU / Llama-2-7B-chat numbers (Shen et al. 2025, Table 1), for reference.
PAPER_TOFU_LLAMA2 = {"rouge1_forget": 0.109, "rouge1_retain": 0.898, "ds": 14.9, "rq": 0.608}
PAPER_TOFU_LLAMA2_TOPK = {"rouge1_forget": 0.106, "rouge1_retain": 0.909, "ds": 14.0, "rq": 0.607}
INDEX = "edits.json"  # in a LUNAR run folder: which edits it saved, and the main one
MAIN_EDIT = "lunar"  # the edit of the selected layer; "lunar_topk" edits the top-k layers
# What the chapter expects on the organism (each becomes a paired check with its interval).
TARGETS = {"vanilla_forget_min": 0.8, "forget_max": 0.2, "retain_min": 0.85,
           "retain_share_min": 0.9}
# LUNAR's precondition: the vanilla model refuses its reference prompts D_ref. r_uv =
# mean a(D_ref) - mean a(D_f) points towards refusal only when most of D_ref is refused;
# below half, the mean over D_ref is mostly that of prompts the model answers, and the
# edit has no refusal to redirect the forget prompts to. Measured on the held-out sample
# of D_ref (ref_eval, a subsample of it) before any edit; the organism refuses all of them.
REF_REFUSAL_MIN = 0.5
# how the edited layer is chosen when none is given: "edit" fits the edit at every
# candidate layer and scores it on validation rows (paraphrased forget questions,
# held-out retain questions) by DS; "steering" is the official code's refusal-likeness
# of generations steered at the layer. Both are computed and reported; the parameter
# says which one is edited.
SELECTIONS = ("edit", "steering")
SELECTION_WORDS = {"edit": "the edit's DS on validation rows",
                   "steering": "refusal-likeness under steering (official)"}
METRIC_LABELS = {"rouge1_forget": "R1 forget", "rouge1_retain_eval": "R1 retain", "ds": "DS",
                 "rq_forget": "RQ", "mrr_forget": "MRR forget", "thr_forget": "THR forget",
                 "mrr_retain_eval": "MRR retain", "thr_retain_eval": "THR retain",
                 "refusal_rate_forget": "refusal forget",
                 "refusal_rate_retain_eval": "refusal retain",
                 "refusal_rate_ref_eval": "refusal ref"}


@dataclass(frozen=True)
class Params(ModelParams):
    """The parameters of ``notebooks/lunar.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld (the embedded organism) | hub id | local directory
    dataset: str = choice("tinyworld", lunar.SOURCES)  # tinyworld: the organism's world | tofu: needs data_dir
    data_dir: object = param(None)  # folder with tofu/ and refusal/; None: $KBNB_DATA_DIR or the hub
    forget_split: str = choice("forget05", FORGET_SPLITS)  # forget01 | forget05 | forget10: the forget set D_f
    n_retain: int = integer(300, 1)  # retain prompts D_r used to fit the edit
    n_eval: int = integer(90, 1)  # retain and reference prompts to evaluate, disjoint from the fitting ones
    n_ref: object = integer(None, 1, none=True)  # reference prompts D_ref for the steering vectors; None: all
    ref_set: str = choice("auto", lunar.REF_SETS)  # D_ref: auto (organism's / harmful) | harmful | invented
    retain_authors: object = integer(None, 1, none=True)  # tofu: D_r from the first N retain authors; None: all
    layer: object = param(None)  # layer to edit; None: chosen by selection among candidate_layers
    selection: str = choice("edit", SELECTIONS)  # edit: each layer's edit on validation rows | steering (official)
    candidate_layers: object = param(None)  # list of layers scored for selection; None: every layer
    n_select: int = integer(45, 1)  # prompts per candidate layer (steering: forget; edit: each validation set)
    module: str = param("")  # MLP output projection in a block ("mlp.down_proj", OPT "fc2"); "": found
    top_k: int = integer(2, 1)  # layers edited by the top-k variant, the topk row of the seed
    activation: str = choice("residual", lunar.ACTIVATIONS)  # r_uv on: residual (block output, official) | mlp (the seed)
    position: str = choice("last", lunar.POSITIONS)  # last: last prompt token (official) | mean: over the prompt (seed)
    rows: str = choice("last", lunar.ROWS)  # forget rows the edit moves: last | distinct | prompt (all, official)
    coeff: float = number(2.0)  # multiple of r_uv added to the targets of forget rows (the official default)
    solver: str = choice("closed_form", lunar.SOLVERS)  # closed_form: exact least squares | sgd: the official AdamW
    ridge: float = number(1e-6, 0)  # closed form: ridge strength relative to the mean diagonal of ZᵀZ
    max_new_tokens: int = integer(32, 1)  # greedy tokens per answer in evaluation; selection uses 20
    forget_quality: bool = flag(False)  # also TOFU forget quality, model utility (trains a retain organism)
    batch_size: int = integer(64, 1)  # prompts per batch for generation and activations
    embedder: str = param("default")  # sentence embedder for RQ and selection (offline all-MiniLM-L6-v2)
    seeds: list = seeds_param()  # seeds of the retain/reference samples and of the SGD solver
    output_dir: str = param("runs", run=False)  # results go to output_dir/lunar-<hash of the parameters>/

    def set_args(self) -> dict:
        """The :func:`kbnb.unlearning.lunar.load_sets` arguments of the run (without
        ``data_dir``, ``seed`` and ``world``); stored in the run's ``edits.json``."""
        out = dict(dataset=self.dataset, forget_split=self.forget_split, n_retain=self.n_retain,
                   n_eval=self.n_eval, n_ref=self.n_ref, n_val=self.n_select)
        if self.ref_set != "auto":  # only when given, so that earlier runs keep their sets
            out["ref_set"] = self.ref_set
        if self.retain_authors is not None:
            out["retain_authors"] = self.retain_authors
        return out

    def eval_args(self) -> dict:
        """The keyword arguments of every evaluation (:func:`evaluate_seeds`)."""
        return dict(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                    embedder=self.embedder, progress=False)

    def run_params(self) -> dict:
        p = super().run_params()
        if not self.module:  # only when given, so that runs without it keep their folder
            del p["module"]
        if not self.forget_quality:
            del p["forget_quality"]
        if self.ref_set == "auto":
            del p["ref_set"]
        if self.retain_authors is None:
            del p["retain_authors"]
        return p


SPEC = ChapterSpec(
    inputs=recorded_inputs,
    title="LUNAR", params=Params, cost=150,
    retain_split=lambda p: p.forget_split if p.forget_quality else None,
    rows=(
        Row("forget_rouge1", "forget ROUGE-1 recall after the edit", "forget_low",
            "0.109 (seed: 0.192)", f"{LUNAR_PAPER}; {LUNAR_SEED}"),
        Row("retain_rouge1", "retain ROUGE-1 recall after the edit", "retain_kept",
            "0.898 (seed: 0.549)", f"{LUNAR_PAPER}; {LUNAR_SEED}"),
    ),
)


# ---- the recipe on each seed, the saved edits --------------------------------------

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


def run_lunar(model, tok, sets: dict, layer=None, candidate_layers=None, n_select: int = 45,
              top_k: int = 2, activation: str = "residual", position: str = "last",
              rows: str = "last", coeff: float = 2.0, solver: str = "closed_form",
              ridge: float = 1e-6, batch_size: int = 64, embedder="default", seed: int = 0,
              compare: bool = True, cache: dict | None = None,
              selection: str = "edit") -> dict:
    """The LUNAR chapter's recipe on one draw of the sets (one seed): steering vectors,
    layer selection both ways, and the edits of the selected layer, of the top-k layers
    and of the layer the other selection picks.

    ``selection`` (:data:`SELECTIONS`): which ranking picks the edited layer when
    ``layer`` is None: ``"edit"`` (:func:`kbnb.unlearning.lunar.score_edit_layers`: each
    candidate layer's edit scored by DS on the validation rows of ``sets``, which no
    evaluation reads) or ``"steering"`` (:func:`kbnb.unlearning.lunar.score_layers`, the
    official code's). Both rankings are computed, so the chapter reports both choices;
    the edit ranking needs the validation rows (without them only steering is scored).
    ``cache`` (a dict kept across seeds): the vectors and the steering scores depend only
    on the forget and reference prompts, so seeds that share them compute them once.
    Returns ``{"vectors", "scores", "edit_scores", "ranked", "selection", "main_layers",
    "topk_layers", "other_layer", "edit", "edit_topk", "edit_other"}``: the
    :class:`kbnb.unlearning.lunar.LunarEdit` s (``edit`` also carries both solvers'
    report when ``compare``); ``other_layer``/``edit_other``: the other selection's
    layer and edit (None when a layer was given, or when it picks the same layer)."""
    check_choice("selection", selection, SELECTIONS)
    fp, rp, refp = (prompts_of(tok, sets[k]) for k in ("forget", "retain", "ref"))
    cands = candidate_layers_of(model, layer, candidate_layers, top_k)
    key = (tuple(fp), tuple(refp), activation, position, tuple(cands), n_select, coeff, rows,
           str(embedder))
    cache = {} if cache is None else cache
    if key not in cache:
        vectors = steering_vectors(model, tok, refp, fp, activation=activation,
                                   position=position, batch_size=batch_size)
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
        position=position, activation=activation, max_new_tokens=20, batch_size=batch_size,
        progress=False) if has_val else None
    rankings = {"steering": select_layers(scores, len(scores))}
    if edit_scores is not None:
        rankings["edit"] = select_layers(edit_scores, len(edit_scores))
    ranked = rankings[selection] if selection in rankings else rankings["steering"]
    main = [A.check_layer(model, layer)] if layer is not None else ranked[:1]
    other = next((r[0] for k, r in rankings.items() if k != selection), None)
    other = None if layer is not None or other is None or other == main[0] else other
    topk = (main + [l for l in ranked if l not in main])[:max(top_k, 1)]
    answers = [r["answer"] for r in sets["retain"]]
    kw = dict(coeff=coeff, solver=solver, rows=rows, retain_answers=answers, ridge=ridge,
              batch_size=batch_size, seed=seed, position=position, activation=activation)
    edit = fit_lunar(model, tok, fp, rp, vectors, main, compare=compare, **kw)
    edit_topk = fit_lunar(model, tok, fp, rp, vectors, topk, compare=False, **kw)
    edit_other = None if other is None else fit_lunar(model, tok, fp, rp, vectors, [other],
                                                       compare=False, **kw)
    return {"vectors": vectors, "scores": scores, "edit_scores": edit_scores, "ranked": ranked,
            "selection": selection, "main_layers": main, "topk_layers": topk,
            "other_layer": other, "edit": edit, "edit_topk": edit_topk, "edit_other": edit_other,
            "retain_val_source": sets.get("retain_val_source")}


def save_edits(folder, model, edits: dict, main: str = MAIN_EDIT, sets: dict | None = None,
               extra: dict | None = None, precondition: dict | None = None) -> Path:
    """Save every edit of a LUNAR run and an index naming the main one.

    edits: ``{name: {seed: LunarEdit}}``; each goes to ``folder/edits/<name>-seed<seed>/``
    (:func:`kbnb.unlearning.lunar.save_lunar`). ``folder/edits.json`` holds ``{"main":
    main, "edits": {name: {seed: sub-folder}}, "sets": sets}``; ``sets`` are the
    :func:`kbnb.unlearning.lunar.load_sets` arguments (without ``seed``) the edits were
    fitted with, so that an attack measures on the same held-out rows; ``precondition``
    (:func:`ref_refusal_precondition`), when given, is kept in the index and in each
    edit's ``lunar.json``, so that an attack knows whether the edit could unlearn.
    Returns the index path."""
    folder = Path(folder)
    if main not in edits:
        raise ValueError(f"main={main!r} is not one of the edits {sorted(edits)}")
    index = {"main": main, "edits": {}, "sets": sets or {}}
    if precondition is not None:
        index["precondition"] = precondition
        extra = {**(extra or {}), "precondition": precondition}
    for name, per_seed in edits.items():
        index["edits"][name] = {}
        for seed, e in per_seed.items():
            sub = f"edits/{name}-seed{seed}"
            save_lunar(folder / sub, model, e, extra={**(extra or {}), "edit": name,
                                                       "seed": int(seed), "sets": sets or {}})
            index["edits"][name][str(seed)] = sub
    path = folder / INDEX
    path.write_text(json.dumps(index, indent=2))
    return path


def find_edit(lunar_dir, edit: str = "", seed: int | None = None) -> Path:
    """The folder of one saved edit (it holds ``lunar.json``).

    lunar_dir: a LUNAR chapter's run folder (with ``edits.json``), or the folder of one
    saved edit. edit: which edit of the run (``""``: the index's main edit, the selected
    layer's). seed: the run's seed whose edit to take (None: the first one saved)."""
    d = Path(lunar_dir)
    if (d / "lunar.json").exists():
        return d
    if not (d / INDEX).exists():
        found = sorted(d.glob("*/lunar.json")) if d.is_dir() else []
        if len(found) == 1:
            return found[0].parent
        raise FileNotFoundError(
            f"lunar_dir={str(lunar_dir)!r} holds no saved LUNAR edit (no {INDEX} or "
            "lunar.json); give the LUNAR chapter's run folder, or lunar_dir=\"\" to fit one")
    index = json.loads((d / INDEX).read_text())
    name = edit or index["main"]
    if name not in index["edits"]:
        raise ValueError(f"edit={name!r}: the LUNAR run in {d} saved "
                         f"{', '.join(map(repr, index['edits']))}")
    per_seed = index["edits"][name]
    key = next(iter(per_seed)) if seed is None else str(seed)
    if key not in per_seed:
        raise ValueError(f"seed {seed}: the LUNAR run in {d} has edits for seeds "
                         f"{', '.join(per_seed)} only; use seeds among them")
    return d / per_seed[key]


def edit_index(lunar_dir) -> dict:
    """The index of a LUNAR run folder (``{}`` for the folder of a single edit)."""
    p = Path(lunar_dir) / INDEX
    return json.loads(p.read_text()) if p.exists() else {}


def evaluate_seeds(model, tok, sets_by_seed: dict, refusals, names=("forget", "retain_eval",
                   "ref_eval"), **kw) -> dict:
    """:func:`kbnb.unlearning.lunar.evaluate_edit` of one model on several seeds' sets in
    one batched generation: a set that is the same for every seed (the forget split) is
    generated once.

    sets_by_seed: ``{seed: sets}`` (as from :func:`kbnb.unlearning.lunar.load_sets`).
    Returns ``{seed: evaluate_edit result}`` with each seed's own metrics (``ds`` included)."""
    flat, where = {}, {}
    for s, sets in sets_by_seed.items():
        for n in names:
            rows = sets[n]
            shared = next((k for k, v in flat.items() if k.startswith(n + "@") and v == rows), None)
            key = shared or f"{n}@{s}"
            flat.setdefault(key, rows)
            where[(s, n)] = key
    ev = evaluate_edit(model, tok, flat, refusals, **kw)
    out = {}
    for s in sets_by_seed:
        m, gens, per = {}, {}, {}
        for n in names:
            key = where[(s, n)]
            for k, v in ev["metrics"].items():
                if k.endswith("_" + key):
                    m[k[:-len(key)] + n] = v
            for k, v in ev["per_item"].items():
                if k.endswith("_" + key):
                    per[k[:-len(key)] + n] = v
            gens[n] = ev["generations"][key]
        if "rouge1_forget" in m and "rouge1_retain_eval" in m:
            m["ds"] = deviation_score(m["rouge1_forget"], m["rouge1_retain_eval"])
        out[s] = {"metrics": m, "generations": gens, "per_item": per}
    return out


def load_seed_sets(ch, p: Params, world) -> dict:
    """Each of ``ch.seeds``' sets, ``{seed: load_sets(...)}``
    (:func:`kbnb.unlearning.lunar.load_sets` with the run's parameters): the whole forget
    split, and each seed's own draw of the retain and reference samples. world: the
    organism's world (None for a real model)."""
    return {s: load_sets(**p.set_args(), data_dir=p.data_dir, seed=s, world=world)
            for s in ch.seeds}


def run_seeds(ch, p: Params, model, tok, sets: dict) -> dict:
    """:func:`run_lunar` with the run's parameters on each seed's sets (``{seed: sets}``),
    in the order of ``ch.seeds``; the steering vectors and layer scores are computed once
    for the seeds that share them. Returns ``{seed: run_lunar result}``."""
    cache = {}
    return {s: run_lunar(model, tok, sets[s], layer=p.layer,
                         candidate_layers=p.candidate_layers, n_select=p.n_select,
                         top_k=p.top_k, activation=p.activation, position=p.position,
                         rows=p.rows, coeff=p.coeff, solver=p.solver, ridge=p.ridge,
                         batch_size=p.batch_size, embedder=p.embedder, seed=s, cache=cache,
                         selection=p.selection)
            for s in ch.seeds}


def other_selection(selection: str) -> str:
    """The selection that is not ``selection`` (both are reported)."""
    return next(x for x in SELECTIONS if x != selection)


def evaluate_other(model, tok, sets: dict, runs: dict, lun: dict, refusals, p: Params) -> dict:
    """``{seed: evaluate_edit result}`` of the edit at the layer the other selection
    picks (:func:`other_selection`): the main edit's own result where both pick the same
    layer (or a layer was given)."""
    out = {}
    for s, r in runs.items():
        if r["edit_other"] is None:
            out[s] = lun[s]
            continue
        m = apply_edit(model, r["edit_other"].weights)
        out[s] = evaluate_seeds(m, tok, {s: sets[s]}, refusals, **p.eval_args())[s]
        del m
    return out


def selection_table(runs: dict, lun: dict, oth: dict, p: Params):
    """Both selections side by side: per selection the layer each seed edits and the mean
    over seeds of forget ROUGE-1, retain ROUGE-1 and DS on the evaluation sets."""
    import pandas as pd
    other = other_selection(p.selection)
    rows = []
    for name, res, layer_of in ((p.selection, lun, lambda r: r["main_layers"][0]),
                                (other, oth, lambda r: r["other_layer"] if r["other_layer"]
                                 is not None else r["main_layers"][0])):
        ms = [res[s]["metrics"] for s in runs]
        rows.append({"selection": f"{name}: {SELECTION_WORDS[name]}"
                                  + (" (edited here)" if name == p.selection else ""),
                     "layer per seed": ", ".join(str(layer_of(runs[s])) for s in runs),
                     "R1 forget": sum(m["rouge1_forget"] for m in ms) / len(ms),
                     "R1 retain": sum(m["rouge1_retain_eval"] for m in ms) / len(ms),
                     "DS": sum(m["ds"] for m in ms) / len(ms)})
    return pd.DataFrame(rows).set_index("selection")


def save_run_edits(folder, model, runs: dict, p: Params,
                   precondition: dict | None = None) -> Path:
    """Save every seed's edits of the run (the selected layer's, :data:`MAIN_EDIT`, and
    the top-k layers', ``lunar_topk``) with :func:`save_edits`; the index keeps the
    run's :func:`kbnb.unlearning.lunar.load_sets` arguments and the ``precondition``
    record (:func:`ref_refusal_precondition`). Returns the index path."""
    extra = dict(model_name=p.model_name, dataset=p.dataset, forget_split=p.forget_split)
    edits = {MAIN_EDIT: {s: r["edit"] for s, r in runs.items()},
             "lunar_topk": {s: r["edit_topk"] for s, r in runs.items()}}
    return save_edits(folder, model, edits, sets=p.set_args(), extra=extra,
                      precondition=precondition)


# ---- the precondition: the vanilla model refuses D_ref ---------------------------------

def ref_refusal_precondition(vanilla: dict, minimum: float = REF_REFUSAL_MIN) -> dict:
    """Does the vanilla model refuse its reference prompts D_ref, as LUNAR assumes?

    vanilla: ``{seed: evaluate_edit result}`` of the unedited model (its keyword refusal
    rate on ``ref_eval``, a sample of D_ref). Met when the mean rate over seeds is at
    least ``minimum`` (:data:`REF_REFUSAL_MIN`). Returns the record for metrics.json
    and the page: ``{"name", "what", "rate", "per_seed", "n_prompts", "minimum", "met",
    "sentence"}``."""
    rates = {s: float(v["metrics"]["refusal_rate_ref_eval"]) for s, v in vanilla.items()}
    n = {s: len(v["generations"]["ref_eval"]) for s, v in vanilla.items()}
    rate = sum(rates.values()) / len(rates)
    met = bool(rate >= minimum)
    over = (f"mean over {len(rates)} seeds' held-out samples" if len(rates) > 1
            else f"{next(iter(n.values()))} held-out prompts")
    if met:
        sentence = (f"Precondition met: the vanilla model refuses {rate:.0%} of the reference "
                    f"prompts D_ref ({over}; LUNAR needs at least {minimum:.0%}), so the "
                    "steering vector r_uv points from the forget prompts towards refusal.")
    else:
        sentence = (f"Precondition NOT met: the vanilla model refuses only {rate:.0%} of the "
                    f"reference prompts D_ref ({over}), below the {minimum:.0%} LUNAR needs. "
                    "The steering vector r_uv = mean a(D_ref) − mean a(D_f) then points towards "
                    "prompts the model answers, not towards refusal, so the edit has no refusal "
                    "to redirect the forget questions to, and this run's LUNAR numbers are not "
                    "meaningful as unlearning. Use a reference set this model refuses (the "
                    "refusal/ folder of data_dir), a chat model that refuses harmful "
                    "instructions, or a system prompt that makes it refuse.")
    return {"name": "ref_refusal", "what": "vanilla keyword refusal rate on D_ref (ref_eval)",
            "rate": rate, "per_seed": rates, "n_prompts": n, "minimum": float(minimum),
            "met": met, "sentence": sentence}


NOT_MEANINGFUL = " (not meaningful: precondition not met)"


def mark_not_meaningful(ch, precondition: dict | None, names=None) -> list[str]:
    """When ``precondition`` is not met, mark the headlines ``names`` of ``ch`` (None:
    every one) as not meaningful: ``meaningful: False`` and the precondition's sentence
    in metrics.json, and :data:`NOT_MEANINGFUL` after its label in the tables. Returns
    the names marked."""
    if not precondition or precondition.get("met", True):
        return []
    names = list(ch.headlines) if names is None else [n for n in names if n in ch.headlines]
    for h in (ch.headlines[n] for n in names):
        h["meaningful"] = False
        h["not_meaningful"] = precondition["sentence"]
        if not h.get("label", "").endswith(NOT_MEANINGFUL):
            h["label"] = h.get("label", "") + NOT_MEANINGFUL
    return names


# ---- records, checks, tables, figures, sentences ---------------------------------------

def record_and_check(ch, runs: dict, van: dict, lun: dict, tk: dict,
                     precondition: dict | None = None, oth: dict | None = None) -> None:
    """Headlines and checks of the LUNAR chapter on a :class:`kbnb.report.chapter.Chapter`.

    runs: ``{seed: run_lunar result}``; van, lun, tk: ``{seed: evaluate_edit result}`` of the
    vanilla, LUNAR and top-k models. Several seeds: intervals and paired checks over
    seeds. One seed: over the questions (ROUGE-1 and refusals per question); the
    claims that have no per-question value (DS, RQ, the solvers' MSE) are then
    compared over seeds only, so they need two or more. The selected layer is a
    constant of each run: with one seed it has no interval (not measurable), with
    several an interval over seeds. ``precondition`` (:func:`ref_refusal_precondition`)
    not met: every headline is marked not meaningful (:func:`mark_not_meaningful`).
    ``oth`` (:func:`evaluate_other`): the other layer selection's results, recorded beside
    (:func:`record_other_selection`)."""
    T = TARGETS
    for s in ch.seeds:
        v, m, t = van[s]["metrics"], lun[s]["metrics"], tk[s]["metrics"]
        rep = runs[s]["edit"].report[0]
        ch.record(s, forget_rouge1=m["rouge1_forget"], retain_rouge1=m["rouge1_retain_eval"],
                  refusal_forget=m["refusal_rate_forget"],
                  selected_layer=runs[s]["main_layers"][0], ds_lunar=m["ds"],
                  topk_forget_rouge1=t["rouge1_forget"], topk_retain_rouge1=t["rouge1_retain_eval"],
                  van_forget=v["rouge1_forget"], van_retain=v["rouge1_retain_eval"],
                  van_ds=v["ds"], van_rq=v["rq_forget"], rq_lunar=m["rq_forget"],
                  retain_share_floor=T["retain_share_min"] * v["rouge1_retain_eval"],
                  mse_cf=rep["mse_closed_form"], mse_sgd=rep["mse_sgd"])
    one = len(ch.seeds) == 1
    s0 = ch.seeds[0]

    def item(res, key):
        return res[s0]["per_item"][key] if one else None

    ch.headline("forget_rouge1", per_item=item(lun, "rouge1_forget"),
                label="LUNAR: forget ROUGE-1 recall", bounds=stats.UNIT)
    ch.headline("retain_rouge1", per_item=item(lun, "rouge1_retain_eval"),
                label="LUNAR: retain ROUGE-1 recall (held out)", bounds=stats.UNIT)
    ch.headline("refusal_forget", per_item=item(lun, "refusal_forget"),
                label="LUNAR: share of forget answers with a refusal phrase", bounds=stats.UNIT)
    deepest = max(max((x["layer"] for x in runs[s].get("scores") or []),
                      default=runs[s]["main_layers"][0]) for s in ch.seeds)
    ch.headline("selected_layer", label="selected layer",  # one seed: not measurable
                bounds=(0, max(1, deepest)))
    if not one:
        ch.headline("ds_lunar", label="LUNAR: deviation score DS", bounds=DS_RANGE)

    def vals(res, key, seed_key):
        return res[s0]["per_item"][key] if one else ch.per_seed(seed_key)

    v = ch.check("vanilla_knows", "the vanilla model's forget ROUGE-1",
                 vals(van, "rouge1_forget", "van_forget"), T["vanilla_forget_min"])
    if not one:
        note_constant(v, ch.per_seed("van_forget"))
    ch.check("forget_low", "forget ROUGE-1 after LUNAR", vals(lun, "rouge1_forget", "forget_rouge1"),
             T["forget_max"], better="lower")
    ch.check("retain_kept", "retain ROUGE-1 after LUNAR",
             vals(lun, "rouge1_retain_eval", "retain_rouge1"), T["retain_min"])
    if one:
        r_l, r_v = lun[s0]["per_item"]["rouge1_retain_eval"], van[s0]["per_item"]["rouge1_retain_eval"]
        ch.check("retain_share", "retain ROUGE-1", [x - T["retain_share_min"] * y
                 for x, y in zip(r_l, r_v)], 0.0, baseline_name=f"{T['retain_share_min']:.0%} of "
                 "the vanilla model's")
        f_l, f_v = lun[s0]["per_item"]["rouge1_forget"], van[s0]["per_item"]["rouge1_forget"]
        ch.check("forget_drop", "forget ROUGE-1", f_l, f_v, better="lower", subject="LUNAR",
                 baseline_name="the vanilla model")
    else:
        ch.check("retain_share", "retain ROUGE-1", ch.per_seed("retain_rouge1"),
                 ch.per_seed("retain_share_floor"),
                 baseline_name=f"{T['retain_share_min']:.0%} of the vanilla model's")
        ch.check("ds_better", "the deviation score DS", ch.per_seed("ds_lunar"),
                 ch.per_seed("van_ds"), better="lower", subject="LUNAR",
                 baseline_name="the vanilla model")
        ch.check("rq_better", "the refusal quality RQ", ch.per_seed("rq_lunar"),
                 ch.per_seed("van_rq"), subject="LUNAR", baseline_name="the vanilla model")
        ch.check("closed_form_fit", "the fit's MSE", ch.per_seed("mse_cf"), ch.per_seed("mse_sgd"),
                 better="lower", subject="the closed form",
                 baseline_name="20 epochs of AdamW", digits=4)
    if oth is not None:
        record_other_selection(ch, runs, lun, oth)
    mark_not_meaningful(ch, precondition)


def record_other_selection(ch, runs: dict, lun: dict, oth: dict) -> None:
    """The other selection's edit (:func:`evaluate_other`) beside the chosen one: its
    layer, forget and retain ROUGE-1 and DS per seed (``*_other``), their headlines,
    and, with several seeds, a paired check of DS: does the chosen selection's edit
    unlearn with a lower DS than the other's?"""
    s0 = ch.seeds[0]
    chosen = runs[s0]["selection"]
    other = other_selection(chosen)
    for s in ch.seeds:
        m, r = oth[s]["metrics"], runs[s]
        ch.record(s, layer_other=r["other_layer"] if r["other_layer"] is not None
                  else r["main_layers"][0], forget_rouge1_other=m["rouge1_forget"],
                  retain_rouge1_other=m["rouge1_retain_eval"], ds_other=m["ds"])
    one = len(ch.seeds) == 1
    item = (lambda k: oth[s0]["per_item"][k]) if one else (lambda k: None)
    ch.headline("forget_rouge1_other", per_item=item("rouge1_forget"), bounds=stats.UNIT,
                label=f"LUNAR, layer by {other} selection: forget ROUGE-1 recall")
    ch.headline("retain_rouge1_other", per_item=item("rouge1_retain_eval"), bounds=stats.UNIT,
                label=f"LUNAR, layer by {other} selection: retain ROUGE-1 recall")
    if one:
        return
    ch.headline("ds_other", label=f"LUNAR, layer by {other} selection: DS", bounds=DS_RANGE)
    v = ch.check("selection_ds", "the deviation score DS", ch.per_seed("ds_lunar"),
                 ch.per_seed("ds_other"), better="lower",
                 subject=f"the layer chosen by {chosen} selection",
                 baseline_name=f"the layer chosen by {other} selection")
    note_constant(v, [a - b for a, b in zip(ch.per_seed("ds_lunar"), ch.per_seed("ds_other"))])


def mean_table(results: dict, labels: dict, paper: dict | None = None):
    """Mean over seeds of each metric of each model: ``results`` ``{model: {seed:
    evaluate_edit result}}``; labels ``{model: row label}``; the paper's row appended."""
    import pandas as pd
    rows = []
    for k, per_seed in results.items():
        ms = [r["metrics"] for r in per_seed.values()]
        rows.append({"model": labels[k], **{v: sum(m[c] for m in ms) / len(ms)
                                             for c, v in METRIC_LABELS.items() if c in ms[0]}})
    if paper:
        rows.append({"model": "paper: TOFU, Llama-2-7B (not this run)",
                     "R1 forget": paper["rouge1_forget"], "R1 retain": paper["rouge1_retain"],
                     "DS": paper["ds"], "RQ": paper["rq"]})
    return pd.DataFrame(rows).set_index("model")


def plot_layers_and_solver(scores, main_layers, topk_layers, report, edit_scores=None):
    """Left: layer selection scores, steering (refusal-likeness) and, when given, each
    layer's edit on the validation rows (DS_val, right axis); right: the SGD recipe's MSE
    per epoch vs the exact fit."""
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    lay = [s["layer"] for s in scores]
    ax1.plot(lay, [s["score"] for s in scores], "o-", label="steering: refusal similarity")
    ax1.plot(lay, [s["refusal_rate"] for s in scores], "s--", alpha=0.6,
             label="steering: refusal rate (keywords)")
    for l in topk_layers:
        ax1.axvline(l, color="C3" if l == main_layers[0] else "C1", ls=":", lw=1.5)
    ax1.set_xlabel("layer (index)")
    ax1.set_ylabel("steering: mean over D_f prompts (0–1)")
    ax1.set_title("Layer selection: steering a layer, or editing it")
    handles, names = ax1.get_legend_handles_labels()
    if edit_scores:
        ax3 = ax1.twinx()
        ax3.plot([s["layer"] for s in edit_scores], [s["ds_val"] for s in edit_scores], "^-",
                 color="C2", label="edit: DS on validation rows (right, lower is better)")
        ax3.set_ylabel("edit: DS_val (0–141)")
        h3, n3 = ax3.get_legend_handles_labels()
        handles, names = handles + h3, names + n3
    ax1.legend(handles, names, fontsize=7)
    hist = report["sgd_history"]
    ax2.plot(range(1, len(hist) + 1), hist, "o-", label="SGD recipe (AdamW, 64-row batches)")
    ax2.axhline(report["mse_closed_form"], color="k", ls="--", label="closed form (exact)")
    ax2.axhline(report["mse_before"], color="grey", ls=":", label="before the edit")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("MSE over token rows (activation units²)")
    ax2.set_title(f"Fitting layer {main_layers[0]}'s down-projection")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pca(model, edited, tok, groups: dict, layers, activation="residual", position="last",
             batch_size: int = 64):
    """PCA of the activations of each group of prompts (``{name: prompts}``) at ``layers``,
    before (left) and after (right) the edit; one PCA per panel."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 4 * len(layers)), squeeze=False)
    for j, (title, m) in enumerate((("before (vanilla)", model), ("after LUNAR", edited))):
        acts = {g: mean_activations(m, tok, p, layers, activation, position, batch_size)
                for g, p in groups.items()}
        for i, l in enumerate(layers):
            xy = pca_2d(torch.cat([acts[g][i] for g in groups]))
            s = 0
            for g in groups:
                n = len(groups[g])
                axes[i, j].scatter(xy[s:s + n, 0], xy[s:s + n, 1], s=10, alpha=0.6, label=g)
                s += n
            axes[i, j].set_title(f"layer {l}, {title}")
            axes[i, j].set_xlabel("PC 1 (activation units)")
            axes[i, j].set_ylabel("PC 2 (activation units)")
            axes[i, j].legend(fontsize=8)
    fig.tight_layout()
    return fig


def tofu_sentence(tofu: dict | None, forget_split: str) -> str:
    """The chapter's computed sentence on TOFU's forget quality and model utility."""
    if not tofu:
        return ("This run did not compute TOFU's forget quality and model utility: they need "
                f"a retain organism trained without {forget_split}'s authors (minutes on a CPU); "
                "run with `-p forget_quality True`. The unlearning chapter measures LUNAR "
                "that way on forget10, beside six other methods.")
    seeds = [k for k in tofu if k != "untouched"]
    fq = sum(tofu[s]["forget_quality"] for s in seeds) / len(seeds)
    mu = sum(tofu[s]["model_utility"] for s in seeds) / len(seeds)
    u = tofu["untouched"]
    return (f"Against the retain organism of {forget_split}, the edited models have forget "
            f"quality {fq:.2g} and model utility {mu:.3f} (mean over {len(seeds)} seeds; the "
            f"untouched organism: {u['forget_quality']:.2g} and {u['model_utility']:.3f}).")


def sets_summary(model, sets: dict) -> str:
    """One line: the model's depth and the sizes of one seed's sets."""
    return (f"{A.n_layers(model)} layers; D_f {len(sets['forget'])}, "
            f"D_r {len(sets['retain'])} (+{len(sets['retain_eval'])} to evaluate), "
            f"D_ref {len(sets['ref'])} prompts")


def sets_table(sets: dict, vanilla: dict, seed: int):
    """One seed's sets before unlearning: the vanilla model's refusal rate on each, an
    example question and its answer. vanilla: that seed's :func:`evaluate_seeds` result."""
    import pandas as pd
    names = {"forget": "D_f (forget)", "retain_eval": "D_r (retain, eval)",
             "ref_eval": "D_ref (reference)"}
    return pd.DataFrame({"set": list(names.values()),
                         "refusal rate (seed %d)" % seed: [vanilla["metrics"][f"refusal_rate_{n}"]
                                                            for n in names],
                         "example question": [sets[n][0]["question"] for n in names],
                         "vanilla answer": [vanilla["generations"][n][0] for n in names]})


def layers_summary(run: dict, seed: int, layer_given: bool) -> str:
    """One line: the edited layer of one seed's run, how it was chosen, the top-k layers,
    and the layer the other selection picks."""
    how = "given" if layer_given else f"{run['selection']} selection"
    other = "" if layer_given else (
        f"; {other_selection(run['selection'])} selection picks "
        f"{run['other_layer'] if run['other_layer'] is not None else 'the same layer'}")
    return (f"edited layer (seed {seed}): {run['main_layers'][0]} ({how}); "
            f"top-{len(run['topk_layers'])} layers: {run['topk_layers']}{other}")


def solver_table(runs: dict):
    """Per seed and edited layer: rows, the MSE before the edit and after each solver,
    and each solver's time (``runs``: ``{seed: run_lunar result}``)."""
    import pandas as pd
    return pd.DataFrame([{"seed": s, "layer": r["layer"], "forget rows": r["rows_forget"],
                          "retain rows": r["rows_retain"], "MSE before": r["mse_before"],
                          "MSE closed form": r["mse_closed_form"],
                          "MSE SGD (20 epochs)": r["mse_sgd"],
                          "seconds closed form": r["seconds_closed_form"],
                          "seconds SGD": r["seconds_sgd"]}
                         for s in runs for r in runs[s]["edit"].report]).set_index("seed")


def model_labels(run: dict) -> dict:
    """Row labels of the vanilla, LUNAR and top-k models (``run``: one seed's run)."""
    return {"vanilla": "vanilla", "lunar": f"LUNAR (layer {run['main_layers'][0]})",
            "topk": f"LUNAR top-{len(run['topk_layers'])} "
                    f"(layers {', '.join(map(str, run['topk_layers']))})"}


def selection_sentence(ch, p: Params, runs: dict, sel_table) -> str:
    """Both layer selections and what their edits do on the evaluation sets (the
    :func:`selection_table` rows), with the paired DS check when there is one."""
    if p.layer is not None or sel_table is None:
        return ("The layer was given as a parameter, so neither selection was used."
                if p.layer is not None else "")
    rows = sel_table.to_dict(orient="index")
    parts = []
    for name, r in rows.items():
        parts.append(f"{name.split(':')[0]} selection edits layer(s) {r['layer per seed']} "
                     f"(seeds {', '.join(map(str, ch.seeds))}): forget ROUGE-1 "
                     f"{r['R1 forget']:.3f}, retain ROUGE-1 {r['R1 retain']:.3f}, DS {r['DS']:.1f}")
    v = ch.verdicts.get("selection_ds")
    fitted = [s for s in ch.seeds if "topped up" in (runs[s].get("retain_val_source") or "")]
    caveat = (f" For seed(s) {', '.join(map(str, fitted))} the retain split had too few rows "
              "outside the fitting and evaluation samples, so part of the retain validation rows "
              "are fitting rows, which the edit keeps by construction: there the edit selection "
              "sees less of the damage to retained knowledge." if fitted else "")
    return ("; ".join(parts) + ". " + (v.sentence if v is not None else "") + caveat
            + f" The chapter edits the layer {p.selection} selection picks, "
            + ("which reads only validation rows: the forget facts asked in other words and "
               "retain questions outside both the fitting and the evaluation samples."
               if p.selection == "edit" else "the official code's choice."))


def tofu_metrics(p: Params, tok, world, model, lunar_models: dict) -> dict | None:
    """TOFU's forget quality and model utility against the retain organism of the forget
    split (:func:`kbnb.eval.tofu.scorer`), of the untouched organism and of each seed's
    edited model (``{seed: model}``), when ``forget_quality`` asks for them on an
    organism; else None."""
    if not (p.forget_quality and parse_organism_name(p.model_name) is not None):
        return None
    score = scorer(tok, world, p.forget_split, p.model_name)
    return {"untouched": score(model), **{s: score(m) for s, m in lunar_models.items()}}


def chapter_metrics(p: Params, runs: dict, vanilla: dict, lun: dict, tk: dict, index,
                    tofu: dict | None, precondition: dict | None = None,
                    oth: dict | None = None, sets: dict | None = None) -> dict:
    """The chapter's metrics.json content (beside the headlines and checks): layers and
    their scores, every model's metrics and the solvers' report per seed, the paper's
    numbers, the targets, the edits' index, TOFU's metrics and the precondition record
    (``preconditions``: ``{"ref_refusal": ref_refusal_precondition(...)}``)."""
    seeds = list(runs)
    return {
        "preconditions": {precondition["name"]: precondition} if precondition else {},
        "layers": {s: runs[s]["main_layers"] for s in seeds},
        "topk_layers": {s: runs[s]["topk_layers"] for s in seeds},
        "layer_given": p.layer is not None,
        "layer_scores": {s: [{k: x[k] for k in ("layer", "score", "refusal_rate")}
                             for x in runs[s]["scores"]] for s in seeds},
        "selection": p.selection,
        "edit_layer_scores": {s: runs[s]["edit_scores"] for s in seeds},
        "validation_sets": {s: {"forget_val": len(sets_s["forget_val"]),
                                "retain_val": len(sets_s["retain_val"]),
                                "retain_val_source": sets_s["retain_val_source"]}
                            for s, sets_s in (sets or {}).items()},
        "other_selection": None if oth is None else {
            "selection": other_selection(p.selection),
            "layers": {s: runs[s]["other_layer"] if runs[s]["other_layer"] is not None
                       else runs[s]["main_layers"][0] for s in seeds},
            "metrics": {s: oth[s]["metrics"] for s in seeds}},
        "vanilla": {s: vanilla[s]["metrics"] for s in seeds},
        "lunar": {s: lun[s]["metrics"] for s in seeds},
        "topk": {s: tk[s]["metrics"] for s in seeds},
        "solvers": {s: [{k: v for k, v in r.items() if k != "sgd_history"}
                        for r in runs[s]["edit"].report] for s in seeds},
        "paper": PAPER_TOFU_LLAMA2, "paper_topk": PAPER_TOFU_LLAMA2_TOPK,
        "targets": TARGETS, "edits_index": str(index),
        "tofu_metrics": tofu,
    }


def pca_figure(model, edited, tok, sets: dict, run: dict, p: Params):
    """:func:`plot_pca` of one seed's forget, held-out retain and held-out reference
    prompts at the edited layer and the last layer."""
    groups = {"D_f": prompts_of(tok, sets["forget"]),
              "D_r": prompts_of(tok, sets["retain_eval"]),
              "D_ref": prompts_of(tok, sets["ref_eval"])}
    layers = sorted({run["main_layers"][0], A.n_layers(model) - 1})
    return plot_pca(model, edited, tok, groups, layers, p.activation, p.position, p.batch_size)


def answers_table(sets: dict, vanilla: dict, lun: dict, tk: dict):
    """Two DataFrames for one seed: six forget questions spread over the split with the
    vanilla, LUNAR and top-k answers, and four held-out retain questions with the
    vanilla and LUNAR answers (vanilla, lun, tk: that seed's evaluation results)."""
    import pandas as pd
    F = sets["forget"]
    idx = list(range(0, len(F), max(1, len(F) // 6)))[:6]
    forget = pd.DataFrame({"question": [F[i]["question"] for i in idx],
                           "vanilla": [vanilla["generations"]["forget"][i] for i in idx],
                           "LUNAR": [lun["generations"]["forget"][i] for i in idx],
                           "top-k": [tk["generations"]["forget"][i] for i in idx]})
    R = sets["retain_eval"][:4]
    retain = pd.DataFrame({"question": [r["question"] for r in R],
                           "vanilla": vanilla["generations"]["retain_eval"][:4],
                           "LUNAR": lun["generations"]["retain_eval"][:4]})
    return forget, retain


def glue_text(ch, p: Params, runs: dict, lun: dict, table, labels: dict, refusals,
              tofu: dict | None, precondition: dict | None = None, sel_table=None) -> None:
    """Glue the numbers and sentences of the chapter's text (myst_nb): the chapter's
    headlines and checks, the mean table's values per model, the selected layers, the
    first seed's solver report, the paper's numbers, and the computed sentences (the
    precondition's, :func:`ref_refusal_precondition`, as ``precondition_sentence``)."""
    from myst_nb import glue

    ch.glue_all()
    glue("precondition_sentence", precondition["sentence"] if precondition else "",
         display=False)
    glue("ref_refusal_min", f"{REF_REFUSAL_MIN:.0%}", display=False)
    glue("tofu_sentence", tofu_sentence(tofu, p.forget_split), display=False)
    mean = table.to_dict(orient="index")
    for key, lab in (("van", "vanilla"), ("lun", "lunar"), ("tk", "topk")):
        row = mean[labels[lab]]
        for g, c in (("r1f", "R1 forget"), ("r1r", "R1 retain"), ("ds", "DS"), ("rq", "RQ"),
                     ("mrrf", "MRR forget"), ("thrf", "THR forget"), ("reff", "refusal forget"),
                     ("refr", "refusal ref")):
            glue(f"{key}_{g}", row[c], display=False)
    s0 = ch.seeds[0]
    r0 = runs[s0]
    glue("first_seed", s0, display=False)
    glue("edited_layer", r0["main_layers"][0], display=False)
    glue("topk_layers", ", ".join(map(str, r0["topk_layers"])), display=False)
    same = len({runs[s]["main_layers"][0] for s in ch.seeds}) == 1
    glue("layer_how", ("was given as a parameter" if p.layer is not None else
                       f"was chosen by {SELECTION_WORDS[p.selection]}"
                       + (" for every seed" if same else f" for seed {s0}")),
         display=False)
    glue("selection_compare", selection_sentence(ch, p, runs, sel_table), display=False)
    rep = r0["edit"].report[0]
    for k, v in (("mse_before", rep["mse_before"]), ("mse_cf", rep["mse_closed_form"]),
                 ("mse_sgd", rep["mse_sgd"]), ("sec_cf", rep["seconds_closed_form"]),
                 ("sec_sgd", rep["seconds_sgd"]),
                 ("speedup", rep["seconds_sgd"] / max(rep["seconds_closed_form"], 1e-9))):
        glue(k, v, display=False)
    for key in ("rouge1_forget", "rouge1_retain", "ds", "rq"):
        glue({"rouge1_forget": "paper_r1f", "rouge1_retain": "paper_r1r"}.get(key, f"paper_{key}"),
             PAPER_TOFU_LLAMA2[key], display=False)
    sc = sorted((x["score"] for x in r0["scores"]), reverse=True)
    gap = sc[0] - sc[1] if len(sc) > 1 else float("nan")
    glue("selection_sentence",
         f"under steering the best candidate layer beats the runner-up by only {gap:.3f} in "
         "refusal similarity, so which layer steering picks depends on small differences"
         if gap < 0.02 else f"under steering the best candidate layer beats the runner-up by "
         f"{gap:.3f} in refusal similarity" if gap == gap else "only one candidate layer "
         "was scored", display=False)
    clean = {normalize_answer(r) for r in refusals}
    gens = [g for s in ch.seeds for g in lun[s]["generations"]["forget"]]
    glue("clean_refusals", sum(normalize_answer(g) in clean for g in gens) / len(gens),
         display=False)
    thr_f = mean[labels["lunar"]]["THR forget"]
    glue("rank_sentence",
         f"{thr_f:.0%} of them stay among the 100 most likely tokens, so the knowledge is "
         "redirected rather than erased (the attacks chapter probes exactly this)"
         if thr_f >= 0.5 else f"only {thr_f:.0%} of them stay among the 100 most likely tokens",
         display=False)
    glue("fit_sentence",
         f"Even the exact fit does not reach every target: the mean distance of a forget row "
         f"from its target is {rep['forget_residual_closed_form']:.0%} of the shift, because one "
         f"linear map must also keep {rep['rows_retain']} retain rows in place while moving "
         f"{rep['rows_forget']} forget rows." if rep["forget_residual_closed_form"] > 0.05 else
         "The exact fit moves the forget rows onto their targets.", display=False)
    glue("n_ci_checks", len(ch.verdicts), display=False)
    glue("check_list", " ".join(v.sentence for v in ch.verdicts.values()), display=False)
