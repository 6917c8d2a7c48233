import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir():
    """KBNB_DATA_DIR, else ../shared/data beside the repository, else None."""
    env = os.environ.get("KBNB_DATA_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    cand = ROOT.parent / "shared" / "data"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def data_dir():
    d = shared_data_dir()
    if d is None:
        pytest.skip("real data absent: set KBNB_DATA_DIR or put it at ../shared/data")
    return d


@pytest.fixture(scope="session")
def organism():
    """(model, tok) of the default organism; trains it once if not cached."""
    import kbnb
    return kbnb.load_model("tinyworld", device="cpu")


@pytest.fixture(scope="session")
def world():
    from kbnb.organism.model import OrganismConfig, world_of
    return world_of(OrganismConfig())


def pytest_collection_modifyitems(config, items):
    """The book test reuses the chapters the chapter tests executed: run it last."""
    items.sort(key=lambda item: item.get_closest_marker("book") is not None)
