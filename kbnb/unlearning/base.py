"""The base of kbnb's unlearning methods and their registry.

Modelled on locuslab/open-unlearning (``src/trainer/__init__.py``: a trainer class is
registered by name; ``src/trainer/unlearn/*.py``: each method is one small class on a
shared base). Here a method is one subclass of :class:`UnlearningMethod`, registered in
:data:`METHODS` with :func:`register`, holding in one place its ``name``, its
``display_name``, its ``defaults`` and the ``checks`` of each parameter, and its loss
(:meth:`UnlearningMethod.loss`, run by :func:`kbnb.unlearning.loop.train_copy`) or, for a
closed-form method, its own :meth:`UnlearningMethod.run`. The methods themselves are in
:mod:`kbnb.unlearning.methods`.
"""
from __future__ import annotations

from typing import Callable, ClassVar

from kbnb.core.checks import check_choice, check_int, check_number
from kbnb.lm import activations as A
from kbnb.lm.generation import pack_prompt_response, response_logprobs, sequence_logprobs
from kbnb.lm.models import format_example
from kbnb.unlearning.loop import Objective, train_copy

METHODS: dict[str, type["UnlearningMethod"]] = {}


def register(cls):
    """Class decorator: add ``cls`` to :data:`METHODS` under ``cls.name`` (registration
    order is the order the chapter lists the methods in)."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    missing = sorted(set(cls.defaults) ^ set(cls.checks))
    if missing:
        raise ValueError(f"method {cls.name!r}: parameter(s) {', '.join(missing)} need both a "
                         "default and a check")
    METHODS[cls.name] = cls
    return cls


def check_methods(methods) -> list[str]:
    """``methods`` as a list of registry names; an unknown name is refused with the list."""
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    if not methods:
        raise ValueError(f"methods=[]: give at least one of {', '.join(map(repr, METHODS))}")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: {m!r} is not a method; allowed "
                             f"{', '.join(map(repr, METHODS))}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods={methods}: a method is listed twice")
    return methods


def method_class(name: str) -> type["UnlearningMethod"]:
    """The registered class of ``name``, or a ValueError listing the registered names."""
    return METHODS[check_choice("method", name, tuple(METHODS))]


# ---- parameter checks: f(name, value), raising a ValueError that names both --------------

def positive(name, v):
    return check_number(name, v, 0, lo_open=True)


def non_negative(name, v):
    return check_number(name, v, 0)


def finite(name, v):
    return check_number(name, v)


def fraction(name, v):
    return check_number(name, v, 0, 1)


def layer_or_none(name, v):
    """None (use ``layer_frac``) or a block index (checked against the model at run time;
    negative counts from the end)."""
    return v if v is None else check_int(name, v)


def optional(check: Callable) -> Callable:
    """``check``, with None also allowed."""
    return lambda name, v: v if v is None else check(name, v)


# ---- the forward passes of the registered methods --------------------------------------

def completion_logprobs(model, tok, pairs):
    """Summed completion log-probabilities ``[B]`` (differentiable) and completion token
    counts ``[B]`` of ``(prompt, completion)`` pairs, in one left-padded batch (no
    ``position_ids`` passed: the model numbers the positions itself)."""
    ids, mask, labels = pack_prompt_response(tok, [p for p, _ in pairs], [c for _, c in pairs],
                                             model.device)
    lp = sequence_logprobs(model(input_ids=ids, attention_mask=mask).logits, labels)
    return lp, (labels[:, 1:] != -100).sum(-1)


def reference_logprobs(ref, tok, pairs, batch_size: int):
    """The frozen model's summed completion log-probabilities ``[N]`` (float32, CPU)."""
    return response_logprobs(ref, tok, [p for p, _ in pairs], [c for _, c in pairs],
                             batch_size=batch_size, reduce="sum")


def select(pairs, idx):
    return [pairs[i] for i in idx]


def layer_of(model, layer, layer_frac) -> int:
    """``layer`` checked against the model, or ``round(layer_frac·(n_layers − 1))``."""
    if layer is None:
        return round(fraction("layer_frac", layer_frac) * (A.n_layers(model) - 1))
    return A.check_layer(model, layer)


# ---- the base class ----------------------------------------------------------------------

class UnlearningMethod(Objective):
    """One unlearning method with its parameters resolved and checked.

    Class attributes: ``name`` (the registry key), ``display_name`` (tables and figures),
    ``defaults`` (``{parameter: default}``), ``checks`` (``{parameter: f(name, value)}``,
    one per default), ``needs_retain`` (whether it trains on retain rows), ``source`` and
    ``summary``. ``Method(**params)`` resolves ``params`` over the defaults; an unknown
    parameter or a bad value is a ValueError naming it and what is allowed.

    A gradient method implements :meth:`loss` (and optionally :meth:`prepare`,
    :meth:`trainable`): :meth:`run` trains it with :func:`kbnb.unlearning.loop.train_copy`.
    A closed-form method overrides :meth:`run`."""

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}
    checks: ClassVar[dict] = {}
    needs_retain: ClassVar[bool] = True
    source: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            allowed = ", ".join(self.defaults) or "none"
            raise ValueError(f"method={self.name!r} has no parameter(s) "
                             f"{', '.join(sorted(unknown))}; allowed: {allowed}")
        self.params = {**self.defaults, **params}
        self.check(self.params)

    def check(self, p: dict) -> None:
        """Check every parameter (``checks``); override for rules across parameters."""
        for k, check in self.checks.items():
            check(k, p[k])

    def check_model(self, model) -> None:
        """Checks that need the model (a ``layer`` against its number of blocks)."""
        if self.params.get("layer") is not None:
            A.check_layer(model, self.params["layer"])

    def shown_params(self) -> dict:
        """The parameters as the training log shows them (JSON-friendly)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()}

    def run(self, model, tok, forget_rows, retain_rows, steps: int, lr: float, seed: int,
            batch_size: int, max_grad_norm, progress: bool):
        """``(new_model, log)``: a trained copy of ``model`` (which stays untouched)."""
        fp = [format_example(tok, r["question"], r["answer"]) for r in forget_rows]
        rp = [format_example(tok, r["question"], r["answer"])
              for r in ((retain_rows or []) if self.needs_retain else [])]
        new, log = train_copy(model, tok, self, fp, rp, steps=steps, lr=lr, seed=seed,
                              batch_size=batch_size, max_grad_norm=max_grad_norm,
                              progress=progress, desc=f"{self.name} unlearning")
        return new, log
