"""Parameter checks that name the parameter and the allowed values."""
from __future__ import annotations


def check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: allowed {', '.join(map(repr, allowed))}")
    return value
