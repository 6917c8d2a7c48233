"""Token budgets (kbnb.lm.batching): batches cut by padded positions, the same numbers
under any budget."""
import pytest
import torch

from kbnb.lm.batching import (
    LOGITS_MAX_FLOATS,
    SCORE_MAX_TOKENS,
    logits_max_tokens,
    token_batches,
)
from kbnb.lm.generation import next_token_logits, response_logprobs


def test_token_batches_are_the_plain_slices_under_the_budget_and_split_over_it():
    lengths = [10, 30, 20, 5, 40, 12, 7]
    plain = token_batches(lengths, 3, max_tokens=10_000)
    assert [list(r) for r in plain] == [[0, 1, 2], [3, 4, 5], [6]]
    tight = token_batches(lengths, 3, max_tokens=60)
    assert all(len(r) * max(lengths[i] for i in r) <= 60 or len(r) == 1 for r in tight)
    assert [i for r in tight for i in r] == list(range(7))  # order kept, nothing lost
    assert len(tight) > len(plain)
    assert [list(r) for r in token_batches([100, 100], 4, max_tokens=10)] == [[0], [1]]
    assert [list(r) for r in token_batches([5, 5, 5], 4, max_tokens=20, per_row=2)] == \
        [[0, 1], [2]]
    # long prompts: the attention scores (rows x T²) bind before the positions do
    assert [list(r) for r in token_batches([2000, 2000], 4, max_tokens=4096)] == [[0], [1]]
    assert [list(r) for r in token_batches([200, 200], 4, max_tokens=4096)] == [[0, 1]]
    with pytest.raises(ValueError, match="max_tokens=0"):
        token_batches(lengths, 3, max_tokens=0)


def test_full_logit_passes_get_fewer_positions_for_a_larger_vocabulary(organism):
    model, _ = organism
    v = model.get_output_embeddings().weight.shape[0]
    assert logits_max_tokens(model) == min(SCORE_MAX_TOKENS, LOGITS_MAX_FLOATS // v)
    assert logits_max_tokens(model, 100) == 100

    class Wide(torch.nn.Module):  # a SmolLM2-sized head
        def get_output_embeddings(self):
            return torch.nn.Linear(1, 49152, bias=False)
    assert logits_max_tokens(Wide()) == LOGITS_MAX_FLOATS // 49152 < SCORE_MAX_TOKENS
    with pytest.raises(ValueError, match="max_tokens=0"):
        logits_max_tokens(model, 0)


def test_scoring_under_a_tight_budget_gives_the_same_numbers(organism, world):
    """response_logprobs and next_token_logits cut their batches by the budget (here a
    few rows each) and return what the plain batches return."""
    from kbnb.lm.models import format_prompt
    model, tok = organism
    rows = world.rows()[:12]
    prompts = [format_prompt(tok, r["question"]) for r in rows]
    answers = [r["answer"] for r in rows]
    plain = response_logprobs(model, tok, prompts, answers, batch_size=12)
    tight = response_logprobs(model, tok, prompts, answers, batch_size=12, max_tokens=40)
    assert torch.allclose(plain, tight, atol=1e-4)
    lp = next_token_logits(model, tok, prompts, batch_size=12)
    lt = next_token_logits(model, tok, prompts, batch_size=12, max_tokens=40)
    assert torch.allclose(lp, lt, atol=1e-4)
