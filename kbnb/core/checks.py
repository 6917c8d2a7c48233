"""Parameter checks that name the parameter and the allowed values.

Each check returns the value it accepted, so it can be used inline, and raises
``ValueError("name=value: allowed ...")`` otherwise.
"""
from __future__ import annotations

import math
import numbers


def check_choice(name, value, allowed):
    """``value`` when it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: allowed {', '.join(map(repr, allowed))}")
    return value


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name, value, lo: int | None = None, hi: int | None = None):
    """An integer (not a bool) in ``[lo, hi]`` (either end open when None)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
            or (lo is not None and value < lo) or (hi is not None and value > hi):
        span = (f"an integer >= {lo}" if hi is None else f"an integer <= {hi}" if lo is None
                else f"an integer in [{lo}, {hi}]") if (lo, hi) != (None, None) else "an integer"
        raise ValueError(f"{name}={value!r}: allowed {span}")
    return value


def check_number(name, value, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False):
    """A finite real number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    ok = _is_number(value) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        left = "(" if lo_open else "["
        span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ValueError(f"{name}={value!r}: allowed a finite number in {span}")
    return value
