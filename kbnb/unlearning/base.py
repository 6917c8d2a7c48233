"""The base of kbnb's unlearning methods and their registry.

Modelled on locuslab/open-unlearning (``src/trainer/__init__.py``: a trainer class is
registered by name; ``src/trainer/unlearn/*.py``: each method is one small class on a
shared base). Here a method is one class, and nothing about it lives elsewhere: its
``name`` (the registry key), its ``display_name`` (tables and figures), its parameters as
typed fields declared with the helpers of :mod:`kbnb.core.fields` (the same as a
chapter's ``Params``: default, check, and the values a tuning search tries as
``grid=(...)``), and what it does, by one of two interfaces:

* :class:`GradientMethod`: a :meth:`~GradientMethod.loss` (optionally
  :meth:`~GradientMethod.prepare`, :meth:`~GradientMethod.trainable` and a typed per-run
  ``State``) that :func:`kbnb.unlearning.loop.train_copy` minimises for ``steps`` steps
  at ``lr``;
* :class:`ClosedFormMethod`: an :meth:`~ClosedFormMethod.edit` of the model, with no
  steps and no learning rate (the tuning grid sweeps only its knobs).

:func:`register` makes the class a frozen dataclass, checks its fields and adds it to
:data:`UNLEARNING_METHODS`. The methods themselves are in :mod:`kbnb.unlearning.methods`.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from kbnb.core.checks import check_choice, check_number
from kbnb.core.fields import Checked
from kbnb.lm import activations as A
from kbnb.lm.generation import pack_prompt_response, response_logprobs, sequence_logprobs
from kbnb.lm.models import format_example
from kbnb.unlearning.loop import Objective, train_copy

UNLEARNING_METHODS: dict[str, type["UnlearningMethod"]] = {}


# ---- the base classes ----------------------------------------------------------------------

class UnlearningMethod(Checked):
    """One unlearning method with its parameters checked (its dataclass fields).

    Class attributes: ``name`` (the registry key), ``display_name`` (tables and figures),
    ``needs_retain`` (whether it uses retain rows), ``source`` and ``summary``.
    ``Method.from_dict(params)`` resolves ``params`` over the defaults; an unknown
    parameter or a bad value is a ValueError naming it and what is allowed. Subclass
    :class:`GradientMethod` or :class:`ClosedFormMethod`, not this."""

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    needs_retain: ClassVar[bool] = True
    source: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, params: dict):
        """The method with ``params`` over its defaults; an unknown name is a ValueError
        listing the known ones."""
        unknown = set(params) - set(cls.names())
        if unknown:
            allowed = ", ".join(cls.names()) or "none"
            raise ValueError(f"method={cls.name!r} has no parameter(s) "
                             f"{', '.join(sorted(unknown))}; allowed: {allowed}")
        return cls(**params)

    def check_model(self, model) -> None:
        """Checks that need the model (a ``layer`` against its number of blocks)."""
        if getattr(self, "layer", None) is not None:
            A.check_layer(model, self.layer)

    def shown_params(self) -> dict:
        """The parameters as the training log shows them (JSON-friendly)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.as_dict().items()}


class GradientMethod(UnlearningMethod, Objective):
    """A method trained by :func:`kbnb.unlearning.loop.train_copy`: implement
    :meth:`loss`; optionally :meth:`prepare` (once before the first step, keeping what it
    computes on ``state``, an instance of the class's ``State``), :meth:`trainable`."""

    def train(self, model, tok, forget_rows, retain_rows, *, steps: int, lr: float, seed: int,
              batch_size: int, max_grad_norm, progress: bool):
        """``(new_model, log)``: a trained copy of ``model`` (which stays untouched)."""
        fp = [format_example(tok, r["question"], r["answer"]) for r in forget_rows]
        rp = [format_example(tok, r["question"], r["answer"])
              for r in ((retain_rows or []) if self.needs_retain else [])]
        return train_copy(model, tok, self, fp, rp, steps=steps, lr=lr, seed=seed,
                          batch_size=batch_size, max_grad_norm=max_grad_norm,
                          progress=progress, desc=f"{self.name} unlearning")


class ClosedFormMethod(UnlearningMethod):
    """A method that edits the model in closed form: no optimiser, so no ``steps`` and no
    ``lr``. Implement :meth:`edit`."""

    def edit(self, model, tok, forget_rows, retain_rows, seed: int, batch_size: int,
             progress: bool):
        """``(new_model, entries)``: an edited copy of ``model`` (which stays untouched) and
        the method's entries for the log."""
        raise NotImplementedError


# ---- the registry ----------------------------------------------------------------------------

def register(cls):
    """Class decorator: make ``cls`` a frozen dataclass (its fields are its parameters),
    check that every field has a default and a check and that every grid value passes it,
    and add ``cls`` to :data:`UNLEARNING_METHODS` under ``cls.name`` (registration order is the order
    the chapter lists the methods in)."""
    if not (issubclass(cls, GradientMethod) or issubclass(cls, ClosedFormMethod)):
        raise ValueError(f"method {cls.name!r}: subclass GradientMethod or ClosedFormMethod")
    if not cls.name or not cls.display_name:
        raise ValueError(f"{cls.__qualname__}: a method needs a name and a display_name")
    if cls.name in UNLEARNING_METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    if "__dataclass_fields__" not in cls.__dict__:
        cls = dataclasses.dataclass(frozen=True)(cls)
    cls.check_fields(f"method {cls.name!r}")
    UNLEARNING_METHODS[cls.name] = cls
    return cls


def check_methods(methods) -> list[str]:
    """``methods`` as a list of registry names; an unknown name is refused with the list."""
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    if not methods:
        raise ValueError(f"methods=[]: give at least one of {', '.join(map(repr, UNLEARNING_METHODS))}")
    for m in methods:
        if m not in UNLEARNING_METHODS:
            raise ValueError(f"methods: {m!r} is not a method; allowed "
                             f"{', '.join(map(repr, UNLEARNING_METHODS))}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods={methods}: a method is listed twice")
    return methods


def method_class(name: str) -> type[UnlearningMethod]:
    """The registered class of ``name``, or a ValueError listing the registered names."""
    return UNLEARNING_METHODS[check_choice("method", name, tuple(UNLEARNING_METHODS))]


# ---- the forward passes of the methods ------------------------------------------------------

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
        return round(check_number("layer_frac", layer_frac, 0, 1) * (A.n_layers(model) - 1))
    return A.check_layer(model, layer)
