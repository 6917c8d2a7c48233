"""Scoring with any causal LM: next-token logits of a batch (:func:`last_token_logits`) and
the log-probabilities of given continuations of given contexts
(:func:`continuation_logprobs`, one forward pass per context for all its continuations).

Used by R-Tuning (:mod:`kbnb.methods.rtuning`: cloze scoring of the options, P(sure));
the same numbers as :func:`kbnb.lm.generation.next_token_logits` and
:func:`kbnb.lm.generation.response_logprobs`, at a fraction of their memory and work.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from kbnb.lm.batching import SCORE_MAX_TOKENS, token_batches
from kbnb.lm.encoding import (
    accepts_position_ids,
    cache_argument,
    encode_batch,
    encode_prompt,
    encode_text,
    input_device,
    last_logits_only,
    model_inputs,
)


def prompt_lengths(tok, prompts) -> list[int]:
    """Token count of each prompt as encoded for a forward pass (BOS included), the
    lengths :func:`kbnb.lm.batching.token_batches` cuts batches by."""
    return [len(encode_prompt(tok, p)) for p in prompts]


def last_token_logits(model, tok, prompts) -> torch.Tensor:
    """Next-token logits after each prompt of one left-padded batch, ``[B, V]`` (float32,
    CPU), the head run on the last position only (:func:`kbnb.lm.encoding.last_logits_only`) and no
    key/value cache kept: the same numbers as
    :func:`kbnb.lm.generation.next_token_logits`, without its ``[B, T, V]`` logits."""
    enc = model_inputs(model, encode_batch(tok, prompts))
    with torch.no_grad():
        return model(**enc, use_cache=False, **last_logits_only(model)).logits[:, -1].float().cpu()


@torch.no_grad()
def continuation_logprobs(model, tok, contexts, continuations, batch_size: int = 32,
                          progress: bool = False, desc: str = "scoring",
                          max_tokens: int = SCORE_MAX_TOKENS) -> torch.Tensor:
    """``log π(c_ij | context_i)``, ``[N, C]`` (float32, CPU): the sum over the tokens of
    each continuation, tokenized apart from its context (the same numbers as
    :func:`kbnb.lm.generation.response_logprobs` on every pair).

    ``continuations`` is either one list of C strings shared by all contexts or one
    list of C strings per context. Each context is run once per batch; its key/value
    cache is repeated C times and only the continuation tokens are run again, so
    scoring C continuations costs about one forward pass instead of C. Batches hold at
    most ``batch_size`` contexts and about ``max_tokens`` padded positions
    (:func:`kbnb.lm.batching.token_batches`; the repeated cache counts C times when a continuation has
    more than one token); the head runs on the context's last position only."""
    per_context = bool(continuations) and not isinstance(continuations[0], str)
    if per_context and len(continuations) != len(contexts):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuation lists")
    cache_ids = {}

    def ids_of(c):
        if c not in cache_ids:
            cache_ids[c] = encode_text(tok, c)
            if not cache_ids[c]:
                raise ValueError(f"continuation {c!r} has no tokens")
        return cache_ids[c]

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
    C = len(continuations[0]) if per_context else len(continuations)
    if C == 0:
        raise ValueError("no continuations")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens!r}: must be an integer >= 1")
    dev = input_device(model)
    with_pos = accepts_position_ids(model)
    keep = last_logits_only(model)
    all_conts = [continuations[i] if per_context else continuations for i in range(len(contexts))]
    for cs in all_conts:
        if len(cs) != C:
            raise ValueError(f"every context needs the same number of continuations ({C})")
    multi = any(len(ids_of(c)) > 1 for cs in all_conts for c in cs)
    groups = token_batches(prompt_lengths(tok, contexts), batch_size, max_tokens,
                           per_row=C if multi else 1)
    out = []
    for g in tqdm(groups, disable=not progress, desc=desc, leave=False):
        chunk = [contexts[i] for i in g]
        conts = [all_conts[i] for i in g]
        toks = [[ids_of(c) for c in cs] for cs in conts]  # [B][C] token lists
        L = max(len(t) for ts in toks for t in ts)
        batch = encode_batch(tok, chunk)
        enc = model_inputs(model, batch)
        o = model(**enc, use_cache=L > 1, **keep)
        first = torch.log_softmax(o.logits[:, -1].float(), -1).cpu()  # [B, V]
        B = len(chunk)
        lp = torch.tensor([[first[b, t[0]].item() for t in toks[b]] for b in range(B)])
        if L > 1:
            cache = o.past_key_values
            cache.batch_repeat_interleave(C)  # row b*C + j = context b, continuation j
            ids = torch.full((B * C, L - 1), tok.pad_token_id, dtype=torch.long)
            tgt = torch.zeros((B * C, L - 1), dtype=torch.long)
            mask = torch.zeros((B * C, L - 1), dtype=enc["attention_mask"].dtype)
            for b in range(B):
                for j, t in enumerate(toks[b]):
                    ids[b * C + j, :len(t) - 1] = torch.tensor(t[:-1])
                    tgt[b * C + j, :len(t) - 1] = torch.tensor(t[1:])
                    mask[b * C + j, :len(t) - 1] = 1
            mask = mask.to(dev)
            full_mask = torch.cat([enc["attention_mask"].repeat_interleave(C, 0), mask], 1)
            kw = {}
            if with_pos:  # continue each context's positions after its last real token
                start = batch["attention_mask"].sum(-1).repeat_interleave(C, 0)  # [B*C]
                kw["position_ids"] = (start[:, None] + torch.arange(L - 1)).to(dev)
            kw[cache_argument(model)] = cache
            logits = model(input_ids=ids.to(dev), attention_mask=full_mask,
                           **kw).logits.float()  # [B*C, L-1, V]
            mask = mask.to(logits.device)
            tgt = tgt.to(logits.device)
            tok_lp = logits.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
            lp += (tok_lp * mask).sum(-1).view(B, C).cpu()
        out.append(lp)
    return torch.cat(out) if out else torch.zeros(0, C)
