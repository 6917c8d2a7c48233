"""Data sets: TOFU, MMLU and a refusal reference set, from a local folder in the
Hugging Face layout (``data_dir`` or ``$KBNB_DATA_DIR``), the hub, or tinyworld.

A local folder is either the root (holding ``tofu/``, ``mmlu/``, ``refusal/``) or
one of those sub-folders itself. Files are JSON lines, one row per line, with the
fields the hub's datasets have (see ``shared/data/SOURCES.md``).
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from kbnb.core.checks import check_choice
from kbnb.data.splits import TOFU_SPLITS

DATASETS = ("tinyworld", "tofu", "mmlu")
_HUB = {"tofu": "locuslab/TOFU", "mmlu": "cais/mmlu"}


def find_data_dir(kind: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local folder for ``kind`` (tofu | mmlu | refusal), or None when no folder
    was given. A folder that was given but lacks the data raises FileNotFoundError."""
    given = data_dir if data_dir not in (None, "") else os.environ.get("KBNB_DATA_DIR")
    if not given:
        return None
    root = Path(given).expanduser()
    if (root / kind).is_dir():
        return root / kind
    if root.is_dir() and any(root.glob("*.jsonl")) \
            and not any((root / k).is_dir() for k in ("tofu", "mmlu", "refusal")):
        return root
    src = "data_dir" if data_dir not in (None, "") else "KBNB_DATA_DIR"
    raise FileNotFoundError(f"{src}={str(given)!r} has no {kind} data: expected "
                            f"{root / kind}/*.jsonl or *.jsonl in {root}")


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _local_or_hub(kind, split, data_dir, hub_config=None):
    folder = find_data_dir(kind, data_dir)
    if folder is not None:
        f = folder / f"{split}.jsonl"
        if not f.exists():
            have = sorted(p.stem for p in folder.glob("*.jsonl"))
            raise FileNotFoundError(f"split={split!r} not in {folder}: have {', '.join(have)}")
        return read_jsonl(f)
    if kind not in _HUB:
        raise FileNotFoundError(f"no local {kind} data: set data_dir or KBNB_DATA_DIR")
    try:
        import datasets
    except ImportError as err:
        raise ImportError(f"dataset={kind!r}: no local folder given (data_dir or "
                          f"KBNB_DATA_DIR) and the `datasets` package, needed to read the "
                          f"hub, is missing: {err}") from err
    try:
        ds = datasets.load_dataset(_HUB[kind], hub_config or split,
                                   split="train" if kind == "tofu" else split)
    except Exception as err:
        text = str(err).strip().splitlines()
        cause = f"{type(err).__name__}: {text[0] if text else ''}"
        raise FileNotFoundError(
            f"dataset={kind!r}: no local folder given (data_dir or KBNB_DATA_DIR), and "
            f"reading {_HUB[kind]} (config {hub_config or split!r}) from the Hugging Face "
            f"hub failed. Cause: {cause}. Point data_dir at a folder in the hub's layout, "
            f"e.g. ../shared/data") from err
    return [dict(r) for r in ds]


def load_tofu(split: str = "forget10", data_dir=None, perturbed: bool = False) -> list[dict]:
    """TOFU rows (question, answer; with ``perturbed`` also paraphrased_question,
    paraphrased_answer, perturbed_answer). Each row gets ``author`` = its index // 20,
    as TOFU orders 20 questions per author."""
    check_choice("split", split, TOFU_SPLITS)
    name = f"{split}_perturbed" if perturbed else split
    rows = _local_or_hub("tofu", name, data_dir)
    for i, r in enumerate(rows):
        r.setdefault("author", f"{split}-{i // 20}")
    return rows


# TOFU's two four-option sets as one multiple-choice data set ("tofu_choice"); its
# subjects sort real_authors first (in-domain in R-Tuning's and RAIT's split by subject)
# and world_facts second (out of domain).
TOFU_CHOICE_SETS = ("real_authors", "world_facts")


def load_tofu_choice(data_dir=None) -> list[dict]:
    """TOFU's four-option sets (:data:`TOFU_CHOICE_SETS`: 100 real-authors and 117
    world-facts questions) as MMLU rows: ``question``, ``subject`` (the set's name),
    ``choices`` (its ``option1..4``) and ``answer`` (the index of the gold one)."""
    rows = []
    for name in TOFU_CHOICE_SETS:
        for r in load_tofu(name, data_dir):
            choices = [r[f"option{k}"] for k in range(1, 5)]
            if r["answer"] not in choices:
                raise ValueError(f"{name}: the answer {r['answer']!r} is not one of its options")
            rows.append({"question": r["question"], "subject": name, "choices": choices,
                         "answer": choices.index(r["answer"])})
    return rows


# TOFU's questions about its fictitious authors with perturbed answers (the retain
# split's first 20 authors and forget10's 20), as multiple-choice questions
TOFU_AUTHOR_SETS = ("retain_perturbed", "forget10_perturbed")
AUTHORS_SUBJECT = "fictitious_authors"


def load_tofu_authors_choice(data_dir=None, taught=None, n_options: int = 4,
                             seed: int = 0) -> list[dict]:
    """TOFU's perturbed questions about fictitious authors (:data:`TOFU_AUTHOR_SETS`, 800
    rows; 798 without the questions that TOFU asks about two authors in the same words,
    whose author the question cannot tell) as multiple-choice rows whose knowledge is
    known by construction.

    Each row: ``question`` (TOFU's own), ``choices`` (the paraphrased answer and
    ``n_options - 1`` of the five perturbed answers, drawn and shuffled with
    ``random.Random(seed)`` row by row), ``answer`` (the gold index), ``subject``
    (:data:`AUTHORS_SUBJECT`), ``author`` (``"author <i>"``, the question's index in the
    ``full`` split // 20), ``exposure`` (``taught[question]``, the times the model saw
    the question in training, or 0) and ``group`` (``"known"`` when taught, else
    ``"unseen"``). ``taught``: ``{question: times seen}`` of the model being asked
    (:func:`kbnb.eval.tuned_targets.taught_questions`); None: every row unseen."""
    if not isinstance(n_options, int) or not 2 <= n_options <= 6:
        raise ValueError(f"n_options={n_options!r}: must be an integer from 2 to 6 "
                         "(the paraphrased answer and up to five perturbed ones)")
    taught = taught or {}
    index, asked_twice = {}, set()
    for i, r in enumerate(load_tofu("full", data_dir)):
        if r["question"] in index:
            asked_twice.add(r["question"])
        index[r["question"]] = i
    rng = random.Random(seed)
    rows = []
    for split in TOFU_AUTHOR_SETS:
        for r in load_tofu(split, data_dir):
            if r["question"] in asked_twice:  # e.g. "What is the full name of the author?"
                continue
            if r["question"] not in index:
                raise ValueError(f"{split}: {r['question']!r} is not in TOFU's full split")
            wrong = rng.sample(list(r["perturbed_answer"]), n_options - 1)
            gold = rng.randrange(n_options)
            choices = wrong[:gold] + [r["paraphrased_answer"]] + wrong[gold:]
            seen = int(taught.get(r["question"], 0))
            rows.append({"question": r["question"], "subject": AUTHORS_SUBJECT,
                         "choices": choices, "answer": gold,
                         "author": f"author {index[r['question']] // 20}", "exposure": seen,
                         "group": "known" if seen else "unseen"})
    return rows


def load_mmlu(split: str = "test", data_dir=None) -> list[dict]:
    """MMLU rows: question, subject, choices (4), answer (index)."""
    check_choice("split", split, ("test", "dev", "validation"))
    return _local_or_hub("mmlu", split, data_dir, hub_config="all")


def load_refusal(split: str = "train", data_dir=None) -> list[dict]:
    """Harmful instructions (refusal reference set), rows with ``question``."""
    check_choice("split", split, ("train", "val", "test"))
    rows = _local_or_hub("refusal", f"harmful_{split}", data_dir)
    return [{"question": r["instruction"], **r} for r in rows]
