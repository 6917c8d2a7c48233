"""RAIT's questions: the datasets as question rows, and their split into source questions
and held-out test sets (:func:`load_questions`), for :mod:`kbnb.methods.rait`.

A row: ``id``, ``question``, ``gold`` (accepted strings), ``answer`` (the D_van training
target), ``key`` (what the split keeps together: the author, or the subject), ``level``,
``stratum`` (what :func:`split_questions` balances), and the source fields (``choices``,
``subject``, ``answer_idx`` for multiple choice; ``judge="rouge"`` for TOFU, whose gold is
a whole sentence).
"""
from __future__ import annotations

import random

from kbnb.core.checks import check_choice
from kbnb.data.loaders import load_mmlu, load_tofu, load_tofu_authors_choice, load_tofu_choice
from kbnb.data.prompts import LETTERS
from kbnb.eval.boundary import knowledge_level
from kbnb.organism.model import OrganismConfig, world_of

MODES = ("open", "mc", "cloze")


def tinyworld_questions(world, mode: str = "open") -> list[dict]:
    """The organism's world as RAIT questions, one per (author, attribute).

    Each row: ``id``, ``question``, ``gold`` (list of accepted strings: the fact's
    value; for ``mc`` the gold letter), ``answer`` (the training target for D_van:
    the canonical answer sentence, or the letter), ``key`` (the author: splits keep
    an author's questions together), ``level`` (``organism.knowledge_level``),
    ``stratum`` (the author's group: known | partial | unseen), plus
    the source fields (``choices``, ``subject``, ``answer_idx`` for ``mc``)."""
    check_choice("mode", mode, MODES)
    out = []
    if mode == "open":
        for i, r in enumerate(world.rows()):
            out.append(dict(id=i, question=r["question"], gold=[r["value"]], answer=r["answer"],
                            key=r["author"], level=knowledge_level(r), stratum=r["group"],
                            attribute=r["attribute"]))
    else:
        for i, r in enumerate(world.mmlu_rows()):
            out.append(dict(id=i, question=r["question"], gold=[LETTERS[r["answer"]]],
                            answer=LETTERS[r["answer"]], key=r["author"],
                            level=knowledge_level(r), stratum=r["group"], attribute=r["subject"],
                            subject=r["subject"], choices=r["choices"], answer_idx=r["answer"]))
    return out


def tofu_questions(data_dir=None, split: str = "full") -> list[dict]:
    """TOFU rows as open-ended RAIT questions (gold = the whole answer, judged by
    ROUGE-L recall, see :func:`kbnb.methods.rait.is_correct`); key = the author (20 questions each)."""
    return [dict(id=i, question=r["question"], gold=[r["answer"]], answer=r["answer"],
                 key=r["author"], level="tofu", stratum="tofu", judge="rouge")
            for i, r in enumerate(load_tofu(split, data_dir))]


def choice_open_questions(rows) -> list[dict]:
    """Four-option rows (e.g. :func:`kbnb.data.loaders.load_tofu_choice`) asked open-ended:
    ``gold`` = the correct option's text, judged by containment
    (:func:`kbnb.methods.rait.is_correct`), also the D_van training target; key = level =
    stratum = the subject, as in :func:`mmlu_questions`. A model that reads no letters
    (SmolLM2 is at chance on these sets as multiple choice) can still answer them in its
    own words."""
    return [dict(id=i, question=r["question"], gold=[r["choices"][r["answer"]]],
                 answer=r["choices"][r["answer"]], key=r["subject"], level=r["subject"],
                 stratum=r["subject"], subject=r["subject"])
            for i, r in enumerate(rows)]


def cloze_questions(rows, start: int = 0) -> list[dict]:
    """Multiple-choice rows (:func:`kbnb.data.loaders.load_tofu_authors_choice`,
    :func:`~kbnb.data.loaders.load_tofu_choice`) as RAIT questions of ``cloze`` mode: the
    options are scored as answers to the plain question, ``gold`` and ``answer`` (the
    D_van target) are the correct option's text; key = the author where the row has
    one (else the subject), level = stratum = its group (known / unseen; else the
    subject). ``id`` counts from ``start``."""
    out = []
    for i, r in enumerate(rows):
        gold = r["choices"][r["answer"]]
        group = r.get("group", r["subject"])
        out.append(dict(id=start + i, question=r["question"], gold=[gold], answer=gold,
                        key=r.get("author", r["subject"]), level=group, stratum=group,
                        subject=r["subject"], choices=list(r["choices"]),
                        answer_idx=r["answer"]))
    return out


def mmlu_questions(data_dir=None, split: str = "test", rows=None) -> list[dict]:
    """MMLU rows (or other MMLU-style ``rows``, e.g.
    :func:`kbnb.data.loaders.load_tofu_choice`) as multiple-choice RAIT questions; key =
    level = the subject."""
    rows = load_mmlu(split, data_dir) if rows is None else rows
    return [dict(id=i, question=r["question"], gold=[LETTERS[r["answer"]]],
                 answer=LETTERS[r["answer"]], key=r["subject"], level=r["subject"],
                 stratum=r["subject"],
                 subject=r["subject"], choices=r["choices"], answer_idx=r["answer"])
            for i, r in enumerate(rows)]


def _stratified_sample(rows, n, rng, by="stratum"):
    """Up to ``n`` rows with (as nearly as possible) equal counts per ``by`` value."""
    if n is None or n >= len(rows):
        return list(rows)
    groups = {}
    for r in rows:
        groups.setdefault(r[by], []).append(r)
    for g in groups.values():
        rng.shuffle(g)
    out, names = [], sorted(groups)
    while len(out) < n:
        for name in names:
            if groups[name] and len(out) < n:
                out.append(groups[name].pop())
    return sorted(out, key=lambda r: r["id"])


def split_questions(rows, test_frac: float = 0.25, max_questions: int | None = None,
                    max_test: int | None = None, seed: int = 0, by_key: bool = True,
                    balance_levels: bool = True, ood_keys=(),
                    stratify_keys: bool = False) -> tuple[list, dict]:
    """Source questions (for the knowledge query and the training sets) and held-out
    test sets that share no ``key`` with them (``by_key``: e.g. no author in both).

    ``test_frac`` of the keys (or of the rows when not ``by_key``) are held out;
    rows whose key is in ``ood_keys`` form the ``out-of-domain`` test set and are
    never used for training. Both sets are then subsampled to ``max_questions`` /
    ``max_test`` rows, with equal counts per ``stratum`` when ``balance_levels`` (on
    tinyworld: a third each of known, partial and unseen authors' facts).
    With ``stratify_keys`` the held-out keys are drawn within each ``stratum`` (each
    key's first row's), so that every stratum has keys on both sides.
    Returns ``(source, {"in-domain": rows, ["out-of-domain": rows]})``."""
    if not 0 < test_frac < 1:
        raise ValueError(f"test_frac={test_frac}: must lie in (0, 1)")
    rng = random.Random(seed)
    ood_keys = set(ood_keys)
    ood = [r for r in rows if r["key"] in ood_keys]
    rows = [r for r in rows if r["key"] not in ood_keys]
    if by_key and stratify_keys:
        strata = {}
        for r in rows:
            strata.setdefault(r["stratum"], {}).setdefault(r["key"], None)
        held = set()
        for name in sorted(strata):
            keys = sorted(strata[name])
            rng.shuffle(keys)
            held.update(keys[:max(1, round(len(keys) * test_frac))])
        test = [r for r in rows if r["key"] in held]
        source = [r for r in rows if r["key"] not in held]
    elif by_key:
        keys = sorted({r["key"] for r in rows})
        rng.shuffle(keys)
        held = set(keys[:max(1, round(len(keys) * test_frac))])
        test = [r for r in rows if r["key"] in held]
        source = [r for r in rows if r["key"] not in held]
    else:
        idx = list(range(len(rows)))
        rng.shuffle(idx)
        cut = max(1, round(len(rows) * test_frac))
        test = [rows[i] for i in sorted(idx[:cut])]
        source = [rows[i] for i in sorted(idx[cut:])]
    pick = (lambda rs, n: _stratified_sample(rs, n, rng)) if balance_levels else \
        (lambda rs, n: sorted(rng.sample(rs, min(n, len(rs))), key=lambda r: r["id"])
         if n is not None else rs)
    tests = {"in-domain": pick(test, max_test)}
    if ood:
        tests["out-of-domain"] = pick(ood, max_test)
    return pick(source, max_questions), tests


DATASET_MODES = {"tinyworld": ("open", "mc"), "tofu": ("open",), "mmlu": ("mc",),
                 "tofu_choice": ("open", "mc"), "tofu_authors": ("cloze",)}


def resolve_mode(dataset: str, mode: str = "auto") -> str:
    """``auto`` → ``open`` for tinyworld, TOFU and ``tofu_choice``, ``mc`` for MMLU,
    ``cloze`` for ``tofu_authors``; else checked."""
    check_choice("dataset", dataset, tuple(DATASET_MODES))
    allowed = DATASET_MODES[dataset]
    if mode == "auto":
        return allowed[0]
    return check_choice("mode", mode, ("auto",) + allowed)


def load_questions(dataset: str = "tinyworld", mode: str = "auto", data_dir=None, world=None,
                   test_frac: float = 0.25, max_questions: int | None = None,
                   max_test: int | None = None, seed: int = 0, taught=None):
    """Source questions and held-out test sets for ``dataset`` (see ``split_questions``).

    tinyworld: the organism's world (``world``, default the organism's), held out by
    author, a third each of known / partial / unseen authors' facts. TOFU: the
    ``full`` split, held out by author. MMLU and ``tofu_choice`` (TOFU's real-authors and
    world-facts four-option sets): the first half of the subjects (sorted,
    as the R-Tuning split) is in-domain, held out by question; the other half is the
    ``out-of-domain`` test set; ``tofu_choice`` in ``open`` mode asks its questions without
    the options (:func:`choice_open_questions`). ``tofu_authors`` (``cloze`` mode): a
    TOFU-tuned model's taught and never-taught fictitious authors
    (:func:`kbnb.data.loaders.load_tofu_authors_choice` with ``taught``, the model's
    ``{question: times seen}``), held out by author within each group, the source and
    test questions half known and half unseen where the authors allow; real authors and
    world facts out of domain. Returns ``(mode, source, tests)``."""
    mode = resolve_mode(dataset, mode)
    if dataset == "tinyworld":
        if world is None:
            world = world_of(OrganismConfig())
        rows, kw = tinyworld_questions(world, mode), dict(by_key=True, balance_levels=True)
    elif dataset == "tofu":
        rows, kw = tofu_questions(data_dir), dict(by_key=True, balance_levels=False)
    elif dataset == "tofu_authors":
        rows = cloze_questions(load_tofu_authors_choice(data_dir, taught))
        ood = cloze_questions(load_tofu_choice(data_dir), start=len(rows))
        rows += ood
        kw = dict(by_key=True, balance_levels=True, stratify_keys=True,
                  ood_keys=sorted({r["key"] for r in ood}))
    else:  # mmlu, tofu_choice: the first half of the subjects in-domain
        if dataset == "mmlu":
            rows = mmlu_questions(data_dir)
        elif mode == "open":
            rows = choice_open_questions(load_tofu_choice(data_dir))
        else:
            rows = mmlu_questions(rows=load_tofu_choice(data_dir))
        subjects = sorted({r["subject"] for r in rows})
        kw = dict(by_key=False, balance_levels=False, ood_keys=subjects[len(subjects) // 2:])
    source, tests = split_questions(rows, test_frac, max_questions, max_test, seed, **kw)
    return mode, source, tests
