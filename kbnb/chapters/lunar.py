"""The LUNAR chapter (``notebooks/lunar.ipynb``): parameters and declaration."""
from __future__ import annotations

from dataclasses import dataclass

from kbnb.data.splits import FORGET_SPLITS
from kbnb.unlearning import lunar
from kbnb.report.params import ChapterParams, choice, flag, integer, number, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row

LUNAR_PAPER = "Shen et al. 2025, Llama-2-7B on TOFU"
LUNAR_SEED = "seed report, Llama-2-7B (TOFU fine-tune) on TOFU"


@dataclass(frozen=True)
class Params(ChapterParams):
    """The parameters of ``notebooks/lunar.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld (the embedded organism) | hub id | local directory
    dataset: str = choice("tinyworld", lunar.DATASETS)  # tinyworld: the organism's world | tofu: needs data_dir
    data_dir: object = param(None)  # folder with tofu/ and refusal/; None: $KBNB_DATA_DIR or the hub
    forget_split: str = choice("forget05", FORGET_SPLITS)  # forget01 | forget05 | forget10: the forget set D_f
    n_retain: int = integer(300, 1)  # retain prompts D_r used to fit the edit
    n_eval: int = integer(90, 1)  # retain and reference prompts to evaluate, disjoint from the fitting ones
    n_ref: object = integer(None, 1, none=True)  # reference prompts D_ref for the steering vectors; None: all
    layer: object = param(None)  # layer to edit; None: the best-scoring candidate layer
    candidate_layers: object = param(None)  # list of layers scored for selection; None: every layer
    n_select: int = integer(45, 1)  # forget prompts generated per candidate layer during selection
    module: str = param("")  # MLP output projection in a block ("mlp.down_proj", OPT "fc2"); "": found
    top_k: int = integer(2, 1)  # layers edited by the top-k variant, the topk row of the seed
    activation: str = choice("residual", lunar.ACTIVATIONS)  # r_uv on: residual (block output, official) | mlp (the seed)
    position: str = choice("last", lunar.POSITIONS)  # last: last prompt token (official) | mean: over the prompt (seed)
    rows: str = choice("last", lunar.ROWS)  # forget rows the edit moves: last | distinct | prompt (all, official)
    coeff: float = number(2.0)  # multiple of r_uv added to the targets of forget rows (the official default)
    solver: str = choice("closed_form", lunar.SOLVERS)  # closed_form: exact least squares | sgd: the official AdamW
    ridge: float = number(1e-6, 0)  # closed form: ridge strength relative to the mean diagonal of ZᵀZ
    max_new_tokens: int = integer(32, 1)  # greedy tokens per answer in evaluation; selection uses 20
    forget_quality: bool = flag(False)  # also TOFU forget quality, model utility (trains a retain organism)
    batch_size: int = integer(64, 1)  # prompts per batch for generation and activations
    embedder: str = param("default")  # sentence embedder for RQ and selection (offline all-MiniLM-L6-v2)
    seeds: list = seeds_param()  # seeds of the retain/reference samples and of the SGD solver
    device: str = param("auto")  # auto | cpu | cuda | mps
    output_dir: str = param("runs", run=False)  # results go to output_dir/lunar-<hash of the parameters>/

    def run_params(self) -> dict:
        p = super().run_params()
        if not self.module:  # only when given, so that runs without it keep their folder
            del p["module"]
        if not self.forget_quality:
            del p["forget_quality"]
        return p


SPEC = ChapterSpec(
    title="LUNAR", params=Params, cost=73,
    retain_split=lambda p: p.forget_split if p.forget_quality else None,
    rows=(
        Row("forget_rouge1", "forget ROUGE-1 recall after the edit", "forget_low",
            "0.109 (seed: 0.192)", f"{LUNAR_PAPER}; {LUNAR_SEED}"),
        Row("retain_rouge1", "retain ROUGE-1 recall after the edit", "retain_kept",
            "0.898 (seed: 0.549)", f"{LUNAR_PAPER}; {LUNAR_SEED}"),
    ),
)
