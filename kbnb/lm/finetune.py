"""Supervised fine-tuning on (prompt, completion) pairs: full or LoRA, any causal LM.

The loop runs on Hugging Face ``accelerate``: the model, optimiser and data loader go
through ``Accelerator.prepare`` and the backward pass through
``accelerator.backward``, so the same code trains on one CPU or GPU, or on several
GPUs when started with ``accelerate launch`` (data-parallel; each process takes its
share of the batches). On a single process the model stays on the device(s) it was
loaded on (``device_map`` included).

Memory. A step whose padded batch (rows x longest example) is longer than ``max_tokens``
positions is split into micro-batches of rows, each at most ``max_tokens`` positions
(one example always fits), whose gradients are accumulated before the one optimiser
step, so the effective batch, the learning-rate schedule and the loss (the mean over
all completion tokens of the step) are those of the whole batch; only the float
summation order differs. On those long steps the output head runs only on the
positions from the first completion token's predecessor on (``logits_to_keep``; the
prompt's logits, ``[rows, T, vocab]``, are never made), and with
``gradient_checkpointing="auto"`` the layers' activations are recomputed in the
backward pass. Steps within the budget (every step of the organism's short prompts)
run exactly as before: one forward with the labels, the model's own loss.

Unlearning trains through its own loop (:func:`kbnb.unlearning.loop.train_copy`, whose
docstring says why the two loops take different steps)."""
from __future__ import annotations

import copy
import inspect
import math
import random
import warnings

import torch
from tqdm.auto import tqdm

from kbnb.lm.batching import token_batches
from kbnb.lm.encoding import encode_batch, encode_prompt, encode_text, model_inputs

GRADIENT_CHECKPOINTING = ("auto", True, False)
AUTOCAST = (None, "bfloat16")


class _SeededOrder(torch.utils.data.Sampler):
    """Example indices in a new seeded shuffle each epoch: one list shuffled in place
    by ``random.Random(seed)`` at the start of every epoch. With ``lengths``, the
    shuffled list is cut into mega-batches of ``group`` examples, each sorted by length
    (longest first), so that a batch holds examples of similar length and little
    padding (the length-grouped order of Hugging Face's ``group_by_length``)."""

    def __init__(self, n: int, seed: int, lengths=None, group: int = 0):
        self.n, self.rng, self.idx = n, random.Random(seed), list(range(n))
        self.lengths, self.group = lengths, group

    def __iter__(self):
        self.rng.shuffle(self.idx)
        order = list(self.idx)
        if self.lengths is not None:
            order = [i for s in range(0, self.n, self.group)
                     for i in sorted(order[s:s + self.group], key=lambda i: -self.lengths[i])]
        return iter(order)

    def __len__(self):
        return self.n


def lora_target_modules(model) -> list[str] | str:
    """LoRA targets: peft's ``"all-linear"`` (every ``nn.Linear`` and GPT-2 ``Conv1D``
    in the model except the output head)."""
    return "all-linear"


def _check(name, value, ok, allowed):
    if not ok:
        raise ValueError(f"{name}={value!r}: {allowed}")


def micro_batches(batch: dict, max_tokens: int) -> list[dict]:
    """``batch`` (an :func:`kbnb.lm.encoding.encode_batch` batch, left-padded) as a list
    of row slices within ``max_tokens`` padded positions each
    (:func:`kbnb.lm.batching.token_batches`, at least one row), each with the columns
    that are padding in all of its rows cut off. ``[batch]`` itself when it fits."""
    B, T = batch["input_ids"].shape
    if B * T <= max_tokens:
        return [batch]
    out = []
    for g in token_batches([T] * B, B, max_tokens):
        part = {k: v[g.start:g.stop] for k, v in batch.items()}
        real = part["attention_mask"].any(0).nonzero()
        start = int(real.min()) if len(real) else 0
        out.append({k: v[:, start:] for k, v in part.items()})
    return out


def _takes_logits_to_keep(model) -> bool:
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    base = getattr(base, "module", base)
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def micro_batch_loss(m, batch: dict, n_total: int, tail: bool):
    """The summed cross-entropy of ``batch``'s completion tokens divided by
    ``n_total`` (the completion tokens of the whole step), so that the micro-batches'
    losses add up to the step's mean loss. ``tail``: run the head only on the positions
    from the one before the first completion token on (``logits_to_keep``)."""
    labels = batch["labels"]
    T = labels.shape[1]
    if not tail:
        n = int((labels[:, 1:] != -100).sum())
        return m(**model_inputs(m, batch, labels=True)).loss * (n / n_total)
    cols = (labels != -100).any(0).nonzero()
    if not len(cols):  # no completion token in these rows
        return None
    K = T - int(cols.min()) + 1  # the first completion token's predecessor on
    K = min(K, T)
    logits = m(**model_inputs(m, batch), use_cache=False, logits_to_keep=K).logits.float()
    tgt = labels[:, T - K + 1:].to(logits.device)
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
        reduction="sum") / n_total


EMULATED_BF16 = (
    "autocast='bfloat16' on a CPU without native bfloat16 (torch sees "
    "{cap}; oneDNN has no bfloat16 kernels here): the products are emulated, about 24x "
    "slower than float32 on a 2-core AVX2 CPU (measured: one MLP step), and a tuned "
    "SmolLM2 then takes hours per epoch. Pass autocast=None ('none' in a chapter) for "
    "float32 (a different rounding: not the same model or numbers), or run on a CPU with "
    "AVX-512 or a GPU.")


def bfloat16_native_on_cpu() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (oneDNN's bfloat16 kernels:
    AVX-512 or AMX); False on an AVX2-only CPU, where torch emulates them."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the query: judge by the ISA
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def finetune(model, tok, prompts, completions, epochs: int = 3, lr: float = 1e-4,
             batch_size: int = 16, lora: bool = False, lora_r: int = 8, seed: int = 0,
             weight_decay: float = 0.0, copy_model: bool = True, progress: bool = True,
             desc: str = "fine-tuning", max_tokens: int | None = None,
             gradient_checkpointing="auto", autocast: str | None = None,
             group_by_length: bool = False):
    """Train on the completion tokens only (prompt tokens are masked).

    ``copy_model`` leaves the given model untouched and tunes a deep copy. With
    ``lora`` the base weights are frozen and rank-``lora_r`` adapters (peft,
    ``target_modules="all-linear"``) are trained, then merged. AdamW, linear warm-up
    over the first tenth of the steps then linear decay, gradients clipped to norm 1,
    through ``accelerate`` (see the module docstring). Deterministic given ``seed`` on
    CPU. Returns ``(tuned_model, losses)`` with one loss per step.

    ``max_tokens``: a step longer than this many padded positions is split into
    micro-batches with accumulated gradients (same effective batch; see the module
    docstring); None: never split (e.g. :data:`kbnb.lm.batching.TRAIN_MAX_TOKENS`).
    ``gradient_checkpointing``: ``"auto"`` (on when some step may be split), True or
    False. ``autocast``: None (the weights' dtype) or ``"bfloat16"`` (mixed precision:
    float32 weights and optimiser, bfloat16 matrix products; about 1.8x the tokens per
    second of float32 on a 2-core AVX-512 CPU for SmolLM2-135M, but emulated and many
    times slower on a CPU without it: :data:`EMULATED_BF16` is warned then). ``group_by_length``: batches of
    examples of similar length (shuffled in mega-batches of 8 batches, each sorted by
    length), less padding for examples of mixed lengths."""
    from accelerate import Accelerator

    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if not prompts:
        raise ValueError("no training examples")
    _check("epochs", epochs, isinstance(epochs, int) and epochs >= 1, "must be an integer >= 1")
    _check("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1,
           "must be an integer >= 1")
    _check("lr", lr, isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr), "must be > 0")
    _check("weight_decay", weight_decay, weight_decay >= 0, "must be >= 0")
    _check("max_tokens", max_tokens,
           max_tokens is None or (isinstance(max_tokens, int) and max_tokens >= 1),
           "must be None or an integer >= 1")
    _check("gradient_checkpointing", gradient_checkpointing,
           any(gradient_checkpointing is g for g in GRADIENT_CHECKPOINTING), "auto, True or False")
    _check("autocast", autocast, autocast in AUTOCAST, f"allowed {', '.join(map(repr, AUTOCAST))}")
    if lora:
        _check("lora_r", lora_r, isinstance(lora_r, int) and lora_r >= 1, "must be an integer >= 1")
    prompts, completions = list(prompts), list(completions)
    # an upper bound of a step's padded positions: the longest example x the batch
    lengths = [len(encode_prompt(tok, p)) + len(encode_text(tok, c))
               for p, c in zip(prompts, completions)]
    longest = max(lengths)
    long_steps = max_tokens is not None and min(batch_size, len(prompts)) * longest > max_tokens
    checkpoint = long_steps if gradient_checkpointing == "auto" else gradient_checkpointing
    torch.manual_seed(seed)
    m = copy.deepcopy(model) if copy_model else model
    if checkpoint and getattr(m, "supports_gradient_checkpointing", False):
        if hasattr(m, "activation_checkpointing_enable"):  # transformers >= 5.24
            m.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        checkpoint = False
    if lora:
        from peft import LoraConfig, get_peft_model
        m = get_peft_model(m, LoraConfig(r=lora_r, lora_alpha=2 * lora_r,
                                         target_modules=lora_target_modules(m),
                                         lora_dropout=0.0, task_type="CAUSAL_LM"))
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    order = _SeededOrder(len(prompts), seed, lengths if group_by_length else None,
                         8 * batch_size)
    loader = torch.utils.data.DataLoader(
        list(range(len(prompts))), batch_size=batch_size, sampler=order,
        collate_fn=lambda b: encode_batch(tok, [prompts[i] for i in b], [completions[i] for i in b]))
    acc = Accelerator()
    if acc.num_processes == 1:
        # one process: train where the model already is (its device, or its device_map)
        acc = Accelerator(device_placement=False)
    m, opt, loader = acc.prepare(m, opt, loader)
    steps = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps) + 1e-3)
    losses = []
    bar = tqdm(total=steps, desc=desc, disable=not progress or not acc.is_local_main_process)
    tail = _takes_logits_to_keep(m)
    dev_type = next(m.parameters()).device.type
    if autocast == "bfloat16" and dev_type == "cpu" and not bfloat16_native_on_cpu():
        warnings.warn(EMULATED_BF16.format(cap=torch.backends.cpu.get_cpu_capability()),
                      stacklevel=2)

    def mixed():
        return torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast == "bfloat16")

    for _ in range(epochs):
        for batch in loader:
            parts = [batch] if max_tokens is None else micro_batches(batch, max_tokens)
            if len(parts) == 1:  # the step fits: one pass, the model's own loss
                with mixed():
                    loss = m(**model_inputs(m, batch, labels=True)).loss
                acc.backward(loss)
            else:
                n_total = max(1, int((batch["labels"][:, 1:] != -100).sum()))
                loss = 0.0
                for part in parts:
                    with mixed():
                        part_loss = micro_batch_loss(m, part, n_total, tail)
                    if part_loss is not None:
                        acc.backward(part_loss)
                        loss = loss + part_loss.detach()
                loss = torch.as_tensor(loss)
            acc.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    m = acc.unwrap_model(m)
    if checkpoint:  # transformers 5.24 renamed it activation_checkpointing_disable
        getattr(m, "activation_checkpointing_disable", m.gradient_checkpointing_disable)()
    if lora:
        m = m.merge_and_unload()
    m.eval()
    return m, losses
