"""The one training loop of kbnb's gradient unlearning: every gradient method
(:mod:`kbnb.unlearning.methods`) and the NPO toy (:mod:`kbnb.unlearning.tracking`) train
through :func:`train_copy`.

The loop follows open-unlearning's ``finetune.yaml`` trainer settings: AdamW (weight decay
0) at a constant learning rate, gradients clipped to ``max_grad_norm``. Each step takes
``batch_size`` forget rows (:func:`cycle_batches`: a shuffled cycle through them, all of
them when there are fewer) and, when there are retain rows, ``batch_size`` retain rows
drawn uniformly with replacement. What is minimised is the :class:`Objective`'s business;
what it computes once before the first step it keeps on its :attr:`Objective.State` (a
:class:`TrainState` with the objective's own typed fields). The given model is never
changed: it is the frozen reference π_ref, and a trained deep copy (the policy π_θ) is
returned. Deterministic given ``seed`` on CPU.

Why this is not :func:`kbnb.lm.finetune.finetune`, the supervised loop of the TOFU-tuned
models, RAIT and R-Tuning: the two take different steps, so one loop for both would
change the numbers of one of them. ``finetune`` minimises the model's own token-mean
cross-entropy in epochs of a seeded ``DataLoader`` shuffle (micro-batched when long),
through ``accelerate``, with a linear warm-up and decay of the learning rate, a weight
decay, ``zero_grad`` after the step and clipping always at norm 1. This loop minimises an
arbitrary objective against a frozen reference model, at a constant rate, on an endless
forget cycle whose order shares one ``random.Random`` with the retain draws (and
IdkDPO's refusal draws, in ``prepare``), trains a chosen subset of the parameters (RMU),
clips only when ``max_grad_norm`` is set and calls a hook between steps (the NPO toy).
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm


def cycle_batches(n: int, batch_size: int, rng):
    """Endless batches of indices into ``n`` rows: all rows when ``n <= batch_size``,
    else consecutive slices of reshuffled passes (``rng.shuffle``), drawn lazily so the
    caller may use ``rng`` in between."""
    order = []
    while True:
        if n <= batch_size:
            yield list(range(n))
            continue
        if len(order) < batch_size:
            fresh = list(range(n))
            rng.shuffle(fresh)
            order += fresh
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


@dataclass
class TrainState:
    """What an :class:`Objective` sees: the policy being trained, the frozen reference,
    the tokenizer, the forget and retain ``(prompt, completion)`` pairs, the loop's
    ``random.Random`` (shared with the batch order, so draw from it only in
    :meth:`Objective.prepare`), the run's ``seed`` and ``batch_size``, and ``data``, an
    untyped place for what :meth:`Objective.prepare` computes once. An objective that keeps
    typed per-run values declares a subclass with those fields (defaulted) as its
    :attr:`Objective.State`."""

    policy: torch.nn.Module
    ref: torch.nn.Module
    tok: object
    forget: list
    retain: list
    rng: random.Random
    seed: int
    batch_size: int
    data: dict = field(default_factory=dict)


class Objective:
    """What :func:`train_copy` minimises. Override :meth:`loss`; :meth:`prepare`,
    :meth:`trainable` and :attr:`State` are optional."""

    State = TrainState  # the class of the per-run state train_copy builds (a TrainState)

    def trainable(self, policy) -> list | None:
        """The parameters to train (None: all of them)."""
        return None

    def prepare(self, state: TrainState) -> dict:
        """Called once before the first step (after the optimizer is built): compute what
        every step needs into ``state`` (its :attr:`State` fields, or ``state.data``);
        returns entries for the training log."""
        return {}

    def loss(self, state: TrainState, idx: list[int], ridx: list[int]):
        """``(total, parts)`` for one step on forget rows ``idx`` and retain rows ``ridx``:
        the differentiable scalar to minimise and ``{name: float}`` to log (each name
        becomes a list in the log, one value per step)."""
        raise NotImplementedError


def train_copy(model, tok, objective: Objective, forget_pairs, retain_pairs=(), steps: int = 10,
               lr: float = 1e-5, seed: int = 0, batch_size: int = 4, max_grad_norm: float = 1.0,
               on_step=None, progress: bool = False, desc: str = "unlearning"):
    """Train a deep copy of ``model`` for ``steps`` AdamW steps on ``objective``.

    ``forget_pairs``, ``retain_pairs``: ``(prompt, completion)`` lists (no retain rows are
    drawn when ``retain_pairs`` is empty). ``on_step(step, policy)``, if given, is called
    before the first step (``step=0``) and after each optimizer step ``1..steps``, with the
    policy in training mode (the NPO toy scores its tracked answers there). Returns
    ``(policy, log)``: the trained copy in eval mode with every parameter trainable again,
    and ``{"losses": [steps], <each loss part>: [steps], <prepare's entries>,
    "trained_params": n}``."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    ref = model
    ref_training = ref.training
    ref.eval()
    policy = copy.deepcopy(model)
    policy.train()
    chosen = objective.trainable(policy)
    chosen = None if chosen is None else {id(p) for p in chosen}
    for p in policy.parameters():
        p.requires_grad_(chosen is None or id(p) in chosen)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    state = objective.State(policy, ref, tok, list(forget_pairs), list(retain_pairs or []), rng,
                            seed, batch_size)
    log = {"losses": [], **objective.prepare(state)}
    batches = cycle_batches(len(state.forget), batch_size, rng)
    if on_step is not None:
        on_step(0, policy)
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=False)
    for step in bar:
        idx = next(batches)
        ridx = ([rng.randrange(len(state.retain)) for _ in range(batch_size)]
                if state.retain else [])
        total, parts = objective.loss(state, idx, ridx)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        log["losses"].append(total.item())
        for k, v in parts.items():
            log.setdefault(k, []).append(float(v))
        bar.set_postfix(loss=f"{log['losses'][-1]:.3g}")
        if on_step is not None:
            on_step(step, policy)
    bar.close()
    opt.zero_grad(set_to_none=True)
    for p in policy.parameters():
        p.requires_grad_(True)
    policy.eval()
    ref.train(ref_training)
    log["trained_params"] = len(params)
    return policy, log
