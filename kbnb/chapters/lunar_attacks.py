"""The attacks-on-LUNAR chapter (``notebooks/lunar_attacks.ipynb``): parameters and declaration."""
from __future__ import annotations

from dataclasses import dataclass

from kbnb.data.splits import FORGET_SPLITS
from kbnb.methods import attacks as attack_methods
from kbnb.unlearning import lunar
from kbnb.report.params import ChapterParams, choice, integer, param, seeds_param
from kbnb.report.spec import ChapterSpec, Row

LUNAR_SEED = "seed report, Llama-2-7B (TOFU fine-tune) on TOFU"
ATTACK_SEED = "≈ 0 (forget R1 0.16–0.19 under attack, 0.19 after LUNAR, 0.57 before)"


@dataclass(frozen=True)
class Params(ChapterParams):
    """The parameters of ``notebooks/lunar_attacks.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld (the embedded organism) | hub id | local directory
    dataset: str = choice("tinyworld", lunar.DATASETS)  # tinyworld | tofu (TOFU and harmful instructions: data_dir or hub)
    data_dir: str = param("")  # folder with tofu/ and refusal/ *.jsonl (empty: $KBNB_DATA_DIR or the hub)
    lunar_dir: str = param("")  # the LUNAR chapter's run folder (or one edit); "": fit as it does
    edit: str = param("")  # which edit of that run: "" its main one (selected layer) | lunar | lunar_topk
    forget_split: str = choice("forget05", FORGET_SPLITS)  # only when fitting here (a LUNAR run brings its own)
    n_retain: int = integer(300, 1)  # only when fitting here: retain rows that fit the edit
    layer: str = param("auto")  # auto: the edit's layers (fitting: the LUNAR selection) | an int
    coeff: object = param(None)  # coefficient c the reverse attack subtracts (times r_uv); None: the edit's
    attacks: list = param(list(attack_methods.ATTACKS), lambda n, v: attack_methods.check_attacks(v))  # any
    quant_method: str = choice("auto", attack_methods.QUANT_METHODS)  # auto (bitsandbytes NF4, else round-to-nearest int4) | nf4 | rtn
    blocksize: int = param(64, lambda n, v: attack_methods.check_blocksize(v))  # weights per quantisation group (bitsandbytes' default for NF4)
    module: str = param("")  # MLP output projection in a block ("mlp.down_proj", OPT "fc2"); "": found
    max_new_tokens: int = integer(32, 1)  # greedy answer length (tokens)
    batch_size: int = integer(64, 1)  # prompts per generation batch
    n_examples: int = integer(4, 0)  # forget questions whose answers are shown under every attack
    seeds: list = seeds_param()  # seeds of the retain rows and of the edit (a LUNAR run's same seed)
    device: str = param("auto")  # auto | cpu | cuda | mps
    output_dir: str = param("runs", run=False)  # results go to output_dir/lunar_attacks-<hash of the parameters>/

    def run_params(self) -> dict:
        p = super().run_params()
        p["attacks"] = attack_methods.check_attacks(self.attacks)
        if not self.module:  # only when given, so that runs without it keep their folder
            del p["module"]
        return p


SPEC = ChapterSpec(
    title="Attacks on LUNAR", params=Params, cost=70, depends={"lunar": "lunar_dir"},
    rows=(
        Row("recovery_reverse", "forgotten recall recovered by reversing r_uv", "reverse_holds",
            ATTACK_SEED, LUNAR_SEED),
        Row("recovery_layer_skip", "forgotten recall recovered by skipping the edited MLP",
            "layer_skip_holds", ATTACK_SEED, LUNAR_SEED),
        Row("recovery_quantize", "forgotten recall recovered by 4-bit quantisation",
            "quantize_holds", ATTACK_SEED, LUNAR_SEED),
        Row("recovery_paraphrase", "forgotten recall recovered by paraphrasing",
            "paraphrase_holds", ATTACK_SEED, LUNAR_SEED),
    ),
)
