"""The R-Tuning chapter (``notebooks/rtuning.ipynb``): parameters and declaration."""
from __future__ import annotations

from dataclasses import dataclass

from kbnb.methods import rtuning
from kbnb.report.params import ChapterParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row


@dataclass(frozen=True)
class Params(ChapterParams):
    """The parameters of ``notebooks/rtuning.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # the embedded organism, or a hub id / local path
    dataset: str = choice("tinyworld", ("tinyworld", "mmlu"))  # tinyworld (the world as 4-way questions) | mmlu (real MMLU)
    data_dir: str = param("")  # folder with mmlu/*.jsonl (dataset mmlu); empty: $KBNB_DATA_DIR or the hub
    scoring: str = choice("auto", rtuning.SCORINGS)  # auto (tinyworld: cloze, mmlu: letter) | letter (next token) | cloze
    n_shots: int = integer(-1, -1)  # answered examples per question (letter only); -1: 5 mmlu, 0 tinyworld
    prompt_header: str = choice("kbnb", rtuning.HEADERS)  # kbnb (one space after "about") | reference (two spaces)
    method: str = choice("unsure", rtuning.METHODS)  # refusal-aware data: unsure (the main method) | unknown | uncertain
    n_samples: int = integer(5, 2)  # answers sampled per question for method uncertain (reference: num_try)
    temperature: float = number(0.7, 0, lo_open=True)  # sampling temperature for method uncertain (as in the reference)
    epochs: int = integer(10, 0)  # fine-tuning epochs over the refusal-aware data
    lr: float = number(1e-3, 0, lo_open=True)  # fine-tuning learning rate (about 2e-5 full or 1e-4 LoRA on a 7B model)
    train_batch_size: int = integer(16, 1)  # examples per fine-tuning step
    lora: bool = flag(False)  # True: tune LoRA adapters (peft) instead of all weights, for large models
    max_questions: int = integer(400, 0)  # at most this many questions per split (train, test, ood); 0: all
    batch_size: int = integer(64, 1)  # prompts per forward pass when querying and scoring
    seeds: list = seeds_param()  # one run each: question sample, sampling, data order, training
    device: str = param("auto")  # auto | cpu | cuda | mps
    output_dir: str = param("runs", run=False)  # results go to output_dir/rtuning-<hash of the parameters>/


SPEC = ChapterSpec(
    title="R-Tuning", params=Params, cost=288,
    rows=(
        Row("ap_test_tuned", "AP of the R-Tuning score, in-domain", "ap_gain_test",
            "above the untuned model's", "Zhang et al. 2024, OpenLLaMA-3B on MMLU"),
        Row("ap_ood_tuned", "AP of the R-Tuning score, out of domain", "ap_gain_ood",
            "above the untuned model's", "Zhang et al. 2024, OpenLLaMA-3B on MMLU"),
        Row("unsure_on_unseen", "says 'I am unsure' about unseen authors",
            "unsure_on_unseen_target", "", ""),
    ),
)
