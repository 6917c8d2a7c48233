"""Token budgets: how many padded token positions one forward pass may hold.

Every batched pass in kbnb (scoring, last-token logits, fine-tuning steps) cuts its
items into consecutive batches by :func:`token_batches`: at most ``batch_size`` items,
and fewer when the batch's padded positions would pass a budget. Under the budget the
batches are exactly the plain ``batch_size`` slices, so a small model's numbers do not
depend on it; a long prompt or a large vocabulary makes the batch smaller instead of
running out of memory.

Budgets (padded positions, rows x longest item):

* :data:`SCORE_MAX_TOKENS` for passes that run the output head on the last position
  only (next-token logits, R-Tuning's continuation scoring);
* :func:`logits_max_tokens` for passes that keep every position's logits
  (``[B, T, V]``, e.g. :func:`kbnb.lm.generation.response_logprobs`): at most
  :data:`LOGITS_MAX_FLOATS` logits, so fewer positions for a larger vocabulary;
* :data:`TRAIN_MAX_TOKENS` for a fine-tuning step's micro-batches
  (:func:`kbnb.lm.finetune.micro_batches`).
"""
from __future__ import annotations

# Last-position passes: the organism's batches (64 prompts of < 20 tokens, up to 20
# continuations) never reach it; 64 5-shot MMLU prompts (~700 tokens each) are split in two.
SCORE_MAX_TOKENS = 32768
# Full-logit passes: 2**28 float32 logits (1 GiB). SmolLM2 (V = 49,152): 5,461 positions;
# the organism (V = 2,048): the positions budget binds, which its batches never reach.
LOGITS_MAX_FLOATS = 2 ** 28
# Fine-tuning: on SmolLM2-135M with 5-shot MMLU prompts (~600 tokens), LoRA, 4 examples
# per step: peak memory 9.0 GB unsplit, 2.4 GB at 1024.
TRAIN_MAX_TOKENS = 2048


def check_max_tokens(max_tokens) -> None:
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens!r}: must be an integer >= 1")


def vocab_size(model) -> int | None:
    """The output head's vocabulary size, or None when the model does not say."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return getattr(getattr(model, "config", None), "vocab_size", None)


def logits_max_tokens(model, max_tokens: int = SCORE_MAX_TOKENS) -> int:
    """The padded positions a pass that keeps all ``[B, T, V]`` logits may hold:
    ``min(max_tokens, LOGITS_MAX_FLOATS // V)``, at least 1."""
    check_max_tokens(max_tokens)
    v = vocab_size(model)
    return max_tokens if not v else max(1, min(max_tokens, LOGITS_MAX_FLOATS // v))


def token_batches(lengths, batch_size: int, max_tokens: int = SCORE_MAX_TOKENS,
                  per_row: int = 1) -> list[range]:
    """Consecutive index ranges over items of token ``lengths``: at most ``batch_size``
    items each, cut earlier when ``rows x longest x per_row`` (the padded positions of
    a left-padded batch, ``per_row`` rows per item) would pass ``max_tokens``, or
    ``rows x longest²`` (the attention scores per head) would pass ``max_tokens x
    1024`` (it binds only for items longer than 1024 tokens); one item always fits.
    With every batch under the budget these are exactly the ``batch_size`` slices
    ``range(s, s + batch_size)``."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
    check_max_tokens(max_tokens)
    out, start, longest = [], 0, 0
    for i, n in enumerate(lengths):
        grown = max(longest, n)
        rows = i - start + 1
        if i > start and (rows > batch_size or rows * grown * per_row > max_tokens
                          or rows * grown * grown > max_tokens * 1024):
            out.append(range(start, i))
            start, grown = i, n
        longest = grown
    if start < len(lengths):
        out.append(range(start, len(lengths)))
    return out
