"""One module per notebook, with the notebook's name: its ``Params`` (the typed parameters
of its ``parameters`` cell), its ``SPEC`` (what the book runner and the results page need
to know) and the chapter's records, tables, figures and sentences.

:func:`spec_of` finds a chapter's declaration by name; :func:`toc_chapters` lists the
chapters the book's table of contents holds.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from kbnb.report.spec import ChapterSpec

ROOT = Path(__file__).resolve().parents[2]  # the repository (notebooks/, _toc.yml)


def toc_chapters(root: Path = ROOT) -> list[str]:
    """Names of the executed notebooks the table of contents lists (``book/chapters/X``)."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    names = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "file" and str(v).startswith("book/chapters/"):
                    names.append(Path(v).stem)
                else:
                    walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)

    walk(toc)
    return names


def spec_of(name: str) -> ChapterSpec:
    """The ``SPEC`` of ``kbnb/chapters/<name>.py``; a notebook without a chapter module
    gets a plain declaration (no dependencies, no organisms beyond its model, no rows)."""
    try:
        module = importlib.import_module(f"kbnb.chapters.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"kbnb.chapters.{name}":
            raise
        return ChapterSpec(title=name)
    return module.SPEC
