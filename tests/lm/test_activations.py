import pytest
import torch

from kbnb import format_prompt
from kbnb.lm.activations import (
    capture,
    check_layer,
    get_layers,
    get_module,
    mlp_out_name,
    n_layers,
    record_output,
    skip,
    steer,
)


def test_capture_all_layers_in_one_pass_matches_hidden_states_path(organism, world):
    model, tok = organism
    qs = [format_prompt(tok, r["question"]) for r in world.rows()[:5]]
    acts = capture(model, tok, qs, module="block", position="last", batch_size=2)
    assert acts.shape == (n_layers(model), 5, model.config.hidden_size)
    with torch.no_grad():
        enc = tok(qs, return_tensors="pt", padding=True, add_special_tokens=False)
        hs = model(**enc, output_hidden_states=True).hidden_states
    # hidden_states[l+1] is the output of block l (the last one after the final norm)
    for l in range(n_layers(model) - 1):
        assert torch.allclose(acts[l], hs[l + 1][:, -1].float(), atol=1e-4)


def test_mean_over_prompt_ignores_padding(organism, world):
    model, tok = organism
    qs = [format_prompt(tok, "Hi?"), format_prompt(tok, world.rows()[0]["question"])]
    batched = capture(model, tok, qs, layers=[0, 5], position="mean", batch_size=2)
    alone = torch.cat([capture(model, tok, [q], layers=[0, 5], position="mean") for q in qs], 1)
    assert torch.allclose(batched, alone, atol=1e-4)
    full = capture(model, tok, qs, layers=[0, 5], position="all", batch_size=2)
    assert full[0].shape[1] == len(tok(qs[0], add_special_tokens=False)["input_ids"])
    assert torch.allclose(full[1].mean(1), batched[:, 1], atol=1e-5)


def test_steer_adds_only_at_prompt_positions(organism):
    model, tok = organism
    layer, d = 3, model.config.hidden_size
    v = torch.randn(d)
    seen = []
    h = get_module(model, layer + 1, "block").register_forward_pre_hook(
        lambda m, args: seen.append(args[0].detach().clone()))
    prompt = tok([format_prompt(tok, "Where was Ama Lorven born?")], return_tensors="pt",
                 add_special_tokens=False)
    one = {"input_ids": prompt["input_ids"][:, -1:]}
    try:
        with torch.no_grad():
            model(**prompt), model(**one)
            plain_prompt, plain_one = seen[0], seen[1]
            seen.clear()
            with steer(model, layer, v):
                model(**prompt), model(**one)  # a prefill, then a one-token (generation) step
            steered_prompt, steered_one = seen[0], seen[1]
            with steer(model, layer, -v):  # reverse direction
                model(**prompt)
            reversed_prompt = seen[2]
    finally:
        h.remove()
    assert torch.allclose(steered_prompt - plain_prompt, v.expand_as(plain_prompt), atol=1e-4)
    assert torch.allclose(reversed_prompt - plain_prompt, -v.expand_as(plain_prompt), atol=1e-4)
    assert torch.equal(steered_one, plain_one)


def test_layer_errors_name_the_range(organism):
    model, _ = organism
    L = n_layers(model)
    with pytest.raises(ValueError, match=rf"layer=40 but the model has {L} layers \(0–{L - 1}\)"):
        check_layer(model, 40)
    assert mlp_out_name(model) == "mlp.down_proj"


def test_steer_last_only_changes_only_the_last_prompt_position(organism):
    model, tok = organism
    layer, v = 5, torch.randn(model.config.hidden_size)
    seen = []
    h = get_module(model, layer + 1, "block").register_forward_pre_hook(
        lambda m, args: seen.append(args[0].detach().clone()))
    enc = tok([format_prompt(tok, "Where was Ama Lorven born?")], return_tensors="pt",
              add_special_tokens=False)
    try:
        with torch.no_grad():
            model(**enc)
            with steer(model, layer, v, last_only=True):
                model(**enc)
                model(input_ids=enc["input_ids"][:, -1:])  # a generated token: untouched
            model(input_ids=enc["input_ids"][:, -1:])
    finally:
        h.remove()
    diff = seen[1] - seen[0]
    assert torch.allclose(diff[0, -1], v, atol=1e-4)
    assert diff[0, :-1].abs().max() < 1e-6
    assert torch.equal(seen[2], seen[3])


def test_record_output_keeps_the_gradient_and_equals_capture(organism, world):
    model, tok = organism
    qs = [format_prompt(tok, r["question"]) for r in world.rows()[:2]]
    enc = tok(qs, return_tensors="pt", padding=True, add_special_tokens=False)
    hooks = dict(get_layers(model)[3]._forward_hooks)  # transformers' own, if any
    with record_output(model, 3) as rec:
        model(**enc)
    x = rec["output"]
    assert x.requires_grad and x.shape[:2] == enc["input_ids"].shape
    with torch.no_grad(), record_output(model, 3) as rec:
        model(**enc)
    assert not rec["output"].requires_grad
    ref = capture(model, tok, qs, layers=[3], module="block", position="last")
    assert torch.allclose(x.detach()[:, -1].float(), ref[0], atol=1e-5)
    assert dict(get_layers(model)[3]._forward_hooks) == hooks  # ours removed on exit


def test_skip_removes_the_mlp_or_the_block_and_its_hooks(organism, world):
    model, tok = organism
    qs = [format_prompt(tok, world.rows()[0]["question"])]
    out = lambda: capture(model, tok, qs, layers=[4], module="block", position="all")[0]
    inp = lambda: capture(model, tok, qs, layers=[4], module="block", kind="input",
                          position="all")[0]
    mlp = lambda: capture(model, tok, qs, layers=[4], position="all")[0]
    own = lambda: (dict(get_module(model, 4)._forward_hooks),
                   dict(get_layers(model)[4]._forward_hooks))  # transformers' own, if any
    before = own()
    with skip(model, 4):
        assert mlp().abs().max() == 0
    with skip(model, [4], "block"):
        torch.testing.assert_close(out(), inp())
    assert mlp().abs().max() > 0 and (out() - inp()).abs().max() > 0
    assert own() == before  # ours removed on exit
