"""The unlearning chapter (``notebooks/unlearning.ipynb``): parameters and declaration."""
from __future__ import annotations

from dataclasses import dataclass

from kbnb.data.splits import FORGET_SPLITS
from kbnb.unlearning import methods as registry
from kbnb.report.params import ChapterParams, choice, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row

OPEN_UNLEARNING = "open-unlearning, Llama-3.2-1B on TOFU forget10 (not this run)"


@dataclass(frozen=True)
class Params(ChapterParams):
    """The parameters of ``notebooks/unlearning.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld | tinyworld:N | hub id | path: the model to unlearn
    retain_model: str = param("auto")  # auto: organism tinyworld:N:retain=<split> | hub id | path | ""
    dataset: str = choice("tinyworld", ("tinyworld", "tofu"))  # tinyworld (the organism's world) | tofu (real TOFU from data_dir)
    data_dir: str = param("")  # folder with tofu/*.jsonl (empty: $KBNB_DATA_DIR or the hub)
    forget_split: str = choice("forget10", FORGET_SPLITS)  # forget01 | forget05 | forget10
    methods: list = param(list(registry.METHODS), lambda n, v: registry.check_methods(v))  # registry names
    steps: int = integer(20, 1)  # optimizer steps per method (lunar: closed form, unused)
    lr: float = number(1e-3, 0, lo_open=True)  # constant AdamW rate (open-unlearning: 1e-5 on a 1B model; ours needs more)
    batch_size: int = integer(8, 1)  # forget (and retain) rows per step
    n_retain: int = integer(90, 1)  # retain rows in the evaluation (TOFU: retain_perturbed, 400 rows)
    max_new_tokens: int = integer(32, 1)  # greedy generation length for ROUGE (open-unlearning: 200)
    seeds: list = seeds_param()  # seeds of the unlearning runs (batch order, IdK answers, RMU vector)
    device: str = param("auto")  # auto | cpu | cuda | mps
    output_dir: str = param("runs", run=False)  # results go to output_dir/unlearning-<hash of the parameters>/

    def run_params(self) -> dict:
        return {**super().run_params(), "methods": registry.check_methods(self.methods)}


SPEC = ChapterSpec(
    title="Unlearning, side by side", params=Params, cost=241,
    retain_split=lambda p: p.forget_split if p.retain_model == "auto" else None,
    rows=(
        Row("forget_quality_npo", "forget quality of NPO", None, "0.02", OPEN_UNLEARNING),
        Row("model_utility_npo", "model utility of NPO", None, "0.46", OPEN_UNLEARNING),
    ),
)
