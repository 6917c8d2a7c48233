"""A chapter's parameters as one typed, validated object.

Each chapter module (``kbnb/chapters/<name>.py``) declares a frozen dataclass ``Params``
whose fields are the notebook's parameters, with the same names and defaults as the
notebook's ``parameters`` cell (a test keeps the two equal). The notebook builds it from
its globals after papermill injected the run's values::

    p = chapter.Params.from_namespace(globals())   # ValueError names a bad parameter
    ch = Chapter("rait", p)                          # hashes p.run_params()

The field helpers (:func:`choice`, :func:`integer`, :func:`number`, :func:`flag`,
:func:`seeds_param`, or :func:`param` with any check ``f(name, value)``) are those of
:mod:`kbnb.core.fields`, which an unlearning method's parameters use too; they are
importable from here. Rules that tie several parameters together go in
``Params.validate``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import fields

from kbnb.core.fields import Checked, choice, flag, integer, number, param, seeds_param
from kbnb.lm.models import DTYPES, check_device_map, resolve_device

__all__ = ["ChapterParams", "ModelParams", "choice", "flag", "integer", "number", "param",
           "seeds_param"]


@dataclasses.dataclass(frozen=True)
class ChapterParams(Checked):
    """Base of every chapter's ``Params``. Validates each field on construction
    (:class:`kbnb.core.fields.Checked`: ``names``, ``defaults``, ``as_dict``,
    ``replace``, ``validate``)."""

    @classmethod
    def from_namespace(cls, namespace: dict):
        """The parameters from a notebook's globals (every field that is defined there)."""
        return cls(**{n: namespace[n] for n in cls.names() if n in namespace})

    @classmethod
    def from_dict(cls, values: dict, strict: bool = True):
        """The parameters from ``values`` over the defaults; with ``strict`` an unknown
        name is a ValueError that lists the known ones."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown and strict:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}: allowed "
                             f"{', '.join(cls.names())}")
        return cls(**{k: v for k, v in values.items() if k in cls.names()})

    def run_params(self) -> dict:
        """What identifies the run: hashed into its folder name and saved as params.json
        (every parameter but those declared ``run=False``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.metadata.get("run", True)}


def _check_device(name, value):
    resolve_device(value, name)


@dataclasses.dataclass(frozen=True)
class ModelParams(ChapterParams):
    """Base of the ``Params`` of a chapter that loads a model: where and how to load it
    (the arguments of :func:`kbnb.lm.models.load_model` besides the name)."""

    device: str = param("auto", _check_device)  # auto | cpu | cuda | mps
    dtype: str = choice("auto", DTYPES)  # auto: bfloat16 on a GPU that has it, else float32
    device_map: object = param(None, lambda name, v: check_device_map(v))  # None | auto | balanced
    load_in_4bit: bool = flag(False)  # NF4 weights (bitsandbytes)
    load_in_8bit: bool = flag(False)  # int8 weights (bitsandbytes)
    trust_remote_code: bool = flag(False)  # run the model repository's own code: only if you trust it

    def load_args(self) -> dict:
        """Keyword arguments of ``kbnb.load_model`` for these parameters."""
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit=True and load_in_8bit=True: choose at most one")
        out = dict(device=self.device, dtype=self.dtype, device_map=self.device_map,
                   load_in_4bit=self.load_in_4bit, load_in_8bit=self.load_in_8bit,
                   trust_remote_code=self.trust_remote_code)
        if getattr(self, "data_dir", None):  # a TOFU-tuned model is built from its data
            out["data_dir"] = self.data_dir
        return out
