"""Typed, checked parameters: the fields of a chapter's ``Params``
(:mod:`kbnb.report.params`) and of an unlearning method (:mod:`kbnb.unlearning.base`).

A parameter is a field of a frozen dataclass built on :class:`Checked`, declared with a
helper that says what is allowed: :func:`choice` (one of a tuple), :func:`integer`,
:func:`number`, :func:`flag`, :func:`seeds_param`, or :func:`param` with any check
``f(name, value)`` (the checks of :mod:`kbnb.core.checks`: a ValueError naming the
parameter and what is allowed). Every helper also takes

* ``run=False``: not part of a run's identity (e.g. an output folder; see
  ``ChapterParams.run_params``);
* ``grid=(v0, v1, ...)``: the values a hyperparameter search tries for it, the default
  first (:meth:`Checked.tuning_grid`; an unlearning method's knobs, swept by
  :func:`kbnb.unlearning.tuning.grid`).

:class:`Checked` checks every field on construction, then ``validate()`` (rules that tie
several parameters together).
"""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING

from kbnb.core.checks import check_choice, check_int, check_number
from kbnb.core.seeds import check_seeds

__all__ = ["Checked", "choice", "flag", "integer", "number", "param", "seeds_param"]


def param(default, check=None, *, run: bool = True, grid=None):
    """A parameter with ``default`` (a list or dict is copied per instance), an optional
    ``check(name, value)``, whether it is part of the run's identity (``run``) and the
    values a tuning grid tries (``grid``, None: not tuned)."""
    meta = {"check": check, "run": run, "grid": None if grid is None else tuple(grid)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def choice(default, allowed, **kw):
    """A parameter that must be one of ``allowed``."""
    allowed = tuple(allowed)
    return param(default, lambda name, v: check_choice(name, v, allowed), **kw)


def integer(default, lo=None, hi=None, *, none: bool = False, **kw):
    """An integer parameter in ``[lo, hi]`` (``none=True``: None also allowed)."""
    def check(name, v):
        if not (none and v is None):
            check_int(name, v, lo, hi)
    return param(default, check, **kw)


def number(default, lo=None, hi=None, *, lo_open: bool = False, none: bool = False, **kw):
    """A finite number parameter in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``;
    ``none=True``: None also allowed)."""
    def check(name, v):
        if not (none and v is None):
            check_number(name, v, lo, hi, lo_open)
    return param(default, check, **kw)


def flag(default: bool, **kw):
    """A True/False parameter."""
    return choice(default, (True, False), **kw)


def seeds_param(default=(0, 1, 2)):
    """The ``seeds`` of a run's stochastic parts: a list of distinct non-negative ints."""
    return param(list(default), lambda name, v: check_seeds(v))


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


@dataclasses.dataclass(frozen=True)
class Checked:
    """Base of a frozen dataclass of parameters: checks every field (its ``check``
    metadata) on construction, then :meth:`validate`."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                check(f.name, getattr(self, f.name))
        self.validate()

    def validate(self) -> None:
        """Rules that tie several parameters together (override; raise ValueError)."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def defaults(cls) -> dict:
        return {f.name: _default(f) for f in dataclasses.fields(cls)}

    @classmethod
    def tuning_grid(cls) -> dict[str, tuple]:
        """``{name: values}`` of the fields declared with a ``grid``, in field order."""
        return {f.name: f.metadata["grid"] for f in dataclasses.fields(cls)
                if f.metadata.get("grid") is not None}

    @classmethod
    def check_fields(cls, owner: str) -> None:
        """Refuse (ValueError naming ``owner``) a field without a default or a check, and a
        grid whose values fail the field's check or that does not start at the default."""
        for f in dataclasses.fields(cls):
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{owner}: parameter {f.name} needs a default")
            check = f.metadata.get("check")
            if check is None:
                raise ValueError(f"{owner}: parameter {f.name} needs a check (declare it with "
                                 "a helper of kbnb.core.fields)")
            values = f.metadata.get("grid")
            if values is None:
                continue
            if not values or values[0] != _default(f):
                raise ValueError(f"{owner}: the grid of {f.name}, {values!r}, must start at its "
                                 f"default {_default(f)!r}")
            for v in values:
                check(f.name, v)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
