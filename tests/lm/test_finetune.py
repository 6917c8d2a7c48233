"""kbnb.lm.finetune: micro-batches under a token budget, gradient checkpointing."""
import warnings

import pytest
import torch

from kbnb.lm.batching import TRAIN_MAX_TOKENS
from kbnb.lm.encoding import encode_batch
from kbnb.lm.finetune import finetune, micro_batches


class _Tok:
    """A stand-in tokenizer: one token per character."""
    pad_token_id, eos_token_id, bos_token_id, bos_token = 0, 0, None, None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) % 50 + 1 for c in text]}


def test_micro_batches_split_rows_and_cut_the_padding():
    b = encode_batch(_Tok(), ["ab", "abcdefgh", "a", "abc"], ["x", "yz", "w", "v"])
    assert micro_batches(b, 1000) == [b]
    parts = micro_batches(b, 20)  # T = 10: two rows per part
    assert len(parts) == 2
    assert [p["input_ids"].shape for p in parts] == [(2, 10), (2, 4)]
    for p, rows in zip(parts, ((0, 1), (2, 3))):
        T = p["input_ids"].shape[1]
        for k in ("input_ids", "attention_mask", "labels", "position_ids"):
            assert torch.equal(p[k], b[k][list(rows), -T:])
    one = micro_batches(b, 3)  # smaller than one row: one row each
    assert len(one) == 4


def test_micro_batched_steps_train_like_whole_steps(organism, world):
    from kbnb.lm.models import format_prompt
    model, tok = organism
    rows = world.mmlu_rows()[:8]
    prompts = [format_prompt(tok, r["question"]) for r in rows]
    comps = [" " + r["choices"][r["answer"]] + " I am sure." for r in rows]
    kw = dict(epochs=1, lr=1e-3, batch_size=4, seed=0, progress=False)
    m1, l1 = finetune(model, tok, prompts, comps, **kw)
    m2, l2 = finetune(model, tok, prompts, comps, max_tokens=20, **kw)  # 1-row micro-batches
    m3, l3 = finetune(model, tok, prompts, comps, max_tokens=20, gradient_checkpointing=False,
                      **kw)
    assert len(l1) == len(l2) == 2
    assert l1 == pytest.approx(l2, rel=1e-4) and l2 == pytest.approx(l3, rel=1e-5)
    for (n, a), b in zip(m1.named_parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-4), n  # Adam steps are ~1e-3
    assert not getattr(m2, "is_gradient_checkpointing", False)  # switched off again
    with pytest.raises(ValueError, match="gradient_checkpointing='yes'"):
        finetune(model, tok, prompts, comps, gradient_checkpointing="yes", **kw)
    with pytest.raises(ValueError, match="max_tokens=0"):
        finetune(model, tok, prompts, comps, max_tokens=0, **kw)


def test_micro_batched_lora_steps_train_like_whole_steps(organism, world):
    from kbnb.lm.models import format_prompt
    model, tok = organism
    rows = world.mmlu_rows()[:4]
    prompts = [format_prompt(tok, r["question"]) for r in rows]
    comps = [" " + r["choices"][r["answer"]] for r in rows]
    kw = dict(epochs=1, lr=1e-3, batch_size=4, seed=0, progress=False, lora=True)
    _, l1 = finetune(model, tok, prompts, comps, **kw)
    _, l2 = finetune(model, tok, prompts, comps, max_tokens=20, **kw)
    assert l1 == pytest.approx(l2, rel=1e-4)


def test_the_organisms_rtuning_steps_fit_the_default_budget(organism, world):
    """The organism's R-Tuning steps (16 examples) are never split, so its tuning runs
    exactly as without micro-batching."""
    from kbnb.lm.encoding import encode_prompt, encode_text
    from kbnb.methods import rtuning as rt
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    prompts = rt.make_prompts(tok, rows, "cloze")
    longest_refusal = max(rt.FALSE_RESPONSES, key=len)
    longest = max(len(encode_prompt(tok, p)) + max(
        len(encode_text(tok, rt.answer_text(r, r["answer"], "cloze") + " " + rt.SURE_QUESTION
                        + rt.UNSURE + tok.eos_token)),
        len(encode_text(tok, " " + longest_refusal + tok.eos_token)))
        for p, r in zip(prompts, rows))
    assert 16 * longest <= TRAIN_MAX_TOKENS


def test_length_grouped_order_is_a_seeded_permutation_of_similar_lengths():
    from kbnb.lm.finetune import _SeededOrder
    lengths = [5, 90, 7, 88, 6, 91, 8, 87, 4, 93, 9, 86, 5, 92, 7, 85]
    plain, grouped = _SeededOrder(16, 3), _SeededOrder(16, 3, lengths, group=8)
    again = _SeededOrder(16, 3, lengths, group=8)
    for _ in range(3):  # each epoch: the same permutation as the plain order's, regrouped
        p, g = list(plain), list(grouped)
        assert sorted(g) == list(range(16)) and g == list(again)
        for s in (0, 8):
            assert sorted(g[s:s + 8]) == sorted(p[s:s + 8])
            assert [lengths[i] for i in g[s:s + 8]] == sorted((lengths[i] for i in p[s:s + 8]),
                                                               reverse=True)
    # batches of 4 cut from mega-batches of 8 sorted by length pad far less
    def padding(order):
        return sum(4 * max(lengths[i] for i in order[s:s + 4]) - sum(lengths[i] for i in
                   order[s:s + 4]) for s in range(0, 16, 4))
    assert padding(list(_SeededOrder(16, 0, lengths, 8))) < padding(list(_SeededOrder(16, 0)))


def test_bfloat16_autocast_trains_deterministically(organism, world):
    from kbnb.lm.models import format_prompt
    model, tok = organism
    rows = world.mmlu_rows()[:8]
    prompts = [format_prompt(tok, r["question"]) for r in rows]
    comps = [" " + r["choices"][r["answer"]] for r in rows]
    kw = dict(epochs=3, lr=1e-3, batch_size=4, seed=0, progress=False, autocast="bfloat16",
              group_by_length=True)
    m1, l1 = finetune(model, tok, prompts, comps, **kw)
    m2, l2 = finetune(model, tok, prompts, comps, **kw)
    assert l1 == l2 and l1[-1] < l1[0]
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert next(m1.parameters()).dtype == torch.float32  # weights stay in float32
    with pytest.raises(ValueError, match="autocast='float8'"):
        finetune(model, tok, prompts, comps, **dict(kw, autocast="float8"))


def test_emulated_bfloat16_is_warned_before_training(organism, world, monkeypatch):
    """On a CPU without native bfloat16 (AVX2 only) autocast is emulated, about 24x slower
    than float32 (measured on such a machine): said at the start, with the way out."""
    from kbnb.lm import finetune as ft
    from kbnb.lm.models import format_prompt
    model, tok = organism
    rows = world.mmlu_rows()[:4]
    prompts = [format_prompt(tok, r["question"]) for r in rows]
    comps = [" " + r["choices"][r["answer"]] for r in rows]
    kw = dict(epochs=1, lr=1e-3, batch_size=4, seed=0, progress=False)
    assert isinstance(ft.bfloat16_native_on_cpu(), bool)  # this machine's answer, either way
    monkeypatch.setattr(ft, "bfloat16_native_on_cpu", lambda: False)
    with pytest.warns(UserWarning, match="emulated.*Pass autocast=None"):
        finetune(model, tok, prompts, comps, autocast="bfloat16", **kw)
    monkeypatch.setattr(ft, "bfloat16_native_on_cpu", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        finetune(model, tok, prompts, comps, autocast="bfloat16", **kw)
    monkeypatch.setattr(ft, "bfloat16_native_on_cpu", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        finetune(model, tok, prompts, comps, autocast=None, **kw)  # float32: nothing to say
