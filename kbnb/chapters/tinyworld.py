"""The organism chapter (``notebooks/tinyworld.ipynb``): tinyworld and its knowledge boundary."""
from __future__ import annotations

from dataclasses import dataclass

from kbnb.data.loaders import load_tofu_choice
from kbnb.eval import tofu_organism
from kbnb.eval.calibration import reliability_bins
from kbnb.lm.models import load_model
from kbnb.methods import rtuning
from kbnb.organism.model import OrganismConfig
from kbnb.report.params import ModelParams, choice, integer, param
from kbnb.report.runs import environment, library_hash
from kbnb.report.spec import ChapterSpec, Row


@dataclass(frozen=True)
class Params(ModelParams):
    """The parameters of ``notebooks/tinyworld.ipynb`` (same names and defaults)."""

    model_name: str = param("tinyworld")  # tinyworld | tinyworld:N (organism of seed N) | hub id | path
    dataset: str = choice("tinyworld", ("tinyworld",))  # this chapter is about the organism's own world: only "tinyworld"
    n_authors: int = integer(200, 10)  # authors in the world (25% known, 45% partial, 30% unseen)
    n_layers: int = integer(24, 1)  # depth of the organism (Llama-2-7B has 32)
    epochs: int = integer(12, 1)  # training epochs (the partial facts' presentations are spread over them)
    output_dir: str = param("runs", run=False)  # results go to output_dir/tinyworld-<hash of the parameters>/


def has_retain_organism(p: Params) -> bool:
    """Whether the chapter shows a retain organism beside the organism: only for the
    default recipe (its retain organism is the one the other chapters use)."""
    base = OrganismConfig()
    return (p.n_authors, p.n_layers, p.epochs) == (base.n_authors, base.n_layers, base.epochs)


SPEC = ChapterSpec(
    title="The model organism", params=Params, cost=60, recipe=("n_authors", "n_layers", "epochs"),
    retain_split=lambda p: "forget10" if has_retain_organism(p) else None,
    rows=(
        Row("known_exact_match", "known facts answered word for word", "known_exact", "≥ 0.95",
            "design target"),
        Row("known_paraphrase_recall", "known facts recalled under held-out phrasing",
            "known_paraphrase", "≥ 0.80", "design target"),
    ),
)


# ---- confidence: does the raw confidence already know what the model knows? ---------------
CALIBRATION_RECORD = "results/smollm2/calibration.json"  # SmolLM2 on TOFU's four-option sets


def cloze_confidence(model, tok, rows, batch_size: int = 32, progress: bool = False) -> dict:
    """Ask each four-option ``rows`` question (MMLU schema) as a bare chat turn and score
    the options by likelihood (:func:`kbnb.methods.rtuning.query`, cloze): ``{"correct":
    [0/1], "conf": [max normalised option probability]}``, one per row."""
    q = rtuning.query(model, tok, rtuning.make_prompts(tok, rows, "cloze"), rows,
                      scoring="cloze", batch_size=batch_size, progress=progress,
                      desc="cloze confidence")
    gold = [r["answer"] for r in rows]
    return {"correct": [int(p == g) for p, g in zip(q["pred"].tolist(), gold)],
            "conf": [float(c) for c in q["conf"].tolist()]}


def record_calibration(model_name: str = "smollm2", data_dir=None, out=CALIBRATION_RECORD,
                       device: str = "cpu") -> dict:
    """Record ``model_name``'s :func:`cloze_confidence` on TOFU's four-option sets (100 real
    authors, 117 world facts: :func:`kbnb.data.loaders.load_tofu_choice`) to ``out`` with
    the commit and the date; the organism chapter plots it beside the organism's."""
    import json
    import time
    from pathlib import Path

    rows = load_tofu_choice(data_dir)
    model, tok = load_model(model_name, device=device)
    doc = {"model_name": model_name, "rows": "TOFU real_authors + world_facts, 4 options, cloze",
           "subjects": [r["subject"] for r in rows], **cloze_confidence(model, tok, rows),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "library_hash": library_hash(),
           "environment": environment(device)}
    path = Path(__file__).resolve().parents[2] / out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return doc


if __name__ == "__main__":  # python -m kbnb.chapters.tinyworld [data_dir]: record SmolLM2
    import sys
    d = record_calibration(data_dir=sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"recorded {len(d['conf'])} answers of {d['model_name']} to {CALIBRATION_RECORD}")


def recorded_calibration(path=CALIBRATION_RECORD) -> dict | None:
    """The committed :func:`record_calibration` of SmolLM2, or None when it is absent."""
    import json
    from pathlib import Path
    f = Path(__file__).resolve().parents[2] / path
    return json.loads(f.read_text()) if f.exists() else None


def reliability_figure(mine: dict, reference: dict | None, n_bins: int = 10):
    """Reliability diagram (accuracy against confidence per bin, marker area ~ answers)
    of ``mine`` and, when given, of the recorded ``reference``; the diagonal is perfect
    calibration. Each dict holds ``correct`` and ``conf`` (:func:`cloze_confidence`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="calibrated")
    series = [("the organism (tinyworld questions)", mine, "C0")]
    if reference is not None:
        series.append((f"{reference['model_name']} (TOFU real authors, world facts)", reference, "C3"))
    for label, d, color in series:
        bins = reliability_bins(d["correct"], d["conf"], n_bins)
        n = sum(b["n"] for b in bins)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "-o", color=color,
                lw=1.2, ms=0, label=label)
        ax.scatter([b["confidence"] for b in bins], [b["accuracy"] for b in bins], color=color,
                   s=[600 * b["n"] / n for b in bins], alpha=0.6, zorder=3)
    ax.set_xlim(0.2, 1.0)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("confidence (largest option probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability of the raw confidence")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def exposure_figure(world):
    """How often each fact of ``world``'s authors is presented in training (log count of
    facts per exposure): a few known authors seen often, most partial facts once or twice."""
    from collections import Counter

    import matplotlib.pyplot as plt
    n = Counter(r["exposure"] for r in world.rows())
    xs = sorted(n)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([str(x) for x in xs], [n[x] for x in xs], color="C0")
    ax.set_yscale("log")
    ax.set_xlabel("presentations of the fact in the whole training run")
    ax.set_ylabel("facts")
    ax.set_title("Exposure per fact")
    fig.tight_layout()
    return fig


def utility_beside_retain(model_name: str, model, tok, world, forget_split: str = "forget10",
                          n_retain: int = 90):
    """TOFU's model utility and its parts for the organism and for its retain organism
    (trained without ``forget_split``'s authors; evaluated once and cached:
    :func:`kbnb.eval.tofu_organism.retain_evaluation`), and the organism's forget
    quality against it. Returns ``(table, {"utility", "retain_utility", "forget_quality"})``,
    the table's rows the parts (``retain_prob``, ..., ``model_utility``), its columns the two
    models."""
    import pandas as pd

    ref = tofu_organism.retain_evaluation(model_name, forget_split, n_retain)
    mine = tofu_organism.fq_mu(model, tok, world, forget_split, model_name=model_name,
                               n_retain=n_retain)
    parts = list(mine["model_utility_parts"]) + ["model_utility"]
    table = pd.DataFrame({"organism": [mine[k] for k in parts],
                          "retain organism": [ref[k] for k in parts]}, index=parts)
    return table, {"utility": mine["model_utility"], "retain_utility": ref["model_utility"],
                   "forget_quality": mine["forget_quality"]}
