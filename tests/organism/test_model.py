import pytest

from kbnb import organism
from kbnb.eval import boundary
from kbnb.organism.model import OrganismConfig


def _tiny(seed=0):
    return OrganismConfig(seed=seed, n_authors=20, n_layers=2, d_model=32, d_mlp=64,
                          epochs=6, vocab_size=300, warmup_steps=2)


# The weights a small organism of this recipe version learns, per CPU instruction set
# (torch.backends.cpu.get_cpu_capability(): float rounding differs between AVX-512 and
# AVX2 kernels, so the same seed learns other weights there). A change to world.py or to
# the training loop that changes them must bump OrganismConfig.version (the cache key)
# and then record the new digests here.
RECIPE_DIGEST = {(3, "AVX512"): "b7466c6a764692d2", (3, "AVX2"): "f7217dfdea21e274"}


@pytest.fixture(scope="module")
def tiny_built(tmp_path_factory):
    """``(cache, path)``: the small organism built once (trained, with the default loop on
    every core) in a cache of its own, shared by the tests that read or compare with it."""
    import os
    cache = tmp_path_factory.mktemp("tiny-cache")
    before = os.environ.get("KBNB_CACHE")
    os.environ["KBNB_CACHE"] = str(cache)
    try:
        path = organism.build_organism(_tiny(), progress=False)
    finally:
        if before is None:
            del os.environ["KBNB_CACHE"]
        else:
            os.environ["KBNB_CACHE"] = before
    return cache, path


def _digest(path):
    from transformers import AutoModelForCausalLM
    return organism.weights_digest(AutoModelForCausalLM.from_pretrained(path))


def test_same_seed_gives_the_same_model(tiny_built, tmp_path):
    a = tiny_built[1]
    b = organism.train_organism(_tiny(), tmp_path / "b", progress=False)
    organism.train_organism(_tiny(seed=1), tmp_path / "c", progress=False)
    assert organism.training_log(a)["losses"] == b["losses"]
    da, db, dc = _digest(a), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert da == db != dc
    import torch
    version, isa = OrganismConfig().version, torch.backends.cpu.get_cpu_capability()
    assert any(v == version for v, _ in RECIPE_DIGEST), (
        f"recipe version {version} has no digest: record {da} for {isa} in RECIPE_DIGEST")
    if (version, isa) in RECIPE_DIGEST:  # an instruction set not recorded: determinism only
        assert RECIPE_DIGEST[(version, isa)] == da, (
            f"recipe version {version} now learns weights {da} on {isa}: if the recipe "
            "changed on purpose, bump OrganismConfig.version and record the digests in "
            "RECIPE_DIGEST")


def test_cache_is_keyed_and_reused(tiny_built, monkeypatch):
    cache, built = tiny_built
    monkeypatch.setenv("KBNB_CACHE", str(cache))
    path = organism.organism_path(_tiny())
    assert path == built and path.parent == cache
    assert {"config.json", "model.safetensors", "tokenizer.json", "kbnb_organism.json"} <= \
        {p.name for p in path.iterdir()}
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert organism.build_organism(_tiny(), progress=False) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert organism.organism_path(_tiny(seed=1)) != path


def test_loads_like_any_hub_model(tiny_built):
    import kbnb
    model, tok = kbnb.load_model(str(tiny_built[1]), device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.chat_template and tok.padding_side == "left"
    prompt = kbnb.format_prompt(tok, "Where was X born?")
    assert prompt.startswith("<|user|> Where was X born?") and prompt.endswith("<|assistant|>")


def test_training_does_not_depend_on_the_thread_count(tiny_built, tmp_path):
    """The recipe trains on one thread whatever torch's setting, and gives it back; with
    every core kept (``threads="fixed"``) the small organism learns the same weights."""
    import torch

    from kbnb.organism.model import TrainLoop
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        log = organism.train_organism(_tiny(), tmp_path / "one", progress=False)
        assert log["threads"] == 1 and torch.get_num_threads() == 2
        organism.train_organism(_tiny(), tmp_path / "two", progress=False,
                                loop=TrainLoop(threads="fixed"))
    finally:
        torch.set_num_threads(n)
    assert _digest(tmp_path / "one") == _digest(tiny_built[1]) == _digest(tmp_path / "two")


def test_cache_key_is_the_recipe_not_the_source_bytes(tmp_path):
    """A comment in world.py or model.py keeps the key; a new recipe version moves it."""
    import dataclasses
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    src = Path(organism.__file__).resolve().parents[1]
    shutil.copytree(src, tmp_path / "kbnb", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("world.py", "model.py"):
        with open(tmp_path / "kbnb" / "organism" / f, "a") as fh:
            fh.write("\n# a comment edit\n")
    code = "from kbnb.organism.model import OrganismConfig; print(OrganismConfig().key())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, check=True)
    assert out.stdout.strip() == OrganismConfig().key()
    assert dataclasses.replace(OrganismConfig(), version=4).key() != OrganismConfig().key()


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


def test_retain_organism_trains_without_the_forget_authors(tiny_built, tmp_path):
    from dataclasses import replace
    cfg = replace(_tiny(), retain="forget10")
    log = organism.train_organism(cfg, tmp_path / "r", progress=False)
    full = organism.training_log(tiny_built[1])
    assert log["n_sequences"] < full["n_sequences"]
    assert (tmp_path / "r" / "tokenizer.json").read_text() == \
        (tiny_built[1] / "tokenizer.json").read_text()  # the organism's tokenizer


def _tiny_batch():
    """A tiny Llama and a right-padded batch with prompt positions unlabelled."""
    import random

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2,
                                         num_key_value_heads=2, tie_word_embeddings=True))
    encoded = [([3, 4, 5, 6, 7], [-100, -100, 5, 6, 7]), ([8, 9, 10], [-100, 9, 10]),
               ([11, 12, 13, 14], [11, 12, 13, 14])]
    chunk = organism.model._batch_indices(encoded, 3, random.Random(0))[0]
    ids, labels, mask = organism.model._collate([encoded[i] for i in chunk], 0)
    return model, ids, labels, mask


def test_the_fast_loss_is_hugging_faces_loss():
    """No attention mask for right padding and the head on labelled positions only give
    the loss (and gradients) of the model's own masked loss over every position."""
    import torch

    from kbnb.organism.model import TrainLoop, _loss
    model, ids, labels, mask = _tiny_batch()
    assert (mask == 0).any()  # the batch is padded
    reference = _loss(model, ids, labels, mask, TrainLoop(attention_mask=True, loss_on="all"))
    reference.backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    fast = _loss(model, ids, labels, mask, TrainLoop())  # the recipe's loop
    fast.backward()
    assert torch.allclose(fast, reference, atol=1e-6)
    for p, g in zip(model.parameters(), ref_grads):
        assert torch.allclose(p.grad, g, atol=1e-6)


def test_batches_cover_each_sequence_once_and_biographies_get_their_own():
    import random
    rng = random.Random(0)
    lengths = [rng.randrange(10, 31) for _ in range(600)] + [rng.randrange(70, 90) for _ in range(40)]
    encoded = [([1] * n, [1] * n) for n in lengths]
    padded = {}
    for mode in ("pooled", "pooled-split", "sorted"):
        chunks = organism.model._batch_indices(encoded, 64, random.Random(1), mode)
        assert sorted(i for c in chunks for i in c) == list(range(len(encoded)))
        assert all(len(c) <= 64 for c in chunks)
        padded[mode] = sum(len(c) * max(lengths[i] for i in c) for c in chunks)
        mixed = [c for c in chunks if min(lengths[i] for i in c) < 40 < max(lengths[i] for i in c)]
        if mode != "sorted":  # sorted: at most the one batch where the lengths cross over
            assert (not mixed) == (mode == "pooled-split"), mode
    assert max(padded["sorted"], padded["pooled-split"]) < padded["pooled"]
    with pytest.raises(ValueError, match="batching='bucket'"):
        organism.model._batch_indices(encoded, 64, random.Random(1), "bucket")


def test_thread_choice_follows_the_faster_count(monkeypatch):
    """Probe steps at every core and at 1 thread; 1 thread is kept only when clearly
    faster (another process holds a core), and the choice is revisited."""
    from kbnb.organism import model as m
    chooser = m._ThreadChooser(2, every=10, probe=2, first=2)
    clock = [0.0]
    monkeypatch.setattr(m.time, "perf_counter", lambda: clock[0])
    seconds = {2: 1.0, 1: 0.5}  # busy machine: 1 thread twice as fast
    chosen = []
    for step in range(22):
        if step == 12:
            seconds = {2: 0.5, 1: 0.8}  # quiet again
        chooser.before(step)
        chosen.append(chooser.current)
        clock[0] += seconds[chooser.current]
        chooser.after(step, 100)
    assert chosen[:6] == [2, 2, 2, 2, 1, 1]  # probes at steps 2-5
    assert chosen[6:12] == [1] * 6 and chosen[12:16] == [2, 2, 1, 1] and chosen[16:] == [2] * 6
    assert chooser.history == [[0, 2], [6, 1], [16, 2]]


def test_training_with_changing_thread_counts_gives_the_same_model(tiny_built, tmp_path):
    """Probing the thread counts every 6 steps gives the weights of the shared build."""
    from kbnb.organism.model import TrainLoop
    log = organism.train_organism(_tiny(), tmp_path / "switching", progress=False,
                                  loop=TrainLoop(threads="adaptive", probe_every=6))
    assert log["steps"] > 12
    assert _digest(tmp_path / "switching") == _digest(tiny_built[1])
