"""The unlearning chapter's tables and figures (``notebooks/unlearning.ipynb``): the
results table of every model x metric, the chosen settings, each method's tuning grid on
the validation rows, and the field's forget-quality / model-utility figure beside
open-unlearning's reproduced numbers. Its glue and sentences are
:mod:`kbnb.chapters.unlearning`."""
from __future__ import annotations

from kbnb.eval.metrics_file import format_mean_ci
from kbnb.unlearning.methods import UNLEARNING_METHODS
from kbnb.unlearning.tuning import KEEP, shown


def display_name(method: str) -> str:
    """The method's name in tables and figures (its class's ``display_name``)."""
    return UNLEARNING_METHODS[method].display_name if method in UNLEARNING_METHODS else method


REPORTED = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "privleak")
LABELS = {"forget_quality": "forget quality", "model_utility": "model utility",
          "forget_truth_ratio": "forget truth ratio", "forget_rouge": "forget ROUGE-L",
          "privleak": "privleak (%)", "forget_prob": "forget probability",
          "mia_auc": "MIA AUC (Min-K%)"}
TABLE_METRICS = REPORTED + ("forget_prob", "mia_auc")


FQ_FLOOR = 1e-30  # forget qualities below this are drawn at it (open-unlearning's reach 1e-239)


def results_table(rows: dict, headlines: dict, digits: int = 3, floored=()):
    """One table of every model x metric: ``rows`` maps a row name to plain values (the
    untouched and retain organisms: one deterministic value each), ``headlines`` maps a
    method to ``{metric: headline dict}`` (mean with its 95% interval over seeds).
    ``floored``: methods whose forget truth ratio the +1e-10 floor decides for some
    items (:func:`floor_note`): their truth ratio and forget quality cells get a †."""
    import pandas as pd

    def num(v):
        return "n/a" if v is None else (f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.{digits}f}")

    def cell(h):
        if h.get("ci95") is None:  # not measurable (one seed): its value and why
            return format_mean_ci(h, digits)
        if h["mean"] != 0 and abs(h["mean"]) < 1e-3:
            return f"{h['mean']:.2e} ({h['ci95'][0]:.1e} to {h['ci95'][1]:.1e})"
        return format_mean_ci(h, digits)

    table = [{"model": name, **{LABELS[k]: num(vals.get(k)) for k in TABLE_METRICS}}
             for name, vals in rows.items()]
    dagger = ("forget_truth_ratio", "forget_quality")
    for method, hs in headlines.items():
        table.append({"model": display_name(method),
                      **{LABELS[k]: cell(hs[k]) + (" †" if method in floored and k in dagger
                                                    else "") for k in TABLE_METRICS}})
    return pd.DataFrame(table).set_index("model")


def method_table(base_p: dict, retain_p: dict | None, heads: dict, methods, floored=()):
    """:func:`results_table` of the untouched model, the retain model (if any) and every
    method's headlines (n/a where a metric was not recorded); ``floored`` methods marked."""
    rows = {"untouched model": base_p}
    if retain_p:
        rows["retain model"] = retain_p
    missing = {"mean": float("nan"), "ci95": [float("nan")] * 2}
    return results_table(rows, {m: {k: heads[m].get(k, missing) for k in TABLE_METRICS}
                                for m in methods}, floored=floored)


def settings_table(tuned: dict):
    """One row per method: the chosen setting, its validation forget quality and utility,
    how many settings were tried, and why this one."""
    import pandas as pd
    rows = []
    for m, t in tuned.items():
        q = t["points"][t["chosen"]]
        rows.append({"method": display_name(m), "chosen setting": shown(t["setting"]),
                     "settings tried": len(t["points"]),
                     "validation forget quality": f"{q['forget_quality']:.2g}",
                     "validation utility": f"{q['utility']:.3f}", "why": t["reason"]})
    return pd.DataFrame(rows).set_index("method")


def frontier_figure(tuned: dict, untouched: dict, retain: dict | None = None,
                    keep: float = KEEP):
    """Each method's grid on the validation rows: utility (x) against forget quality (y,
    log), one colour per method, the chosen setting ringed; the dashed line is ``keep`` of
    the untouched model's validation utility (the square); the star is the retain model
    (forget quality 1 against itself), when given."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    clip = lambda v: max(float(v), FQ_FLOOR)  # noqa: E731
    for i, (m, t) in enumerate(tuned.items()):
        c = colors[i % len(colors)]
        xs = [q["utility"] for q in t["points"]]
        ys = [clip(q["forget_quality"]) for q in t["points"]]
        ax.scatter(xs, ys, color=c, s=22, alpha=0.7, label=f"{display_name(m)} ({len(xs)})")
        q = t["points"][t["chosen"]]
        ax.scatter([q["utility"]], [clip(q["forget_quality"])], s=150, facecolor="none",
                   edgecolor=c, linewidth=2)
    u0 = untouched["utility"]
    ax.scatter([u0], [clip(untouched["forget_quality"])], marker="s", s=90, color="k",
               facecolor="none", label="untouched model")
    if retain is not None:
        ax.scatter([retain["utility"]], [1.0], marker="*", s=160, color="k",
                   label="retain model")
    ax.axvline(keep * u0, color="tab:gray", ls="--", lw=1)
    ax.axhline(0.05, color="tab:gray", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(FQ_FLOOR / 10, 3)
    ax.set_xlabel("validation utility (retain probability and truth ratio, harmonic mean)")
    ax.set_ylabel("validation forget quality (log)")
    ax.set_title("Each method's grid on the validation rows (ringed: chosen)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def fq_mu_figure(points: dict, per_seed: dict, base: dict, retain: dict, reference: dict,
                 reference_label: str):
    """The field's plot: model utility (x) against forget quality (y, log scale), this run
    (left: methods' seed means with their seeds, the untouched and the retain organism)
    beside open-unlearning's reference numbers (right), each labelled."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    clip = lambda v: max(float(v), FQ_FLOOR)  # noqa: E731
    for i, (m, (mu, fq)) in enumerate(points.items()):
        c = colors[i % len(colors)]
        s_mu, s_fq = per_seed[m]
        ax1.scatter(s_mu, [clip(v) for v in s_fq], color=c, s=12, alpha=0.5)
        ax1.scatter([mu], [clip(fq)], color=c, s=60, edgecolor="k",
                    label=display_name(m))
    for name, vals, marker in (("untouched organism", base, "s"), ("retain organism", retain, "*")):
        ax1.scatter([vals["model_utility"]], [clip(vals["forget_quality"])], marker=marker,
                    s=140, color="k", facecolor="none" if marker == "s" else "k", label=name)
    for i, (m, (fq, mu, _)) in enumerate(reference.items()):
        marker = {"finetuned": "s", "retain": "*"}.get(m, "o")
        ax2.scatter([mu], [clip(fq)], marker=marker, s=70 if marker == "o" else 140,
                    color="k" if marker != "o" else colors[(list(UNLEARNING_METHODS).index(m)
                                                              if m in UNLEARNING_METHODS else i)
                                                             % len(colors)],
                    facecolor="none" if marker == "s" else None,
                    label={"finetuned": "finetuned", "retain": "retain"}.get(
                        m, display_name(m)))
    for ax, title in ((ax1, "This run (the organism; big dots: mean over seeds)"),
                      (ax2, reference_label)):
        ax.set_yscale("log")
        ax.axhline(0.05, color="tab:gray", ls=":", lw=1)
        ax.axhline(FQ_FLOOR, color="tab:gray", ls="--", lw=0.8)
        ax.set_xlabel("model utility (harmonic mean of 9 parts, 0 to 1)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="lower left" if ax is ax2 else "best")
        ax.set_xlim(-0.02, 1.02)
    ax1.set_ylabel(f"forget quality (KS p-value, log; below {FQ_FLOOR:.0e} drawn at it)")
    ax1.set_ylim(FQ_FLOOR / 10, 3)
    fig.tight_layout()
    return fig
