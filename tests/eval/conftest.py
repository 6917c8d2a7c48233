"""Fixtures of the statistics tests."""
import pytest


def _paired_null(rng, n=30):
    """n items with a shared item effect and the same mean under both methods."""
    item = rng.normal(0, 1, n)
    return item + rng.normal(0, 0.5, n), item + rng.normal(0, 0.5, n)


@pytest.fixture
def paired_null():
    """``paired_null(rng, n=30)``: paired values (a, b) of n items with no effect."""
    return _paired_null
