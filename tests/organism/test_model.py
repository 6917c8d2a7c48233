import pytest

from kbnb import organism
from kbnb.eval import boundary
from kbnb.organism.model import OrganismConfig


def _tiny(seed=0):
    return OrganismConfig(seed=seed, n_authors=20, n_layers=2, d_model=32, d_mlp=64,
                          epochs=16, vocab_size=300, warmup_steps=2)


def test_same_seed_gives_the_same_model(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM
    monkeypatch.setenv("KBNB_CACHE", str(tmp_path))
    a = organism.train_organism(_tiny(), tmp_path / "a", progress=False)
    b = organism.train_organism(_tiny(), tmp_path / "b", progress=False)
    organism.train_organism(_tiny(seed=1), tmp_path / "c", progress=False)
    assert a["losses"] == b["losses"]
    da, db, dc = (organism.weights_digest(AutoModelForCausalLM.from_pretrained(tmp_path / x))
                  for x in "abc")
    assert da == db != dc


def test_cache_is_keyed_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("KBNB_CACHE", str(tmp_path))
    path = organism.build_organism(_tiny(), progress=False)
    assert {"config.json", "model.safetensors", "tokenizer.json", "kbnb_organism.json"} <= \
        {p.name for p in path.iterdir()}
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert organism.build_organism(_tiny(), progress=False) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert organism.organism_path(_tiny(seed=1)) != path


def test_loads_like_any_hub_model(tmp_path, monkeypatch):
    import kbnb
    monkeypatch.setenv("KBNB_CACHE", str(tmp_path))
    path = organism.build_organism(_tiny(), progress=False)
    model, tok = kbnb.load_model(str(path), device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.chat_template and tok.padding_side == "left"
    prompt = kbnb.format_prompt(tok, "Where was X born?")
    assert prompt.startswith("<|user|> Where was X born?") and prompt.endswith("<|assistant|>")


def test_training_does_not_depend_on_the_thread_count(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        organism.train_organism(_tiny(), tmp_path / "one", progress=False)
        torch.set_num_threads(2)
        organism.train_organism(_tiny(), tmp_path / "two", progress=False)
    finally:
        torch.set_num_threads(n)
    one, two = (organism.weights_digest(AutoModelForCausalLM.from_pretrained(tmp_path / x))
                for x in ("one", "two"))
    assert one == two


def test_cache_key_covers_the_recipe_code(monkeypatch):
    key = _tiny().key()
    monkeypatch.setattr(organism.model, "_recipe_digest", lambda: b"other code")
    assert _tiny().key() != key


def test_organism_names_pick_the_seed():
    assert organism.parse_organism_name("tinyworld") == OrganismConfig()
    assert organism.parse_organism_name("tinyworld:2").seed == 2
    assert organism.parse_organism_name("kbnb/tinyworld:1").seed == 1
    assert organism.parse_organism_name("gpt2") is None
    with pytest.raises(ValueError, match="tinyworld:x"):
        organism.parse_organism_name("tinyworld:x")
    assert organism.world_for("tinyworld:1").seed == 1
    assert organism.world_for("some/hub-model").seed == 0


def test_default_organism_meets_its_targets(organism, world):
    """The organism the book uses: deep, knows what it saw (also when asked in words it
    never saw), not what it did not, and more the more often it saw it."""
    model, tok = organism
    from kbnb import organism as org
    from kbnb.lm.activations import n_layers
    assert n_layers(model) >= 24
    rows = boundary.probe_knowledge(model, tok, world, progress=False)
    refusals = boundary.probe_refusals(model, tok, world, progress=False)
    log = org.training_log(org.organism_path())
    m = boundary.knowledge_metrics(rows, refusals, world, log)
    checks = boundary.check_targets(m)
    timing = next(k for k in checks if k.startswith("trains in"))  # speed: benchmarks/
    assert all(ok for k, ok in checks.items() if k != timing), (checks, m)


def test_retain_organism_names_and_keys():
    c = organism.parse_organism_name("tinyworld:0:retain=forget10")
    assert c == OrganismConfig(retain="forget10")
    assert organism.parse_organism_name("tinyworld:retain=forget05").retain == "forget05"
    assert organism.parse_organism_name("tinyworld:2:retain=forget01").seed == 2
    with pytest.raises(ValueError, match="forget01, forget05, forget10"):
        organism.parse_organism_name("tinyworld:0:retain=forget7")
    keys = {OrganismConfig(retain=s).key() for s in ("", "forget01", "forget05", "forget10")}
    assert len(keys) == 4
    assert "retain-forget10" in organism.organism_path(c).name
    assert organism.retain_organism_name("tinyworld:3", "forget05") == "tinyworld:3:retain=forget05"
    with pytest.raises(ValueError, match="not the organism"):
        organism.retain_organism_name("gpt2")


def test_retain_organism_trains_without_the_forget_authors(tmp_path):
    from dataclasses import replace
    cfg = replace(_tiny(), retain="forget10")
    log = organism.train_organism(cfg, tmp_path / "r", progress=False)
    full = organism.train_organism(_tiny(), tmp_path / "f", progress=False)
    assert log["n_sequences"] < full["n_sequences"]
    assert (tmp_path / "r" / "tokenizer.json").read_text() == \
        (tmp_path / "f" / "tokenizer.json").read_text()  # the organism's tokenizer
