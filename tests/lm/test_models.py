"""load_model, prompts, embeddings, runs."""
import json

import pytest
import torch

import kbnb
from kbnb.lm.embed import embed, max_similarity
from kbnb.report import runs


def test_bad_model_name_gives_one_clear_error(monkeypatch):
    import huggingface_hub.constants
    with pytest.raises(FileNotFoundError, match="model_name='./no/such/model'"):
        kbnb.load_model("./no/such/model")
    # offline, as this machine and CI are: the hub is not asked (and retried) for a minute
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="model_name='nobody/no-such-model-xyz' could not be loaded"):
        kbnb.load_model("nobody/no-such-model-xyz")


def test_bad_device_and_dtype_are_named():
    with pytest.raises(ValueError, match="device='gpu'"):
        kbnb.resolve_device("gpu")
    with pytest.raises(ValueError, match=r"^retain_device='gpu': allowed 'auto'"):
        kbnb.resolve_device("gpu", "retain_device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device='cuda': CUDA is not available"):
            kbnb.resolve_device("cuda")
    from kbnb.chapters.lunar import Params
    with pytest.raises(ValueError, match=r"^device='gpu': allowed 'auto', 'cpu'"):
        Params(device="gpu")
    from kbnb.lm.models import _resolve_dtype
    with pytest.raises(ValueError, match="dtype='float8'"):
        _resolve_dtype("float8", torch.device("cpu"))


def test_plain_template_without_chat_template():
    class Tok:
        chat_template = None
    assert kbnb.format_prompt(Tok(), "Why?") == "Question: Why?\nAnswer:"
    assert kbnb.format_prompt(Tok(), "Why?", system="Be brief.") == "Be brief.\n\nQuestion: Why?\nAnswer:"


def test_offline_embedder():
    e = embed(["I don't know.", "I don't know.", "The cat sat on the mat."])
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (e[0] @ e[1]).item() == pytest.approx(1.0, abs=1e-5)
    assert (e[0] @ e[2]).item() < 0.5
    s = max_similarity(["I have no idea about that."], ["I don't know.", "Paris is in France."])
    assert s.shape == (1,) and s.item() > 0.5


def test_run_dir_depends_on_parameters(tmp_path):
    a = runs.run_dir("nb", {"seed": 0}, tmp_path)
    b = runs.run_dir("nb", {"seed": 1}, tmp_path)
    assert a != b and runs.run_dir("nb", {"seed": 0}, tmp_path) == a
    assert json.loads((a / "params.json").read_text()) == {"seed": 0}
    p = runs.save_metrics(a / "metrics.json", {"x": torch.tensor(0.5)}, {"seed": 0}, device="cpu")
    doc = json.loads(p.read_text())
    assert doc["metrics"]["x"] == 0.5 and doc["params"] == {"seed": 0}
    assert doc["environment"]["torch"] == torch.__version__ and doc["environment"]["device"] == "cpu"
