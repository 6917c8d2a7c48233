"""The LUNAR chapter's presentation (``notebooks/lunar.ipynb``): its tables, figures and
computed sentences, and the glue of its text, from the results of
:mod:`kbnb.chapters.lunar` (its run, records and checks)."""
from __future__ import annotations

import torch

from kbnb.chapters.lunar import PAPER_TOFU_LLAMA2, REF_REFUSAL_MIN, Params, other_selection
from kbnb.eval import metrics_file
from kbnb.eval.metrics import normalize_answer
from kbnb.lm import activations as A
from kbnb.unlearning.lunar import mean_activations, prompts_of
from kbnb.unlearning.lunar_eval import pca_2d

SELECTION_WORDS = {"edit": "the edit's DS on validation rows",
                   "steering": "refusal-likeness under steering (official)"}
METRIC_LABELS = {"rouge1_forget": "R1 forget", "rouge1_retain_eval": "R1 retain", "ds": "DS",
                 "rq_forget": "RQ", "mrr_forget": "MRR forget", "thr_forget": "THR forget",
                 "mrr_retain_eval": "MRR retain", "thr_retain_eval": "THR retain",
                 "refusal_rate_forget": "refusal forget",
                 "refusal_rate_retain_eval": "refusal retain",
                 "refusal_rate_ref_eval": "refusal ref"}


def sets_summary(model, sets: dict) -> str:
    """One line: the model's depth and the sizes of one seed's sets."""
    return (f"{A.n_layers(model)} layers; D_f {len(sets['forget'])}, "
            f"D_r {len(sets['retain'])} (+{len(sets['retain_eval'])} to evaluate), "
            f"D_ref {len(sets['ref'])} prompts")


def sets_table(sets: dict, vanilla: dict, seed: int):
    """One seed's sets before unlearning: the vanilla model's refusal rate on each, an
    example question and its answer. vanilla: that seed's :func:`evaluate_seeds` result."""
    import pandas as pd
    names = {"forget": "D_f (forget)", "retain_eval": "D_r (retain, eval)",
             "ref_eval": "D_ref (reference)"}
    return pd.DataFrame({"set": list(names.values()),
                         "refusal rate (seed %d)" % seed: [vanilla["metrics"][f"refusal_rate_{n}"]
                                                            for n in names],
                         "example question": [sets[n][0]["question"] for n in names],
                         "vanilla answer": [vanilla["generations"][n][0] for n in names]})


def layers_summary(run: dict, seed: int, layer_given: bool) -> str:
    """One line: the edited layer of one seed's run, how it was chosen, the top-k layers,
    and the layer the other selection picks."""
    how = "given" if layer_given else f"{run['selection']} selection"
    other = "" if layer_given else (
        f"; {other_selection(run['selection'])} selection picks "
        f"{run['other_layer'] if run['other_layer'] is not None else 'the same layer'}")
    return (f"edited layer (seed {seed}): {run['main_layers'][0]} ({how}); "
            f"top-{len(run['topk_layers'])} layers: {run['topk_layers']}{other}")


def solver_table(runs: dict):
    """Per seed and edited layer: rows, the MSE before the edit and after each solver,
    and each solver's time (``runs``: ``{seed: run}``, :func:`kbnb.chapters.lunar.run_seeds`)."""
    import pandas as pd
    return pd.DataFrame([{"seed": s, "layer": r["layer"], "forget rows": r["rows_forget"],
                          "retain rows": r["rows_retain"], "MSE before": r["mse_before"],
                          "MSE closed form": r["mse_closed_form"],
                          "MSE SGD (20 epochs)": r["mse_sgd"],
                          "seconds closed form": r["seconds_closed_form"],
                          "seconds SGD": r["seconds_sgd"]}
                         for s in runs for r in runs[s]["edit"].report]).set_index("seed")


def model_labels(run: dict) -> dict:
    """Row labels of the vanilla, LUNAR and top-k models (``run``: one seed's run)."""
    return {"vanilla": "vanilla", "lunar": f"LUNAR (layer {run['main_layers'][0]})",
            "topk": f"LUNAR top-{len(run['topk_layers'])} "
                    f"(layers {', '.join(map(str, run['topk_layers']))})"}


def selection_table(runs: dict, lun: dict, oth: dict | None, p: Params):
    """Both selections side by side: per selection the layer each seed edits and the mean
    over seeds of forget ROUGE-1, retain ROUGE-1 and DS on the evaluation sets. None when
    the layer was given (no selection ran; ``oth`` is then None)."""
    import pandas as pd
    if p.layer is not None or oth is None:
        return None
    other = other_selection(p.selection)
    rows = []
    for name, res, layer_of in ((p.selection, lun, lambda r: r["main_layers"][0]),
                                (other, oth, lambda r: r["other_layer"] if r["other_layer"]
                                 is not None else r["main_layers"][0])):
        ms = [res[s]["metrics"] for s in runs]
        rows.append({"selection": f"{name}: {SELECTION_WORDS[name]}"
                                  + (" (edited here)" if name == p.selection else ""),
                     "layer per seed": ", ".join(str(layer_of(runs[s])) for s in runs),
                     "R1 forget": sum(m["rouge1_forget"] for m in ms) / len(ms),
                     "R1 retain": sum(m["rouge1_retain_eval"] for m in ms) / len(ms),
                     "DS": sum(m["ds"] for m in ms) / len(ms)})
    return pd.DataFrame(rows).set_index("selection")


def show_selection(sel_table, p: Params):
    """What the notebook shows of :func:`selection_table`: the table, formatted; when the
    layer was given, the sentence that says so (:func:`selection_sentence`)."""
    if sel_table is None:
        print(selection_sentence(None, p, {}, None))
        return None
    return sel_table.style.format("{:.3f}", subset=["R1 forget", "R1 retain"]).format(
        "{:.1f}", subset=["DS"])


def selection_sentence(ch, p: Params, runs: dict, sel_table) -> str:
    """Both layer selections and what their edits do on the evaluation sets (the
    :func:`selection_table` rows), with the paired DS check when there is one."""
    if p.layer is not None or sel_table is None:
        return ("The layer was given as a parameter, so neither selection was used."
                if p.layer is not None else "")
    rows = sel_table.to_dict(orient="index")
    parts = []
    for name, r in rows.items():
        parts.append(f"{name.split(':')[0]} selection edits layer(s) {r['layer per seed']} "
                     f"(seeds {', '.join(map(str, ch.seeds))}): forget ROUGE-1 "
                     f"{r['R1 forget']:.3f}, retain ROUGE-1 {r['R1 retain']:.3f}, DS {r['DS']:.1f}")
    v = ch.verdicts.get("selection_ds")
    fitted = [s for s in ch.seeds if "topped up" in (runs[s].get("retain_val_source") or "")]
    caveat = (f" For seed(s) {', '.join(map(str, fitted))} the retain split had too few rows "
              "outside the fitting and evaluation samples, so part of the retain validation rows "
              "are fitting rows, which the edit keeps by construction: there the edit selection "
              "sees less of the damage to retained knowledge." if fitted else "")
    return ("; ".join(parts) + ". " + (v.sentence if v is not None else "") + caveat
            + f" The chapter edits the layer {p.selection} selection picks, "
            + ("which reads only validation rows: the forget facts asked in other words and "
               "retain questions outside both the fitting and the evaluation samples."
               if p.selection == "edit" else "the official code's choice."))


def tofu_sentence(tofu: dict | None, forget_split: str) -> str:
    """The chapter's computed sentence on TOFU's forget quality and model utility."""
    if not tofu:
        return ("This run did not compute TOFU's forget quality and model utility: they need "
                f"a retain organism trained without {forget_split}'s authors (minutes on a CPU); "
                "run with `-p forget_quality True`. The unlearning chapter measures LUNAR "
                "that way on forget10, beside six other methods.")
    seeds = [k for k in tofu if k != "untouched"]
    fq = sum(tofu[s]["forget_quality"] for s in seeds) / len(seeds)
    mu = sum(tofu[s]["model_utility"] for s in seeds) / len(seeds)
    u = tofu["untouched"]
    return (f"Against the retain organism of {forget_split}, the edited models have forget "
            f"quality {fq:.2g} and model utility {mu:.3f} (mean over {len(seeds)} seeds; the "
            f"untouched organism: {u['forget_quality']:.2g} and {u['model_utility']:.3f}).")


def mean_table(results: dict, labels: dict, paper: dict | None = None):
    """Mean over seeds of each metric of each model: ``results`` ``{model: {seed:
    evaluate_edit result}}``; labels ``{model: row label}``; the paper's row appended."""
    import pandas as pd
    rows = []
    for k, per_seed in results.items():
        ms = [r["metrics"] for r in per_seed.values()]
        rows.append({"model": labels[k], **{v: sum(m[c] for m in ms) / len(ms)
                                             for c, v in METRIC_LABELS.items() if c in ms[0]}})
    if paper:
        rows.append({"model": "paper: TOFU, Llama-2-7B (not this run)",
                     "R1 forget": paper["rouge1_forget"], "R1 retain": paper["rouge1_retain"],
                     "DS": paper["ds"], "RQ": paper["rq"]})
    return pd.DataFrame(rows).set_index("model")


def plot_layers_and_solver(scores, main_layers, topk_layers, report, edit_scores=None):
    """Left: layer selection scores, steering (refusal-likeness) and, when given, each
    layer's edit on the validation rows (DS_val, right axis); right: the SGD recipe's MSE
    per epoch vs the exact fit."""
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    lay = [s["layer"] for s in scores]
    ax1.plot(lay, [s["score"] for s in scores], "o-", label="steering: refusal similarity")
    ax1.plot(lay, [s["refusal_rate"] for s in scores], "s--", alpha=0.6,
             label="steering: refusal rate (keywords)")
    for l in topk_layers:
        ax1.axvline(l, color="C3" if l == main_layers[0] else "C1", ls=":", lw=1.5)
    ax1.set_xlabel("layer (index)")
    ax1.set_ylabel("steering: mean over D_f prompts (0–1)")
    ax1.set_title("Layer selection: steering a layer, or editing it")
    handles, names = ax1.get_legend_handles_labels()
    if edit_scores:
        ax3 = ax1.twinx()
        ax3.plot([s["layer"] for s in edit_scores], [s["ds_val"] for s in edit_scores], "^-",
                 color="C2", label="edit: DS on validation rows (right, lower is better)")
        ax3.set_ylabel("edit: DS_val (0–141)")
        h3, n3 = ax3.get_legend_handles_labels()
        handles, names = handles + h3, names + n3
    ax1.legend(handles, names, fontsize=7)
    hist = report["sgd_history"]
    ax2.plot(range(1, len(hist) + 1), hist, "o-", label="SGD recipe (AdamW, 64-row batches)")
    ax2.axhline(report["mse_closed_form"], color="k", ls="--", label="closed form (exact)")
    ax2.axhline(report["mse_before"], color="grey", ls=":", label="before the edit")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("MSE over token rows (activation units²)")
    ax2.set_title(f"Fitting layer {main_layers[0]}'s down-projection")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pca(model, edited, tok, groups: dict, layers, activation="residual", position="last",
             batch_size: int = 64):
    """PCA of the activations of each group of prompts (``{name: prompts}``) at ``layers``,
    before (left) and after (right) the edit; one PCA per panel."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 4 * len(layers)), squeeze=False)
    for j, (title, m) in enumerate((("before (vanilla)", model), ("after LUNAR", edited))):
        acts = {g: mean_activations(m, tok, p, layers, activation, position, batch_size)
                for g, p in groups.items()}
        for i, l in enumerate(layers):
            xy = pca_2d(torch.cat([acts[g][i] for g in groups]))
            s = 0
            for g in groups:
                n = len(groups[g])
                axes[i, j].scatter(xy[s:s + n, 0], xy[s:s + n, 1], s=10, alpha=0.6, label=g)
                s += n
            axes[i, j].set_title(f"layer {l}, {title}")
            axes[i, j].set_xlabel("PC 1 (activation units)")
            axes[i, j].set_ylabel("PC 2 (activation units)")
            axes[i, j].legend(fontsize=8)
    fig.tight_layout()
    return fig


def pca_figure(model, edited, tok, sets: dict, run: dict, p: Params):
    """:func:`plot_pca` of one seed's forget, held-out retain and held-out reference
    prompts at the edited layer and the last layer."""
    groups = {"D_f": prompts_of(tok, sets["forget"]),
              "D_r": prompts_of(tok, sets["retain_eval"]),
              "D_ref": prompts_of(tok, sets["ref_eval"])}
    layers = sorted({run["main_layers"][0], A.n_layers(model) - 1})
    return plot_pca(model, edited, tok, groups, layers, p.activation, p.position, p.batch_size)


def answers_table(sets: dict, vanilla: dict, lun: dict, tk: dict):
    """Two DataFrames for one seed: six forget questions spread over the split with the
    vanilla, LUNAR and top-k answers, and four held-out retain questions with the
    vanilla and LUNAR answers (vanilla, lun, tk: that seed's evaluation results)."""
    import pandas as pd
    F = sets["forget"]
    idx = list(range(0, len(F), max(1, len(F) // 6)))[:6]
    forget = pd.DataFrame({"question": [F[i]["question"] for i in idx],
                           "vanilla": [vanilla["generations"]["forget"][i] for i in idx],
                           "LUNAR": [lun["generations"]["forget"][i] for i in idx],
                           "top-k": [tk["generations"]["forget"][i] for i in idx]})
    R = sets["retain_eval"][:4]
    retain = pd.DataFrame({"question": [r["question"] for r in R],
                           "vanilla": vanilla["generations"]["retain_eval"][:4],
                           "LUNAR": lun["generations"]["retain_eval"][:4]})
    return forget, retain


def layer_how(ch, p: Params, runs: dict) -> str:
    """How the first seed's edited layer came about, for the sentence "Layer N ...": given
    as a parameter, or chosen by the selection (with the selected layer over seeds, as
    :meth:`kbnb.report.chapter.Chapter.glue_all` glues ``selected_layer_ci``)."""
    if p.layer is not None:
        return "was given as a parameter"
    same = len({runs[s]["main_layers"][0] for s in ch.seeds}) == 1
    return (f"was chosen by {SELECTION_WORDS[p.selection]}"
            + (" for every seed" if same else f" for seed {ch.seeds[0]}")
            + " (selected layer over seeds: "
            + metrics_file.format_mean_ci(ch.headlines["selected_layer"], 3) + ")")


def glue_text(ch, p: Params, runs: dict, lun: dict, table, labels: dict, refusals,
              tofu: dict | None, precondition: dict | None = None, sel_table=None) -> None:
    """Glue the numbers and sentences of the chapter's text (myst_nb): the chapter's
    headlines and checks, the mean table's values per model, the selected layers, the
    first seed's solver report, the paper's numbers, and the computed sentences (the
    precondition's, :func:`ref_refusal_precondition`, as ``precondition_sentence``)."""
    from myst_nb import glue

    ch.glue_all()
    glue("precondition_sentence", precondition["sentence"] if precondition else "",
         display=False)
    glue("ref_refusal_min", f"{REF_REFUSAL_MIN:.0%}", display=False)
    glue("tofu_sentence", tofu_sentence(tofu, p.forget_split), display=False)
    mean = table.to_dict(orient="index")
    for key, lab in (("van", "vanilla"), ("lun", "lunar"), ("tk", "topk")):
        row = mean[labels[lab]]
        for g, c in (("r1f", "R1 forget"), ("r1r", "R1 retain"), ("ds", "DS"), ("rq", "RQ"),
                     ("mrrf", "MRR forget"), ("thrf", "THR forget"), ("reff", "refusal forget"),
                     ("refr", "refusal ref")):
            glue(f"{key}_{g}", row[c], display=False)
    s0 = ch.seeds[0]
    r0 = runs[s0]
    glue("first_seed", s0, display=False)
    glue("edited_layer", r0["main_layers"][0], display=False)
    glue("topk_layers", ", ".join(map(str, r0["topk_layers"])), display=False)
    glue("layer_how", layer_how(ch, p, runs), display=False)
    glue("selection_compare", selection_sentence(ch, p, runs, sel_table), display=False)
    rep = r0["edit"].report[0]
    for k, v in (("mse_before", rep["mse_before"]), ("mse_cf", rep["mse_closed_form"]),
                 ("mse_sgd", rep["mse_sgd"]), ("sec_cf", rep["seconds_closed_form"]),
                 ("sec_sgd", rep["seconds_sgd"]),
                 ("speedup", rep["seconds_sgd"] / max(rep["seconds_closed_form"], 1e-9))):
        glue(k, v, display=False)
    for key in ("rouge1_forget", "rouge1_retain", "ds", "rq"):
        glue({"rouge1_forget": "paper_r1f", "rouge1_retain": "paper_r1r"}.get(key, f"paper_{key}"),
             PAPER_TOFU_LLAMA2[key], display=False)
    sc = sorted((x["score"] for x in r0["scores"]), reverse=True)
    gap = sc[0] - sc[1] if len(sc) > 1 else float("nan")
    glue("selection_sentence",
         f"under steering the best candidate layer beats the runner-up by only {gap:.3f} in "
         "refusal similarity, so which layer steering picks depends on small differences"
         if gap < 0.02 else f"under steering the best candidate layer beats the runner-up by "
         f"{gap:.3f} in refusal similarity" if gap == gap else "only one candidate layer "
         "was scored", display=False)
    clean = {normalize_answer(r) for r in refusals}
    gens = [g for s in ch.seeds for g in lun[s]["generations"]["forget"]]
    glue("clean_refusals", sum(normalize_answer(g) in clean for g in gens) / len(gens),
         display=False)
    thr_f = mean[labels["lunar"]]["THR forget"]
    glue("rank_sentence",
         f"{thr_f:.0%} of them stay among the 100 most likely tokens, so the knowledge is "
         "redirected rather than erased (the attacks chapter probes exactly this)"
         if thr_f >= 0.5 else f"only {thr_f:.0%} of them stay among the 100 most likely tokens",
         display=False)
    glue("fit_sentence",
         f"Even the exact fit does not reach every target: the mean distance of a forget row "
         f"from its target is {rep['forget_residual_closed_form']:.0%} of the shift, because one "
         f"linear map must also keep {rep['rows_retain']} retain rows in place while moving "
         f"{rep['rows_forget']} forget rows." if rep["forget_residual_closed_form"] > 0.05 else
         "The exact fit moves the forget rows onto their targets.", display=False)
    glue("n_ci_checks", len(ch.verdicts), display=False)
    glue("check_list", " ".join(v.sentence for v in ch.verdicts.values()), display=False)
