"""The book's results page: one row per chapter headline, read from this build's runs.

Every number on the page comes from a chapter's ``metrics.json`` (its ``headline`` and
``checks`` sections), found through the run folder the book runner stored in the
executed chapter's metadata. Only the references (the paper's or the seed report's
number, with its model and data set) are constants, here, with their source.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from kbnb.eval import stats


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    chapter: notebook name. metric: key in that chapter's ``headline`` section.
    claim: what the number measures, in words. check: key in its ``checks`` section
    whose verdict goes beside the number (or None). reference: the paper's or the
    seed's value as text ("" when none is comparable); reference_source: who reported
    it, on which model and data set.
    """
    chapter: str
    metric: str
    claim: str
    check: str | None = None
    reference: str = ""
    reference_source: str = ""


TITLES = {
    "tinyworld": "The model organism",
    "rtuning": "R-Tuning",
    "rait": "RAIT and CRaFT",
    "lunar": "LUNAR",
    "lunar_attacks": "Attacks on LUNAR",
    "npo_toy": "NPO toy",
    "unlearning": "Unlearning, side by side",
}

LUNAR_PAPER = "Shen et al. 2025, Llama-2-7B on TOFU"
LUNAR_SEED = "seed report, Llama-2-7B (TOFU fine-tune) on TOFU"
OPEN_UNLEARNING = "open-unlearning, Llama-3.2-1B on TOFU forget10 (not this run)"

ATTACK_SEED = "≈ 0 (forget R1 0.16–0.19 under attack, 0.19 after LUNAR, 0.57 before)"

ROWS: list[Row] = [
    Row("tinyworld", "known_exact_match", "known facts answered word for word",
        "known_exact", "≥ 0.95", "design target"),
    Row("tinyworld", "known_paraphrase_recall", "known facts recalled under held-out phrasing",
        "known_paraphrase", "≥ 0.80", "design target"),
    Row("rtuning", "ap_test_tuned", "AP of the R-Tuning score, in-domain",
        "ap_gain_test", "above the untuned model's", "Zhang et al. 2024, OpenLLaMA-3B on MMLU"),
    Row("rtuning", "ap_ood_tuned", "AP of the R-Tuning score, out of domain",
        "ap_gain_ood", "above the untuned model's", "Zhang et al. 2024, OpenLLaMA-3B on MMLU"),
    Row("rtuning", "unsure_on_unseen", "says 'I am unsure' about unseen authors",
        "unsure_on_unseen_target", "", ""),
    Row("rait", "over_refusal_craft", "over-refusal after CRaFT (vs Cor-RAIT)",
        "or_craft_vs_cor", "below Cor-RAIT's", "Zhu et al. 2025, LLaMA2/3 on TriviaQA and MMLU"),
    Row("rait", "ths_craft", "truthful helpfulness score THS after CRaFT (vs Cor-RAIT)",
        "ths_craft_vs_cor", "above Cor-RAIT's", "Zhu et al. 2025, LLaMA2/3 on TriviaQA and MMLU"),
    Row("lunar", "forget_rouge1", "forget ROUGE-1 recall after the edit",
        "forget_low", "0.109 (seed: 0.192)", f"{LUNAR_PAPER}; {LUNAR_SEED}"),
    Row("lunar", "retain_rouge1", "retain ROUGE-1 recall after the edit",
        "retain_kept", "0.898 (seed: 0.549)", f"{LUNAR_PAPER}; {LUNAR_SEED}"),
    Row("lunar_attacks", "recovery_reverse", "forgotten recall recovered by reversing r_uv",
        "reverse_holds", ATTACK_SEED, LUNAR_SEED),
    Row("lunar_attacks", "recovery_layer_skip", "forgotten recall recovered by skipping the edited MLP",
        "layer_skip_holds", ATTACK_SEED, LUNAR_SEED),
    Row("lunar_attacks", "recovery_quantize", "forgotten recall recovered by 4-bit quantisation",
        "quantize_holds", ATTACK_SEED, LUNAR_SEED),
    Row("lunar_attacks", "recovery_paraphrase", "forgotten recall recovered by paraphrasing",
        "paraphrase_holds", ATTACK_SEED, LUNAR_SEED),
    Row("npo_toy", "fixed_over_gt", "change of a fixed unrelated answer / the ground truth's",
        "gt_vs_fixed", "small (plot only)", "seed report, Llama-3.2-1B on TOFU forget10, sample 18"),
    Row("unlearning", "forget_quality_npo", "forget quality of NPO",
        None, "0.02", OPEN_UNLEARNING),
    Row("unlearning", "model_utility_npo", "model utility of NPO",
        None, "0.46", OPEN_UNLEARNING),
]


def run_dirs(chapters_dir: str | Path = "book/chapters") -> dict[str, Path]:
    """``{chapter: run folder}`` from the executed chapters' ``kbnb.run_dir`` metadata."""
    out = {}
    for nb in sorted(Path(chapters_dir).glob("*.ipynb")):
        try:
            meta = json.loads(nb.read_text())["metadata"].get("kbnb", {})
        except (OSError, ValueError, KeyError):
            continue
        if meta.get("run_dir"):
            out[nb.stem] = Path(meta["run_dir"])
    return out


def collect(chapters_dir: str | Path = "book/chapters", rows: list[Row] = ROWS) -> list[dict]:
    """The table's rows with this build's numbers: for each :class:`Row` whose chapter
    was built, ``mean``, ``ci95``, ``n``, ``ci_method``, ``verdict`` (status and
    sentence of its check) and ``source`` (the metrics.json it came from). A row whose
    metric this build did not measure (e.g. an attack left out) is returned with
    ``mean`` None, so the page says so instead of showing an old number."""
    dirs = run_dirs(chapters_dir)
    out = []
    for r in rows:
        if r.chapter not in dirs:
            continue
        path = dirs[r.chapter] / "metrics.json"
        doc = json.loads(path.read_text())["metrics"]
        section = stats.check_headline_shape(doc)
        if r.metric not in section:
            out.append({"chapter": r.chapter, "title": TITLES.get(r.chapter, r.chapter),
                        "metric": r.metric, "claim": r.claim, "mean": None,
                        "source": str(path)})
            continue
        h = section[r.metric]
        chk = doc.get("checks", {}).get(r.check) if r.check else None
        out.append({"chapter": r.chapter, "title": TITLES.get(r.chapter, r.chapter),
                    "metric": r.metric, "claim": r.claim, "mean": h["mean"],
                    "ci95": h["ci95"], "n": h["n"], "ci_method": h["ci_method"],
                    "status": chk["status"] if chk else None,
                    "sentence": chk["sentence"] if chk else None,
                    "reference": r.reference, "reference_source": r.reference_source,
                    "source": str(path)})
    return out


STATUS_TEXT = {"PASS": "shown", "MISS": "opposite shown", "UNCLEAR": "cannot tell", None: ""}


def table_html(rows: list[dict], digits: int = 3) -> str:
    """The results table as HTML (links to the chapters, numbers with their interval)."""
    head = ("<table class='kbnb-results'><thead><tr><th>Chapter</th><th>Result</th>"
            "<th>This build (95% CI)</th><th>Effect</th><th>Paper or seed</th>"
            "</tr></thead><tbody>")
    body = []
    for r in rows:
        if r["mean"] is None:
            continue
        num = stats.format_mean_ci(r, digits)
        over = html.escape(r["ci_method"].replace(" over ", f" over {r['n']} ", 1))
        ref = html.escape(r["reference"]) + (f"<br><small>{html.escape(r['reference_source'])}"
                                             "</small>" if r["reference_source"] else "")
        status = STATUS_TEXT[r["status"]]
        body.append(f"<tr><td><a href='{r['chapter']}.html'>{html.escape(r['title'])}</a></td>"
                    f"<td>{html.escape(r['claim'])}</td><td>{num}<br><small>{over}</small></td>"
                    f"<td title='{html.escape(r['sentence'] or '')}'>{status}</td>"
                    f"<td>{ref}</td></tr>")
    return head + "".join(body) + "</tbody></table>"


def not_measured(rows: list[dict]) -> str:
    """A sentence naming the rows this build did not measure ("" when none)."""
    miss = [f"{r['title']}: {r['claim']}" for r in rows if r["mean"] is None]
    return ("Not measured in this build (its parameters left them out): " + "; ".join(miss) + "."
            if miss else "")
