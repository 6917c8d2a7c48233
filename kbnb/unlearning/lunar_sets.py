"""The sets of LUNAR (:mod:`kbnb.unlearning.lunar`): D_f (forget), D_r (retain), D_ref
(prompts the model already refuses), the held-out rows that measure the edit, and the
validation rows that choose its layer, for the organism or for TOFU (:func:`load_sets`)."""
from __future__ import annotations

import random

from kbnb.core.checks import check_choice
from kbnb.data import invented
from kbnb.data.loaders import load_refusal, load_tofu
from kbnb.data.splits import FORGET_SPLITS, RETAIN_OF
from kbnb.lm.tuned import QUESTIONS_PER_AUTHOR
from kbnb.organism.model import OrganismConfig, world_of
from kbnb.organism.world import REFUSALS
from kbnb.unlearning.lunar import select_prompts

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


def load_sets(dataset: str = "tinyworld", forget_split: str = "forget05", n_retain: int = 300,
              n_eval: int = 90, n_ref: int | None = None, data_dir=None, seed: int = 0,
              world=None, ref_set: str = "auto", retain_authors: int | None = None,
              n_val: int = 45, val_authors: int | None = None) -> dict:
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
    learned (:mod:`kbnb.lm.tuned`); None: the whole retain split. ``val_authors``
    (``tofu`` only): hold out that many of those retain authors, drawn per seed, for the
    validation rows, so that the layer is chosen on authors no evaluation asks about and
    D_r and the retain evaluation come from the others; None: row-level hold-out below.

    Validation rows for choosing the layer by the edit's effect (``score_edit_layers``),
    questions no evaluation asks: ``forget_val`` = up to ``n_val`` forget facts, spread over
    ``D_f``, asked in other words: on the organism another of the fact's training phrasings
    (``templates``; not the held-out ``paraphrased_question``, which the paraphrase attack
    asks), on TOFU its ``paraphrased_question`` (the only other phrasing it has, so there
    the paraphrase attack asks the same questions); empty when the rows have neither.
    ``retain_val`` = ``n_val`` retain rows (of the ``val_authors`` held-out authors when given)
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
    if val_authors is not None and dataset != "tofu":
        raise ValueError(f"val_authors={val_authors!r}: only for dataset='tofu' (None otherwise)")
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
        if val_authors is not None:
            retain_all, val_pool = hold_out_authors(retain_all, val_authors, seed)
        refusals = list(GENERIC_REFUSALS)
    source = reference_source(ref_set, dataset)
    ref = reference_rows(source, world, data_dir)
    if source == "harmful":
        ref = [dict(r, answer=GENERIC_REFUSALS[0]) for r in ref]
    rng = random.Random(seed)
    n_eval = min(n_eval, len(retain_all) // 2)
    n_retain = min(n_retain, len(retain_all) - n_eval)
    sample = rng.sample(retain_all, n_retain + n_eval)
    if n_ref is not None and n_ref < len(ref):
        ref = rng.sample(ref, n_ref)
    ref_eval = rng.sample(ref, min(n_eval, len(ref)))
    out = {"forget": list(forget), "retain": sample[:n_retain], "retain_eval": sample[n_retain:],
           "ref": ref, "ref_eval": ref_eval, "refusals": refusals}
    val = validation_sets(out, retain_all, paraphrased, n_val, seed,
                          pool=val_pool if val_authors is not None else None)
    return {**out, **val}


def reference_source(ref_set: str, dataset: str) -> str:
    """The reference prompts ``ref_set`` (:data:`REF_SETS`) names on ``dataset``:
    ``auto`` is the organism's own refusal questions on ``tinyworld`` and the harmful
    instructions on ``tofu``; ``harmful`` and ``invented`` name themselves."""
    check_choice("ref_set", ref_set, REF_SETS)
    if ref_set != "auto":
        return ref_set
    return "organism" if dataset == "tinyworld" else "harmful"


def reference_rows(source: str, world=None, data_dir=None) -> list[dict]:
    """D_ref, prompts the model already refuses, as rows with ``question``: ``organism``
    (``world.refusal_train``), ``harmful`` (the harmful instructions of ``refusal/``,
    :func:`kbnb.data.loaders.load_refusal`) or ``invented`` (the held-out invented-thing
    questions of :mod:`kbnb.data.invented`, which the TOFU-tuned SmolLM2 learned to
    refuse). Fresh copies: a caller may add fields."""
    check_choice("source", source, ("organism", "harmful", "invented"))
    if source == "organism":
        if world is None:
            raise ValueError("source='organism' needs the organism's world (world=...)")
        return [dict(r) for r in world.refusal_train]
    if source == "harmful":
        return [dict(r) for r in load_refusal("train", data_dir)]
    return [dict(r) for r in invented.invented_questions(invented.N_TRAIN,
                                                         invented.N_HELDOUT)["heldout"]]


def hold_out_authors(rows: list, k: int, seed: int) -> tuple[list, list]:
    """``(kept, held)``: the rows of TOFU retain authors (20 per author, TOFU's order)
    split by author, ``k`` authors drawn with the seed's own stream held out.

    >>> kept, held = hold_out_authors([{"i": i} for i in range(60)], 1, 0)
    >>> len(kept), len(held)
    (40, 20)
    """
    n_authors = len(rows) // QUESTIONS_PER_AUTHOR
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < n_authors:
        raise ValueError(f"val_authors={k!r}: must be an integer from 1 to {n_authors - 1} "
                         f"(the retain split has {n_authors} authors here)")
    held = set(random.Random(f"lunar-validation-authors-{seed}").sample(range(n_authors), k))
    by = [(i // QUESTIONS_PER_AUTHOR in held, r) for i, r in enumerate(rows)]
    return [r for h, r in by if not h], [r for h, r in by if h]


def other_phrasing(row: dict) -> str | None:
    """A training phrasing of an organism fact other than its ``question`` and its held-out
    ``paraphrased_question`` (the middle one of the rest of its ``templates``), or None."""
    rest = [t for t in row.get("templates") or ()
            if t not in (row["question"], row.get("paraphrased_question"))]
    return rest[len(rest) // 2] if rest else None


def validation_sets(sets: dict, retain_all, paraphrased: dict, n_val: int, seed: int,
                    pool: list | None = None) -> dict:
    """``forget_val``, ``retain_val`` and ``retain_val_source`` of :func:`load_sets`;
    ``pool``: the held-out authors' rows to draw ``retain_val`` from (None: the rows of
    ``retain_all`` outside the fitting and evaluation samples)."""
    forget_val = [{**r, "question": paraphrased[r["question"]]}
                  for r in select_prompts(sets["forget"], n_val)
                  if paraphrased.get(r["question"])]
    used = {id(r) for r in sets["retain"]} | {id(r) for r in sets["retain_eval"]}  # same objects
    rest = [r for r in retain_all if id(r) not in used] if pool is None else pool
    rng = random.Random(f"lunar-validation-{seed}")
    retain_val = rng.sample(rest, min(n_val, len(rest)))
    source = "held-out retain rows" if pool is None else "retain rows of held-out authors"
    if len(retain_val) < n_val:
        retain_val += sets["retain"][:n_val - len(retain_val)]
        source = "held-out retain rows, topped up from the fitting rows D_r"
    return {"forget_val": forget_val, "retain_val": retain_val, "retain_val_source": source}
