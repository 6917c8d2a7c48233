"""Supervised fine-tuning on (prompt, completion) pairs: full or LoRA, any causal LM.

The loop runs on Hugging Face ``accelerate``: the model, optimiser and data loader go
through ``Accelerator.prepare`` and the backward pass through
``accelerator.backward``, so the same code trains on one CPU or GPU, or on several
GPUs when started with ``accelerate launch`` (data-parallel; each process takes its
share of the batches). On a single process the model stays on the device(s) it was
loaded on (``device_map`` included)."""
from __future__ import annotations

import copy
import math
import random

import torch
from tqdm.auto import tqdm

from kbnb.lm.encoding import encode_batch, model_inputs


class _SeededOrder(torch.utils.data.Sampler):
    """Example indices in a new seeded shuffle each epoch: one list shuffled in place
    by ``random.Random(seed)`` at the start of every epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.rng, self.idx = n, random.Random(seed), list(range(n))

    def __iter__(self):
        self.rng.shuffle(self.idx)
        return iter(list(self.idx))

    def __len__(self):
        return self.n


def lora_target_modules(model) -> list[str] | str:
    """LoRA targets: peft's ``"all-linear"`` (every ``nn.Linear`` and GPT-2 ``Conv1D``
    in the model except the output head)."""
    return "all-linear"


def _check(name, value, ok, allowed):
    if not ok:
        raise ValueError(f"{name}={value!r}: {allowed}")


def finetune(model, tok, prompts, completions, epochs: int = 3, lr: float = 1e-4,
             batch_size: int = 16, lora: bool = False, lora_r: int = 8, seed: int = 0,
             weight_decay: float = 0.0, copy_model: bool = True, progress: bool = True,
             desc: str = "fine-tuning"):
    """Train on the completion tokens only (prompt tokens are masked).

    ``copy_model`` leaves the given model untouched and tunes a deep copy. With
    ``lora`` the base weights are frozen and rank-``lora_r`` adapters (peft,
    ``target_modules="all-linear"``) are trained, then merged. AdamW, linear warm-up
    over the first tenth of the steps then linear decay, gradients clipped to norm 1,
    through ``accelerate`` (see the module docstring). Deterministic given ``seed`` on
    CPU. Returns ``(tuned_model, losses)`` with one loss per step."""
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
    if lora:
        _check("lora_r", lora_r, isinstance(lora_r, int) and lora_r >= 1, "must be an integer >= 1")
    torch.manual_seed(seed)
    m = copy.deepcopy(model) if copy_model else model
    if lora:
        from peft import LoraConfig, get_peft_model
        m = get_peft_model(m, LoraConfig(r=lora_r, lora_alpha=2 * lora_r,
                                         target_modules=lora_target_modules(m),
                                         lora_dropout=0.0, task_type="CAUSAL_LM"))
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    prompts, completions = list(prompts), list(completions)
    loader = torch.utils.data.DataLoader(
        list(range(len(prompts))), batch_size=batch_size, sampler=_SeededOrder(len(prompts), seed),
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
    for _ in range(epochs):
        for batch in loader:
            loss = m(**model_inputs(m, batch, labels=True)).loss
            acc.backward(loss)
            acc.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    m = acc.unwrap_model(m)
    if lora:
        m = m.merge_and_unload()
    m.eval()
    return m, losses
