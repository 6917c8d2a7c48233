"""The RAIT and CRaFT chapter (``notebooks/rait.ipynb``): parameters and declaration."""
from __future__ import annotations

from dataclasses import dataclass

from kbnb.methods import rait
from kbnb.report.params import ChapterParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row


@dataclass(frozen=True)
class Params(ChapterParams):
    """The parameters of ``notebooks/rait.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # "tinyworld" (the embedded organism), a hub id or a local path
    dataset: str = choice("tinyworld", ("tinyworld", "tofu", "mmlu"))  # tinyworld | tofu | mmlu: where the questions come from
    data_dir: str = param("")  # folder with tofu/ and mmlu/ (JSON lines); "": $KBNB_DATA_DIR or the hub
    mode: str = choice("auto", ("auto", "open", "mc"))  # auto | open (tinyworld, tofu) | mc: multiple choice (tinyworld, mmlu)
    seeds: list = seeds_param()  # one run each: split, sampling, selection, rehearsal, tuning
    device: str = param("auto")  # auto | cpu | cuda | mps
    output_dir: str = param("runs", run=False)  # results go to output_dir/rait-<hash of the parameters>/
    max_questions: int = integer(160, 1)  # source questions per seed (the sets come from them)
    max_test: int = integer(140, 1)  # held-out questions per test set (authors/subjects never in training)
    test_frac: float = number(0.25, 0, 1, lo_open=True)  # share of authors (mmlu: questions) held out for testing
    n_samples: int = integer(10, 1)  # N sampled answers per question for Cor and Cer (open mode)
    temperature: float = number(1.0, 0, lo_open=True)  # sampling temperature of the knowledge query (the paper: 1.0)
    max_new_tokens: int = integer(32, 1)  # longest sampled or greedy answer, in tokens
    batch_size: int = integer(320, 1)  # sequences per generation batch (questions x n_samples)
    embedder: str = param("default")  # sentence embedder for Cer: default: the offline all-MiniLM-L6-v2
    tau_sim: float = number(0.9, -1, 1)  # cosine threshold tau_sim of CRSS
    repr_layer: int = integer(-1)  # block whose output is the question's representation (-1: last)
    repr_position: str = choice("last", ("last", "mean"))  # last | mean: last prompt token or mean over prompt tokens
    rehearsal_threshold: float = number(0.995, 0, 1)  # rehearse on Cor and Cer >= this (the reference: 0.995)
    max_rehearsal: int = integer(200, 1)  # at most this many rehearsal questions (seeded sample)
    rehearsal_epochs: int = integer(2, 0)  # epochs of rehearsal tuning
    flow_questions: str = choice("idk", ("idk", "all"))  # idk | all: re-query the idk candidates (what CRaFT uses) or all
    flow_rule: str = choice("rose", rait.FLOW_RULES)  # rose: drop idk candidates with dCor > 0; not_fell: keep dCor < 0
    n_train: int = integer(100, 1)  # questions in each RAIT training set (all three the same size)
    idk_frac: float = number(0.2, 0, 1)  # share of "I don't know" questions in a set (the reference: 0.2)
    train_epochs: int = integer(3, 0)  # epochs of RAIT tuning
    lr: float = number(3e-4, 0, lo_open=True)  # learning rate of rehearsal and RAIT tuning (AdamW)
    lora: bool = flag(False)  # LoRA adapters instead of full fine-tuning (for large models)
    train_batch_size: int = integer(16, 1)  # examples per optimisation step


SPEC = ChapterSpec(
    title="RAIT and CRaFT", params=Params, cost=155,
    rows=(
        Row("over_refusal_craft", "over-refusal after CRaFT (vs Cor-RAIT)", "or_craft_vs_cor",
            "below Cor-RAIT's", "Zhu et al. 2025, LLaMA2/3 on TriviaQA and MMLU"),
        Row("ths_craft", "truthful helpfulness score THS after CRaFT (vs Cor-RAIT)",
            "ths_craft_vs_cor", "above Cor-RAIT's", "Zhu et al. 2025, LLaMA2/3 on TriviaQA and MMLU"),
    ),
)
