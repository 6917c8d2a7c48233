"""Batched generation and scoring for any causal LM (left padding throughout)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kbnb.lm.batching import SCORE_MAX_TOKENS, logits_max_tokens, token_batches
from kbnb.lm.encoding import (
    encode_batch,
    encode_prompt,
    encode_text,
    last_logits_only,
    model_inputs,
)


def _batched(seq, n):
    for i in range(0, len(seq), n):
        yield i, seq[i:i + n]


def _encode(tok, prompts, model):
    """Left-padded prompts (BOS once, ``position_ids``) as forward-pass arguments."""
    return model_inputs(model, encode_batch(tok, prompts))


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r}: must be an integer >= 1")


@torch.no_grad()
def generate(model, tok, prompts, max_new_tokens: int = 32, batch_size: int = 32,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             num_samples: int = 1, progress: bool = True, desc: str = "generating"):
    """Continue each prompt. Prompts are full strings (already formatted).

    Returns ``list[str]`` (``num_samples == 1``) or ``list[list[str]]`` of
    ``num_samples`` samples per prompt, generated in one batched call per batch
    (the prompt is repeated ``num_samples`` times inside the batch)."""
    _check_positive("batch_size", batch_size)
    _check_positive("num_samples", num_samples)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}: must be an integer >= 0")
    if do_sample and not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0 when sampling")
    if do_sample and not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p!r}: must be in (0, 1]")
    if num_samples > 1 and not do_sample:
        raise ValueError("num_samples > 1 needs do_sample=True (greedy samples are identical)")
    outs = []
    per_batch = max(1, batch_size // num_samples)
    kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    if do_sample:
        kw.update(temperature=temperature, top_p=top_p, top_k=0,
                  num_return_sequences=num_samples)
    else:
        kw.update(temperature=None, top_p=None, top_k=None)
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False)
    for _, chunk in _batched(list(prompts), per_batch):
        enc = _encode(tok, chunk, model)
        seqs = model.generate(**enc, **kw)
        texts = tok.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        texts = [t.strip() for t in texts]
        if num_samples > 1:
            outs += [texts[i * num_samples:(i + 1) * num_samples] for i in range(len(chunk))]
        else:
            outs += texts
        bar.update(len(chunk))
    bar.close()
    return outs


@torch.no_grad()
def response_logprobs(model, tok, prompts, responses, batch_size: int = 32,
                      reduce: str = "sum", progress: bool = False,
                      max_tokens: int | None = None) -> torch.Tensor:
    """log π(response | prompt) for each pair, shape ``[N]`` (float32, CPU).

    Prompt and response are tokenized separately and concatenated, so the response's
    tokens are exactly those the model would emit after the prompt. ``reduce``:
    ``sum`` (sequence log-probability) or ``mean`` (per token). Batches hold at most
    ``batch_size`` pairs and ``max_tokens`` padded positions (default
    :func:`kbnb.lm.batching.logits_max_tokens`: every position's logits are kept)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    _check_positive("batch_size", batch_size)
    max_tokens = logits_max_tokens(model) if max_tokens is None else max_tokens
    prompts, responses = list(prompts), list(responses)
    lengths = [len(encode_prompt(tok, p)) + len(encode_text(tok, r))
               for p, r in zip(prompts, responses)]
    out = []
    for g in tqdm(token_batches(lengths, batch_size, max_tokens), disable=not progress,
                  leave=False, desc="scoring"):
        batch = encode_batch(tok, [prompts[i] for i in g], [responses[i] for i in g])
        logits = model(**model_inputs(model, batch)).logits
        out.append(sequence_logprobs(logits, batch["labels"].to(logits.device),
                                     reduce).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def pack_prompt_response(tok, prompts, responses, device="cpu"):
    """Left-padded ``input_ids``, ``attention_mask`` and ``labels`` ([B, T] each) for
    prompt+response; labels are -100 everywhere except on the response tokens. The
    prompt gets the tokenizer's BOS once (:func:`kbnb.lm.encoding.encode_batch`, which
    also gives the ``position_ids`` to pass with them)."""
    b = encode_batch(tok, prompts, responses, device)
    return b["input_ids"], b["attention_mask"], b["labels"]


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, reduce: str = "sum"):
    """Sum (or mean) of log-probabilities of the labelled tokens.

    logits ``[B, T, V]`` at positions predicting t+1; labels ``[B, T]`` with -100 on
    ignored positions. Returns ``[B]``. Differentiable."""
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce={reduce!r}: allowed 'sum', 'mean'")
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    keep = labels != -100
    lp = torch.gather(F.log_softmax(logits, -1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    s = (lp * keep).sum(-1)
    return s / keep.sum(-1).clamp(min=1) if reduce == "mean" else s


@torch.no_grad()
def next_token_logits(model, tok, prompts, batch_size: int = 32, progress: bool = False,
                      max_tokens: int = SCORE_MAX_TOKENS):
    """Logits of the token after each prompt, ``[N, V]`` (float32, CPU): the head on the
    last position only, batches of at most ``batch_size`` prompts and ``max_tokens``
    padded positions (:func:`kbnb.lm.batching.token_batches`)."""
    _check_positive("batch_size", batch_size)
    prompts = list(prompts)
    lengths = [len(encode_prompt(tok, p)) for p in prompts]
    out = []
    for g in tqdm(token_batches(lengths, batch_size, max_tokens), disable=not progress,
                  leave=False, desc="scoring"):
        enc = _encode(tok, [prompts[i] for i in g], model)
        logits = model(**enc, use_cache=False, **last_logits_only(model)).logits
        out.append(logits[:, -1].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def candidate_token_ids(tok, candidates) -> list[list[int]]:
    """For each candidate string (e.g. "A"), the ids of the single tokens that spell it
    with or without a leading space ("A", " A", "▁A"). Works for BPE, byte-level and
    SentencePiece tokenizers; raises if a candidate has no single-token spelling."""
    out = []
    for c in candidates:
        ids = set()
        for variant in (c, " " + c):
            enc = encode_text(tok, variant)
            if len(enc) == 1:
                ids.add(enc[0])
            # SentencePiece tokenizers prepend '▁': take the token that decodes to c
            for i in enc:
                if tok.decode([i]).strip() == c:
                    ids.add(i)
        if not ids:
            raise ValueError(f"candidate {c!r} is not a single token in this tokenizer")
        out.append(sorted(ids))
    return out


@torch.no_grad()
def next_token_probs(model, tok, prompts, candidates, batch_size: int = 32,
                     progress: bool = False) -> torch.Tensor:
    """Softmax over the candidates only, ``[N, C]``: each candidate's logit is the
    log-sum-exp of the logits of its spellings (see ``candidate_token_ids``)."""
    ids = candidate_token_ids(tok, candidates)
    logits = next_token_logits(model, tok, prompts, batch_size, progress)
    cand = torch.stack([torch.logsumexp(logits[:, i], -1) for i in ids], -1)
    return torch.softmax(cand, -1)
