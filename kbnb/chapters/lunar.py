"""The LUNAR chapter (``notebooks/lunar.ipynb``): its parameters, its declaration and its run.

The method is :mod:`kbnb.unlearning.lunar` (Shen et al. 2025), run on each seed's sets by
:func:`kbnb.unlearning.lunar_pipeline.edit_model`. This module holds what the chapter does
with it:

* the recipe on each seed (:func:`run_seeds`: steering vectors and layer scores shared
  across seeds, layer selection both ways, the edits of the selected layer, of the top-k
  layers and of the layer the other selection picks), and the run's saved edits
  (:func:`save_run_edits`, :mod:`kbnb.unlearning.lunar_store`), from which the attacks
  chapter (:mod:`kbnb.chapters.lunar_attacks`) loads the edit it attacks;
* the evaluation of one model on several seeds' sets in one generation
  (:func:`evaluate_seeds`), the precondition (:func:`ref_refusal_precondition`), the
  chapter's records and checks (:func:`record_and_check` against :data:`TARGETS`) and its
  metrics.json content. Its tables, figures and sentences are in
  :mod:`kbnb.chapters.lunar_present`.

The paper's TOFU / Llama-2-7B numbers (:data:`PAPER_TOFU_LLAMA2`) are shown for
reference only: a different model and data set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kbnb.data.splits import FORGET_SPLITS
from kbnb.eval import stats
from kbnb.eval.metrics import DS_RANGE, deviation_score
from kbnb.eval.tofu_organism import scorer
from kbnb.organism.model import parse_organism_name
from kbnb.report.chapter import declared, note_constant
from kbnb.report.params import ModelParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row, recorded_inputs
from kbnb.unlearning import lunar, lunar_sets
from kbnb.unlearning.lunar import apply_edit
from kbnb.unlearning.lunar_eval import evaluate_edit
from kbnb.unlearning.lunar_pipeline import SELECTIONS, edit_model
from kbnb.unlearning.lunar_sets import load_sets
from kbnb.unlearning.lunar_store import MAIN_EDIT, save_edits

LUNAR_PAPER = "Shen et al. 2025, Llama-2-7B on TOFU"
LUNAR_SEED = "seed report, Llama-2-7B (TOFU fine-tune) on TOFU"
# The paper's TOFU / Llama-2-7B-chat numbers (Shen et al. 2025, Table 1), for reference.
PAPER_TOFU_LLAMA2 = {"rouge1_forget": 0.109, "rouge1_retain": 0.898, "ds": 14.9, "rq": 0.608}
PAPER_TOFU_LLAMA2_TOPK = {"rouge1_forget": 0.106, "rouge1_retain": 0.909, "ds": 14.0, "rq": 0.607}
# The seed report's reproduction (Llama-2-7B fine-tuned on TOFU, its table of ROUGE-1 recall,
# DS and RQ): the vanilla model and LUNAR (base) on the same sets. The project holds the
# paper's numbers for LUNAR (above) but not for its vanilla model, so the effects of the edit
# (vanilla → LUNAR) come from here.
SEED_TOFU_LLAMA2 = {"vanilla": {"rouge1_forget": 0.571, "rouge1_retain": 0.577, "ds": 63.3,
                                "rq": 0.331},
                    "lunar": {"rouge1_forget": 0.192, "rouge1_retain": 0.549, "ds": 49.0,
                              "rq": 0.490}}


def _seed_effect(key: str, what: str, digits: int) -> tuple[float, str]:
    """(size, source) of the seed report's change of ``key`` from the vanilla model to LUNAR."""
    v, lun = SEED_TOFU_LLAMA2["vanilla"][key], SEED_TOFU_LLAMA2["lunar"][key]
    return (round(abs(lun - v), digits), f"the seed report's {what}, {v:.{digits}f} → "
            f"{lun:.{digits}f} under LUNAR, Llama-2-7B on TOFU")


# The smallest effect that matters for each claim, (size, source) or None
# (kbnb.eval.verdicts: an interval inside ±size reads "excluded at the paper's size").
SMALLEST_EFFECTS = {
    # the edit against the vanilla model: the seed report's whole effect (the paper's
    # vanilla numbers are not among the project's references)
    "forget_drop": _seed_effect("rouge1_forget", "fall of forget ROUGE-1", 3),
    "ds_better": _seed_effect("ds", "fall of DS", 1),
    "rq_better": _seed_effect("rq", "rise of RQ", 3),
    # against the chapter's design targets (TARGETS), not effects a paper reports: none
    "vanilla_knows": None, "forget_low": None, "retain_kept": None, "retain_share": None,
    # the closed form vs AdamW (the paper proves the optimum but reports no MSE) and one
    # layer selection vs the other (this project's comparison): no reference number, none
    "closed_form_fit": None, "selection_ds": None,
}
# What the chapter expects on the organism (each becomes a paired check with its interval).
TARGETS = {"vanilla_forget_min": 0.8, "forget_max": 0.2, "retain_min": 0.85,
           "retain_share_min": 0.9}
# LUNAR's precondition: the vanilla model refuses its reference prompts D_ref. r_uv =
# mean a(D_ref) - mean a(D_f) points towards refusal only when most of D_ref is refused;
# below half, the mean over D_ref is mostly that of prompts the model answers, and the
# edit has no refusal to redirect the forget prompts to. Measured on the held-out sample
# of D_ref (ref_eval, a subsample of it) before any edit; the organism refuses all of them.
REF_REFUSAL_MIN = 0.5


@dataclass(frozen=True)
class Params(ModelParams):
    """The parameters of ``notebooks/lunar.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld (the embedded organism) | hub id | local directory
    dataset: str = choice("tinyworld", lunar_sets.SOURCES)  # tinyworld: the organism's world | tofu: needs data_dir
    data_dir: object = param(None)  # folder with tofu/ and refusal/; None: $KBNB_DATA_DIR or the hub
    forget_split: str = choice("forget05", FORGET_SPLITS)  # forget01 | forget05 | forget10: the forget set D_f
    n_retain: int = integer(300, 1)  # retain prompts D_r used to fit the edit
    n_eval: int = integer(90, 1)  # retain and reference prompts to evaluate, disjoint from the fitting ones
    n_ref: object = integer(None, 1, none=True)  # reference prompts D_ref for the steering vectors; None: all
    ref_set: str = choice("auto", lunar_sets.REF_SETS)  # D_ref: auto (organism's / harmful) | harmful | invented
    retain_authors: object = integer(None, 1, none=True)  # tofu: D_r from the first N retain authors; None: all
    val_authors: object = integer(None, 1, none=True)  # tofu: retain authors held out to choose the layer; None: held-out rows
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
        """The :func:`kbnb.unlearning.lunar_sets.load_sets` arguments of the run (without
        ``data_dir``, ``seed`` and ``world``); stored in the run's ``edits.json``."""
        out = dict(dataset=self.dataset, forget_split=self.forget_split, n_retain=self.n_retain,
                   n_eval=self.n_eval, n_ref=self.n_ref, n_val=self.n_select)
        if self.ref_set != "auto":  # only when given, so that earlier runs keep their sets
            out["ref_set"] = self.ref_set
        if self.retain_authors is not None:
            out["retain_authors"] = self.retain_authors
        if self.val_authors is not None:
            out["val_authors"] = self.val_authors
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
        if self.val_authors is None:
            del p["val_authors"]
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

def evaluate_seeds(model, tok, sets_by_seed: dict, refusals, names=("forget", "retain_eval",
                   "ref_eval"), **kw) -> dict:
    """:func:`kbnb.unlearning.lunar_eval.evaluate_edit` of one model on several seeds' sets in
    one batched generation: a set that is the same for every seed (the forget split) is
    generated once.

    sets_by_seed: ``{seed: sets}`` (as from :func:`kbnb.unlearning.lunar_sets.load_sets`).
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
    (:func:`kbnb.unlearning.lunar_sets.load_sets` with the run's parameters): the whole forget
    split, and each seed's own draw of the retain and reference samples. world: the
    organism's world (None for a real model)."""
    return {s: load_sets(**p.set_args(), data_dir=p.data_dir, seed=s, world=world)
            for s in ch.seeds}


def run_seeds(ch, p: Params, model, tok, sets: dict) -> dict:
    """:func:`kbnb.unlearning.lunar_pipeline.edit_model` with the run's parameters on each
    seed's sets (``{seed: sets}``), in the order of ``ch.seeds``, without making the edited
    models: the steering vectors and layer scores (scored even when ``layer`` is given,
    for the figure and the top-k ranking) are computed once for the seeds that share them;
    both solvers fit the main edit (``compare``); the top-k edit and the other selection's
    are fitted too. Returns ``{seed: run}`` (``edit_model``'s run dict)."""
    cache = {}
    return {s: edit_model(model, tok, sets[s], p.layer, candidate_layers=p.candidate_layers,
                          selection=p.selection, n_select=p.n_select, top_k=p.top_k,
                          score_given=True, activation=p.activation, position=p.position,
                          rows=p.rows, coeff=p.coeff, solver=p.solver, ridge=p.ridge,
                          compare=True, fit_other=True, apply=False, batch_size=p.batch_size,
                          embedder=p.embedder, seed=s, cache=cache)[1]
            for s in ch.seeds}


def other_selection(selection: str) -> str:
    """The selection that is not ``selection`` (both are reported)."""
    return next(x for x in SELECTIONS if x != selection)


def evaluate_other(model, tok, sets: dict, runs: dict, lun: dict, refusals, p: Params) -> dict | None:
    """``{seed: evaluate_edit result}`` of the edit at the layer the other selection
    picks (:func:`other_selection`): the main edit's own result where both pick the same
    layer. None when the layer was given: no selection ran, there is nothing to compare."""
    if p.layer is not None:
        return None
    out = {}
    for s, r in runs.items():
        if r["edit_other"] is None:
            out[s] = lun[s]
            continue
        m = apply_edit(model, r["edit_other"].weights)
        out[s] = evaluate_seeds(m, tok, {s: sets[s]}, refusals, **p.eval_args())[s]
        del m
    return out


def save_run_edits(folder, model, runs: dict, p: Params,
                   precondition: dict | None = None) -> Path:
    """Save every seed's edits of the run (the selected layer's, :data:`MAIN_EDIT`, and
    the top-k layers', ``lunar_topk``) with :func:`kbnb.unlearning.lunar_store.save_edits`; the index keeps the
    run's :func:`kbnb.unlearning.lunar_sets.load_sets` arguments and the ``precondition``
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


# ---- records, checks, metrics.json ----------------------------------------------------

def record_and_check(ch, runs: dict, van: dict, lun: dict, tk: dict,
                     precondition: dict | None = None, oth: dict | None = None) -> None:
    """Headlines and checks of the LUNAR chapter on a :class:`kbnb.report.chapter.Chapter`.

    runs: ``{seed: run}`` (:func:`run_seeds`); van, lun, tk: ``{seed: evaluate_edit result}`` of the
    vanilla, LUNAR and top-k models. Several seeds: intervals and paired checks over
    seeds. One seed: over the questions (ROUGE-1 and refusals per question); the
    claims that have no per-question value (DS, RQ, the solvers' MSE) are then
    compared over seeds only, so they need two or more. The selected layer is a
    constant of each run: with one seed it has no interval (not measurable), with
    several an interval over seeds; a layer given as a parameter (the runs'
    ``layer_given``) was not selected: it has no headline, and the selections are not
    compared. ``precondition`` (:func:`ref_refusal_precondition`)
    not met: every headline is marked not meaningful (:func:`mark_not_meaningful`).
    ``oth`` (:func:`evaluate_other`): the other layer selection's results, recorded beside
    (:func:`record_other_selection`)."""
    T = TARGETS
    given = any(runs[s].get("layer_given") for s in ch.seeds)
    for s in ch.seeds:
        v, m, t = van[s]["metrics"], lun[s]["metrics"], tk[s]["metrics"]
        rep = runs[s]["edit"].report[0]
        chosen = {} if given else {"selected_layer": runs[s]["main_layers"][0]}
        ch.record(s, forget_rouge1=m["rouge1_forget"], retain_rouge1=m["rouge1_retain_eval"],
                  refusal_forget=m["refusal_rate_forget"], **chosen, ds_lunar=m["ds"],
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
    if not given:  # a given layer is a parameter, not a selection: no headline
        deepest = max(max((x["layer"] for x in runs[s].get("scores") or []),
                          default=runs[s]["main_layers"][0]) for s in ch.seeds)
        ch.headline("selected_layer", label="selected layer",  # one seed: not measurable
                    bounds=(0, max(1, deepest)))
    if not one:
        ch.headline("ds_lunar", label="LUNAR: deviation score DS", bounds=DS_RANGE)

    def vals(res, key, seed_key):
        return res[s0]["per_item"][key] if one else ch.per_seed(seed_key)

    v = ch.check("vanilla_knows", "the vanilla model's forget ROUGE-1",
                 vals(van, "rouge1_forget", "van_forget"), T["vanilla_forget_min"], bounds=stats.UNIT,
                 **declared(SMALLEST_EFFECTS, "vanilla_knows"))
    if not one:
        note_constant(v, ch.per_seed("van_forget"))
    ch.check("forget_low", "forget ROUGE-1 after LUNAR", vals(lun, "rouge1_forget", "forget_rouge1"),
             T["forget_max"], better="lower", bounds=stats.UNIT,
             **declared(SMALLEST_EFFECTS, "forget_low"))
    ch.check("retain_kept", "retain ROUGE-1 after LUNAR",
             vals(lun, "rouge1_retain_eval", "retain_rouge1"), T["retain_min"], bounds=stats.UNIT,
             **declared(SMALLEST_EFFECTS, "retain_kept"))
    if one:
        r_l, r_v = lun[s0]["per_item"]["rouge1_retain_eval"], van[s0]["per_item"]["rouge1_retain_eval"]
        ch.check("retain_share", "retain ROUGE-1", [x - T["retain_share_min"] * y
                 for x, y in zip(r_l, r_v)], 0.0, baseline_name=f"{T['retain_share_min']:.0%} of "
                 "the vanilla model's", **declared(SMALLEST_EFFECTS, "retain_share"))
        f_l, f_v = lun[s0]["per_item"]["rouge1_forget"], van[s0]["per_item"]["rouge1_forget"]
        ch.check("forget_drop", "forget ROUGE-1", f_l, f_v, better="lower", subject="LUNAR",
                 baseline_name="the vanilla model", **declared(SMALLEST_EFFECTS, "forget_drop"))
    else:
        ch.check("retain_share", "retain ROUGE-1", ch.per_seed("retain_rouge1"),
                 ch.per_seed("retain_share_floor"),
                 baseline_name=f"{T['retain_share_min']:.0%} of the vanilla model's",
                 **declared(SMALLEST_EFFECTS, "retain_share"))
        ch.check("ds_better", "the deviation score DS", ch.per_seed("ds_lunar"),
                 ch.per_seed("van_ds"), better="lower", subject="LUNAR",
                 baseline_name="the vanilla model", **declared(SMALLEST_EFFECTS, "ds_better"))
        ch.check("rq_better", "the refusal quality RQ", ch.per_seed("rq_lunar"),
                 ch.per_seed("van_rq"), subject="LUNAR", baseline_name="the vanilla model",
                 **declared(SMALLEST_EFFECTS, "rq_better"))
        ch.check("closed_form_fit", "the fit's MSE", ch.per_seed("mse_cf"), ch.per_seed("mse_sgd"),
                 better="lower", subject="the closed form",
                 baseline_name="20 epochs of AdamW", digits=4,
                 **declared(SMALLEST_EFFECTS, "closed_form_fit"))
    if oth is not None and not given:
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
                 baseline_name=f"the layer chosen by {other} selection",
                 **declared(SMALLEST_EFFECTS, "selection_ds"))
    note_constant(v, [a - b for a, b in zip(ch.per_seed("ds_lunar"), ch.per_seed("ds_other"))])


def tofu_metrics(p: Params, tok, world, model, lunar_models: dict) -> dict | None:
    """TOFU's forget quality and model utility against the retain organism of the forget
    split (:func:`kbnb.eval.tofu_organism.scorer`), of the untouched organism and of each seed's
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
