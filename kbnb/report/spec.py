"""A chapter's declaration, written once in its chapter module as ``SPEC``.

The book runner (``kbnb.book.runner``) reads the upstream chapters, the organisms to
train ahead and the cost hint from it; the results page reads its rows. Adding a chapter
touches its notebook, its chapter module, ``_toc.yml`` and the params files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from kbnb.organism.model import parse_organism_name


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    metric: key in the chapter's ``headline`` section. claim: what the number measures,
    in words. check: key in its ``checks`` section whose verdict goes beside the number
    (or None). reference: the paper's or the seed's value as text ("" when none is
    comparable); reference_source: who reported it, on which model and data set.
    """
    metric: str
    claim: str
    check: str | None = None
    reference: str = ""
    reference_source: str = ""


@dataclass(frozen=True)
class ChapterSpec:
    """What the book needs to know about a chapter besides its notebook.

    title: its name on the results page. params: its ``Params`` class (None for a page
    without one). depends: ``{upstream chapter: parameter that receives the upstream's
    run folder, or None when it only reads it}``; ``{"*": None}`` = every other chapter.
    cost: seconds it took in a cold build on 2 cores (only the scheduling order uses it).
    retain_split: ``f(params) -> forget split or None``: the forget split whose retain
    organism the chapter loads with these parameters (trained ahead, in parallel).
    recipe: parameters that change the organism's recipe (the organism chapter's size).
    rows: its lines on the results page.
    inputs: ``f(params) -> [folder or file]``: what else the chapter reads (e.g. the
    recorded real-model runs); the runner executes it again when their bytes change.
    """
    title: str
    params: type | None = None
    depends: dict = field(default_factory=dict)
    cost: float = 60.0
    retain_split: Callable | None = None
    recipe: tuple = ()
    rows: tuple = ()
    inputs: Callable | None = None


def recorded_inputs(params) -> list[str]:
    """``SPEC.inputs`` of a method chapter: the recorded real-model runs its discussion
    compares with (:mod:`kbnb.report.recorded`), on the organism only (a real-model
    run, which writes those recordings, is not compared with them)."""
    return ["results"] if parse_organism_name(getattr(params, "model_name", "")) else []
