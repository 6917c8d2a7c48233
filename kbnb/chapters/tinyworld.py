"""The organism chapter (``notebooks/tinyworld.ipynb``): tinyworld and its knowledge boundary."""
from __future__ import annotations

from dataclasses import dataclass

from kbnb.report.params import ModelParams, choice, integer, param
from kbnb.report.spec import ChapterSpec, Row


@dataclass(frozen=True)
class Params(ModelParams):
    """The parameters of ``notebooks/tinyworld.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld | tinyworld:N (organism of seed N) | hub id | path
    dataset: str = choice("tinyworld", ("tinyworld",))  # this chapter is about the organism's own world: only "tinyworld"
    n_authors: int = integer(200, 10)  # authors in the world (40% known, 30% partial, 30% unseen)
    n_layers: int = integer(24, 1)  # depth of the organism (Llama-2-7B has 32)
    epochs: int = integer(16, 1)  # training epochs (the partial facts' schedule is spread over them)
    output_dir: str = param("runs", run=False)  # results go to output_dir/tinyworld-<hash of the parameters>/


SPEC = ChapterSpec(
    title="The model organism", params=Params, cost=37, recipe=("n_authors", "n_layers", "epochs"),
    rows=(
        Row("known_exact_match", "known facts answered word for word", "known_exact", "≥ 0.95",
            "design target"),
        Row("known_paraphrase_recall", "known facts recalled under held-out phrasing",
            "known_paraphrase", "≥ 0.80", "design target"),
    ),
)
