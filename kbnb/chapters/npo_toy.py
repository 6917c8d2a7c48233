"""The NPO toy chapter (``notebooks/npo_toy.ipynb``): parameters and declaration."""
from __future__ import annotations

from dataclasses import dataclass

from kbnb.data.splits import FORGET_SPLITS
from kbnb.unlearning import npo
from kbnb.report.params import ChapterParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row


@dataclass(frozen=True)
class Params(ChapterParams):
    """The parameters of ``notebooks/npo_toy.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld (the embedded organism) | hub id | local directory
    dataset: str = choice("tinyworld", ("tinyworld", "tofu"))  # tinyworld | tofu (TOFU from data_dir or the hub)
    data_dir: str = param("")  # folder with tofu/*.jsonl (empty: $KBNB_DATA_DIR or the hub)
    forget_split: str = choice("forget10", FORGET_SPLITS)  # forget01 | forget05 | forget10 (retain: its complement)
    sample_index: int = integer(18, 0)  # which row of the forget split to unlearn and watch (the seed's 18)
    n_candidates: int = integer(200, 1)  # answers sampled to the question, in one batched call
    temperature: float = number(1.5, 0, lo_open=True)  # sampling temperature (seed: 1.0 on a 1B model; see the text)
    max_new_tokens: int = integer(32, 1)  # length limit of a sampled answer (tokens)
    n_per_group: int = integer(5, 1)  # answers in each of the high / middle / low groups
    fixed_response: str = param("She mainly writes in English.")  # an unrelated answer, a control
    loss: str = choice("npo", npo.LOSSES)  # npo | ga (gradient ascent) for the main run
    compare: bool = flag(True)  # also run the other loss (ga for npo) on the same answers
    beta: float = number(0.1, 0, lo_open=True)  # NPO inverse temperature
    retain_loss: str = choice("none", npo.RETAIN_LOSSES)  # none | nll | kl: retain term on the retain split
    alpha: float = number(1.0, 0)  # weight of the retain term
    train_on: str = choice("sample", npo.TRAIN_ON)  # sample (the watched row, as the seed) | split (the forget split)
    batch_size: int = integer(4, 1)  # rows per step: forget rows when train_on is split, and retain rows
    lr: float = number(3e-5, 0, lo_open=True)  # constant AdamW learning rate (the seed used 2e-5 on a 1B model; see the text)
    steps: int = integer(500, 1)  # unlearning steps
    eval_every: int = integer(25, 1)  # score the tracked answers every this many steps
    seeds: list = seeds_param()  # seeds of the sampled answers (and the batch order with split)
    device: str = param("auto")  # auto | cpu | cuda | mps
    output_dir: str = param("runs", run=False)  # results go to output_dir/npo_toy-<hash of the parameters>/


SPEC = ChapterSpec(
    title="NPO toy", params=Params, cost=106,
    retain_split=lambda p: p.forget_split,
    rows=(
        Row("fixed_over_gt", "change of a fixed unrelated answer / the ground truth's",
            "gt_vs_fixed", "small (plot only)",
            "seed report, Llama-3.2-1B on TOFU forget10, sample 18"),
    ),
)
