"""One helper for every chapter: run folder, seeds, headline numbers, checks, glue, figures.

A chapter notebook does its science with the method's library calls and hands the
bookkeeping to a :class:`Chapter`::

    ch = Chapter("rait", params, output_dir, seeds)     # run folder, reproduce box
    for seed in ch.seeds:
        ...                                              # one run of the method
        ch.record(seed, over_refusal_craft=..., over_refusal_cor=...)
    ch.headline("over_refusal_craft", bounds=stats.UNIT)  # mean and 95% CI over seeds
    ch.check("craft_vs_cor", "over-refusal", new=ch.per_seed("over_refusal_craft"),
             baseline=ch.per_seed("over_refusal_cor"), better="lower",
             subject="CRaFT", baseline_name="Cor-RAIT")  # paired, with its verdict
    ch.save(metrics, device=model.device)                # metrics.json: headline + checks
    ch.glue_all()                                        # numbers and sentences for the text

Intervals come from :mod:`kbnb.eval.stats` and verdicts from :mod:`kbnb.eval.verdicts`: with
several seeds the interval is a t interval over seeds and a comparison is paired over
seeds; with one seed the chapter passes per-question values and the interval is a
bootstrap over questions. An effect counts as shown only when its 95% interval excludes
no effect; otherwise, when the claim declares the smallest effect that matters
(``smallest_effect``: the paper's effect, with ``smallest_effect_source``) and the interval
lies inside ±that size, the sentence says that an effect of the paper's size is excluded,
and else that the data cannot tell (:mod:`kbnb.eval.verdicts`).

A headline or check with too few items for an interval (one seed and a single
per-item value, e.g. over-refusal on a test set where the untuned model knew one
question) does not stop the chapter: it is *not measurable*
(:func:`kbnb.eval.stats.not_measurable`: its value if any, no interval, n and the
reason), says so in the tables, in ``metrics.json`` (``not_measurable``) and in the glued
``not_measurable_note``; a check then has status UNCLEAR and a sentence that says why.
"""
from __future__ import annotations

import html
import json
import re
import shlex
import time
from pathlib import Path

import numpy as np

from kbnb.core.seeds import check_seeds  # noqa: F401  (kbnb.report.chapter.check_seeds)
from kbnb.core.version import __version__
from kbnb.eval import metrics_file, stats, verdicts
from kbnb.report import recorded, runs
from kbnb.report.params import ChapterParams

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
CONSTANT_NOTE = (" Every seed gives the same value here (nothing the seeds draw changes it), "
                 "so the interval has zero width: it is exact for this model, not a "
                 "measurement of noise.")
STATUS_WORDS = verdicts.STATUS_WORDS  # {status: its words on the page}


def note_constant(verdict, *value_lists) -> None:
    """Append :data:`CONSTANT_NOTE` to a check's sentence when every list of per-seed
    values it compared holds one value repeated (a deterministic quantity)."""
    if CONSTANT_NOTE not in verdict.sentence and \
            all(len(v) > 1 and len(set(map(float, v))) == 1 for v in value_lists):
        verdict.sentence += CONSTANT_NOTE


def declared(sizes: dict, claim: str) -> dict:
    """The ``smallest_effect`` / ``smallest_effect_source`` keywords of :meth:`Chapter.check`
    for ``claim``, from a chapter's table ``{claim: (size, source) | None}`` of the smallest
    effect that matters for each of its claims (None: the claim declares none and never
    reads "excluded at the paper's size"). A claim missing from the table is an error, so
    that every claim says which."""
    if claim not in sizes:
        raise ValueError(f"claim {claim!r} is not in the chapter's table of smallest effects "
                         f"({sorted(sizes)}): declare its size and source, or None")
    entry = sizes[claim]
    size, source = (None, None) if entry is None else entry
    verdicts.check_smallest_effect(size, source)
    return {"smallest_effect": size, "smallest_effect_source": source}


def _key(name: str) -> str:
    if not isinstance(name, str) or not _KEY.match(name):
        raise ValueError(f"name={name!r}: use letters, digits and underscores, starting "
                         "with a letter (it becomes a glue key and a JSON key)")
    return name


class Chapter:
    """Bookkeeping of one chapter run.

    name: the notebook's name (``"rait"``). params: the chapter's ``Params`` (see
    :mod:`kbnb.report.params`; its ``run_params()`` are hashed) or a flat dict; ``seeds``
    among them or given separately. output_dir: root of the run folders (default: the
    params' ``output_dir``, else ``runs``); results go to ``output_dir/<name>-<hash of params>/`` next to
    ``params.json``. seeds: the seeds of the stochastic parts (see :func:`check_seeds`).
    """

    def __init__(self, name: str, params, output_dir: str | Path | None = None, seeds=None,
                 real_example: str | None = None):
        if isinstance(params, ChapterParams):  # the chapter's typed parameters
            output_dir = params.as_dict().get("output_dir", "runs") if output_dir is None \
                else output_dir
            params = params.run_params()
        output_dir = "runs" if output_dir is None else output_dir
        self.name = name
        self.seeds = check_seeds(params.get("seeds") if seeds is None else seeds)
        self.params = {**params, "seeds": self.seeds}
        self.out = runs.run_dir(name, self.params, output_dir)
        self.t_start = time.time()
        self.real_example = real_example
        self._per_seed: dict[str, dict[int, float]] = {}
        self.headlines: dict[str, dict] = {}
        self.verdicts: dict[str, verdicts.Verdict] = {}
        self.seconds: dict[str, float] = {}
        self._check_data: dict[str, dict] = {}
        self.figures: dict[str, Path] = {}

    # ---- per-seed values ----------------------------------------------------------

    def record(self, seed: int, **values) -> None:
        """Store one seed's value of each named metric (floats)."""
        if seed not in self.seeds:
            raise ValueError(f"seed={seed} is not one of seeds={self.seeds}")
        for k, v in values.items():
            v = float(v)
            self._per_seed.setdefault(_key(k), {})[seed] = v

    def record_items(self, items_by_seed: dict, labels: dict, bounds: dict) -> dict:
        """Record every seed's items and declare a headline for each of ``labels``.

        ``items_by_seed``: ``{seed: {name: {"value", "per_item", "statistic"[, "items"]}}}``
        (``items``: what the per-item values are, default ``"questions"``);
        ``labels``: ``{name: label}`` of the headline metrics; ``bounds``: ``{name: (lo,
        hi)}``, each one's range (:meth:`headline`). A metric undefined (not
        finite) in some seed, e.g. AP with no correct answer in a tiny sample, gets no
        headline. Returns the last seed's items of the metrics defined in every seed
        (their ``per_item`` values feed one-seed checks)."""
        for seed, items in items_by_seed.items():
            self.record(seed, **{k: v["value"] for k, v in items.items()})
        last = {k: v for k, v in items_by_seed[self.seeds[-1]].items()
                if all(np.isfinite(items[k]["value"]) for items in items_by_seed.values())}
        for name, label in labels.items():
            if name in last:
                self.headline(name, per_item=last[name]["per_item"],
                              statistic=last[name]["statistic"], label=label,
                              items=last[name].get("items", "questions"), bounds=bounds[name])
        return last

    def has(self, name: str) -> bool:
        """Whether ``name`` was recorded for every seed."""
        return all(s in self._per_seed.get(name, {}) for s in self.seeds)

    def per_seed(self, name: str) -> list[float]:
        """The recorded values of ``name``, in the order of ``seeds`` (all must be there)."""
        got = self._per_seed.get(name, {})
        missing = [s for s in self.seeds if s not in got]
        if missing:
            raise ValueError(f"{name!r} has no value for seeds {missing}; record it for every seed")
        return [got[s] for s in self.seeds]

    def timed(self, label: str):
        """Context manager adding the wall time of its block to ``seconds[label]``."""
        ch = self

        class _T:
            def __enter__(self):
                self.t0 = time.time()

            def __exit__(self, *exc):
                ch.seconds[label] = ch.seconds.get(label, 0.0) + time.time() - self.t0
                return False

        return _T()

    # ---- headline numbers and checks ----------------------------------------------

    def _new_name(self, name: str, kind: str) -> None:
        """Headlines and checks share one glue namespace: a name is either, once."""
        _key(name)
        other = self.verdicts if kind == "headline" else self.headlines
        if name in other:
            raise ValueError(f"{name!r} is already a {'check' if kind == 'headline' else 'headline'}; "
                             "give the headline and the check different names")

    def headline(self, name: str, per_item=None, statistic=None, items: str = "questions",
                 label: str | None = None, *, bounds) -> dict:
        """The headline ``name`` with its 95% interval, stored for ``metrics.json``.

        bounds: the metric's range ``(lo, hi)``, None for an open side: ``stats.UNIT``
        for a rate, ROUGE, an AUC or a p-value, ``stats.UNBOUNDED`` for a difference.
        Required, so that every headline says its range; with a bounded range the
        interval over seeds is a t interval on the logit (log) scale and stays inside it
        (:func:`kbnb.eval.stats.ci95`), and ``metrics.json`` stores ``"range"``.

        Several seeds: the interval is over the recorded per-seed values (t interval).
        One seed: ``per_item`` (that run's per-question values, or columns for
        ``statistic``) gives a bootstrap over ``items``: name what they truly are
        (``"questions"``, ``"idk questions"``, ``"responses"``). label: how tables call it.

        Not measurable (:func:`kbnb.eval.stats.not_measurable`, no crash): one seed and
        fewer than two items, or one seed, a recorded value and no ``per_item`` (an
        interval over seeds needs two; pass no made-up items such as ``[v, v]``).
        """
        self._new_name(name, "headline")
        per_seed = self.per_seed(name) if name in self._per_seed else None
        if per_seed is not None and len(per_seed) >= 2:
            h = stats.headline(per_seed=per_seed, bounds=bounds)
        elif per_item is None:
            if per_seed is None:
                raise ValueError(f"headline {name!r}: one seed and no per_item values; with a "
                                 "single seed pass the run's per-question values")
            h = stats.not_measurable(
                per_seed[0], 1, "one seed: an interval over seeds needs at least 2, and "
                "this number has no per-item values", "seeds", per_seed)
            h["range"] = list(stats.check_bounds(bounds))
        else:
            h = stats.headline(per_seed=per_seed, per_item=per_item, statistic=statistic,
                               items=items, too_few="report", bounds=bounds)
        if label:
            h["label"] = label
        self.headlines[name] = h
        return h

    def check(self, name: str, effect: str, new, baseline, better: str = "higher", *,
              subject: str | None = None, baseline_name: str | None = None, unit: str = "",
              digits: int = 3, smallest_effect: float | None = None,
              smallest_effect_source: str | None = None, bounds=None,
              **compare) -> verdicts.Verdict:
        """A claim as a paired comparison with its verdict (:func:`kbnb.eval.verdicts.check`).

        new, baseline: paired values (one per seed, or per question for one seed), or
        a fixed target number as ``baseline``. ``over`` defaults to ``"seeds"`` when
        there is one value per seed (a one-seed run's single value too: its sentence
        says "only 1 seed"), else ``"questions"``. smallest_effect,
        smallest_effect_source: the smallest effect that matters (the paper's, in the
        units of new − baseline) and its source; with them an interval inside ±size
        reads "excluded at the paper's size" instead of "cannot tell". bounds: with a
        fixed target, the range of ``new`` (``stats.UNIT`` for a share or ROUGE), which
        keeps an interval over seeds inside the difference's range
        (:func:`kbnb.eval.verdicts.check`).
        """
        self._new_name(name, "check")
        size = dict(smallest_effect=smallest_effect, smallest_effect_source=smallest_effect_source)
        if "over" not in compare:
            n = len(new[0]) if isinstance(new, tuple) else np.size(new)
            compare["over"] = "seeds" if n == len(self.seeds) else "questions"
        try:
            v = verdicts.check(effect, new, baseline, better=better, unit=unit, subject=subject,
                               baseline_name=baseline_name, digits=digits, bounds=bounds,
                               **size, **compare)
        except stats.TooFewItems as e:  # e.g. one question: said, not a crash
            return self._not_measurable_check(name, effect, e.n, e.why(compare["over"]),
                                              compare["over"], subject, baseline_name, **size)
        if compare["over"] == "seeds" and all(
                np.ndim(x) == 0 or len(set(np.asarray(x, float).tolist())) == 1
                for x in (new, baseline)):
            v.sentence += CONSTANT_NOTE
        self.verdicts[name] = v
        return v

    def check_interval(self, name: str, effect: str, h: dict, p_value: float, test: str,
                       better: str = "higher", null: float = 0.0, digits: int = 3,
                       subject: str | None = None, headline: str | None = None,
                       smallest_effect: float | None = None,
                       smallest_effect_source: str | None = None) -> verdicts.Verdict:
        """A claim about one headline (e.g. a correlation) against ``null``: shown when its
        95% interval excludes ``null`` on the ``better`` side and ``p_value`` < 0.05;
        excluded at the paper's size when it does not and the interval lies inside
        ``null`` ± ``smallest_effect`` (:meth:`check`).

        h: a headline dict, stored under ``headline`` (a name other than ``name``) when
        given; p_value and test: the test of ``null``."""
        self._new_name(name, "check")
        size = dict(smallest_effect=smallest_effect, smallest_effect_source=smallest_effect_source)
        verdicts.check_smallest_effect(smallest_effect, smallest_effect_source)
        if headline is not None:
            self._new_name(headline, "headline")
            self.headlines[headline] = h
        if not stats.is_measurable(h):
            return self._not_measurable_check(name, effect, h["n"], h["reason"],
                                              h.get("items", "questions"), subject, None, **size)
        res = {"diff": h["mean"] - null, "ci95": [h["ci95"][0] - null, h["ci95"][1] - null],
               "p_value": float(p_value), "test": test, "n": h["n"], "ci_method": h["ci_method"]}
        base = None if null == 0 else f"{null:.{digits}f}"
        v = verdicts.verdict(effect, res, better=better, subject=subject, baseline=base,
                             digits=digits, **size)
        self.verdicts[name] = v
        self._check_data[name] = res
        return v

    def _not_measurable_check(self, name: str, effect: str, n: int, reason: str, over: str,
                              subject: str | None, baseline_name: str | None,
                              smallest_effect: float | None = None,
                              smallest_effect_source: str | None = None) -> verdicts.Verdict:
        """A check that has too few items for an interval: UNCLEAR (never EXCLUDED: no
        interval), with a sentence that says so, stored as ``{"measurable": False,
        "reason", "n"}`` in metrics.json, with the size the claim declared."""
        who = f"{subject}'s effect on {effect}" if subject else effect
        vs = f" relative to {baseline_name}" if baseline_name else ""
        sentence = (f"{who[0].upper()}{who[1:]}{vs} is not measurable here ({reason}): "
                    "the data cannot tell.")
        size = verdicts.check_smallest_effect(smallest_effect, smallest_effect_source)
        v = verdicts.Verdict("UNCLEAR", sentence, None, *size)
        self.verdicts[name] = v
        self._check_data[name] = {"measurable": False, "reason": reason, "n": int(n),
                                  "over": over}
        return v

    def not_measurable(self) -> dict:
        """``{name: reason}`` of the headlines and checks that have no interval."""
        out = {k: h["reason"] for k, h in self.headlines.items() if not stats.is_measurable(h)}
        out.update({k: d["reason"] for k, d in self._check_data.items()
                    if d.get("measurable") is False})
        return out

    def not_measurable_note(self) -> str:
        """One sentence naming the numbers without an interval and why ("" if none)."""
        bad = self.not_measurable()
        if not bad:
            return ""
        label = lambda k: self.headlines[k].get("label", k) if k in self.headlines else k  # noqa: E731
        parts = [f"{label(k)} ({r})" for k, r in bad.items()]
        return (f"{len(bad)} number{'s' if len(bad) > 1 else ''} of this run "
                f"{'have' if len(bad) > 1 else 'has'} too few items for a 95% interval and "
                f"{'are' if len(bad) > 1 else 'is'} reported as not measurable: "
                + "; ".join(parts) + ".")

    def status_counts(self) -> dict:
        """``{status: number of checks}`` for every status of :data:`verdicts.STATUSES`."""
        out = dict.fromkeys(verdicts.STATUSES, 0)
        for v in self.verdicts.values():
            out[v.status] += 1
        return out

    def summary(self) -> str:
        """One sentence on all checks, e.g. "2 of 4 expected effects are shown; for 1 the
        data cannot tell; for 1 the data exclude an effect of the paper's size." """
        c, n = self.status_counts(), len(self.verdicts)
        if n == 0:
            return "This run makes no checked claim."
        parts = [f"{c['PASS']} of {n} expected effects {'is' if c['PASS'] == 1 else 'are'} shown"]
        if c["UNCLEAR"]:
            parts.append(f"for {c['UNCLEAR']} the data cannot tell")
        if c["EXCLUDED"]:
            parts.append(f"for {c['EXCLUDED']} the data exclude an effect of the paper's size")
        if c["MISS"]:
            parts.append(f"{c['MISS']} {'goes' if c['MISS'] == 1 else 'go'} the opposite way")
        return "; ".join(parts) + "."

    # ---- output --------------------------------------------------------------------

    def table(self, names=None, digits: int = 3):
        """Headlines as a table: the mean with its 95% interval (± half its width, or the
        bounds when the interval is asymmetric, :func:`kbnb.eval.metrics_file.format_mean_ci`), n and
        how the interval was made (exact bounds are in metrics.json)."""
        import pandas as pd
        names = list(self.headlines) if names is None else list(names)
        rows = []
        for k in names:
            h = self.headlines[k]
            rows.append({"metric": h.get("label", k), "mean, 95% CI": metrics_file.format_mean_ci(h, digits),
                         "n": h["n"], "interval": h["ci_method"]})  # or "not measurable: why"
        return pd.DataFrame(rows).set_index("metric")

    def checks_table(self):
        import pandas as pd
        rows = [{"check": k, "result": STATUS_WORDS[v.status], "statement": v.sentence}
                for k, v in self.verdicts.items()]
        # a run may make no check (e.g. a real data set without the organism's targets)
        return pd.DataFrame(rows, columns=["check", "result", "statement"]).set_index("check")

    def save(self, metrics: dict | None = None, device=None) -> Path:
        """Write ``metrics.json`` next to ``params.json``: the chapter's own metrics plus
        ``headline`` (every headline with its interval), ``checks`` (status, sentence,
        difference and interval of each claim, and ``smallest_effect`` /
        ``smallest_effect_source``: the size it declared, None when none), ``per_seed``,
        ``seeds`` and ``seconds``."""
        m = dict(metrics or {})
        if self.headlines:
            m["headline"] = metrics_file.headline_section(self.headlines)
        m["checks"] = {k: {"status": v.status, "sentence": v.sentence,
                           **(v.result.as_dict() if v.result is not None
                              else self._check_data.get(k, {})),
                           "smallest_effect": v.smallest_effect,
                           "smallest_effect_source": v.smallest_effect_source}
                       for k, v in self.verdicts.items()}
        if self.not_measurable():  # said aloud (absent when every number has its interval)
            m["not_measurable"] = {"note": self.not_measurable_note(), **self.not_measurable()}
        m["per_seed"] = {k: [d[s] for s in self.seeds if s in d] for k, d in self._per_seed.items()}
        m["seeds"] = self.seeds
        m["seconds"] = {**m.get("seconds", {}), **self.seconds, "total": time.time() - self.t_start}
        return runs.save_metrics(self.out / "metrics.json", m, self.params, device=device)

    def glue_all(self, digits: int = 3) -> None:
        """Glue every headline (``name``: the mean, ``name_ci``: "mean ± hw" or "mean (lo to
        hi)" for an asymmetric interval,
        ``name_lo``/``name_hi``), every check (``name``: its sentence, ``name_status``),
        ``checks_summary``, ``not_measurable_note`` ("" when every number has an interval),
        ``n_seeds`` and ``seeds_text``, for ``{glue:text}``. A not-measurable headline glues
        its value (or "n/a") and ``name_ci`` "value (not measurable, n = k)"."""
        from myst_nb import glue
        for k, h in self.headlines.items():
            if not stats.is_measurable(h):  # the value if any, and the text says why
                glue(k, "n/a" if h["mean"] is None else _round(h["mean"], digits),
                     display=False)
                glue(k + "_ci", metrics_file.format_mean_ci(h, digits), display=False)
                glue(k + "_lo", "n/a", display=False)
                glue(k + "_hi", "n/a", display=False)
                continue
            glue(k, _round(h["mean"], digits), display=False)
            glue(k + "_ci", metrics_file.format_mean_ci(h, digits), display=False)
            glue(k + "_lo", _round(h["ci95"][0], digits), display=False)
            glue(k + "_hi", _round(h["ci95"][1], digits), display=False)
        for k, v in self.verdicts.items():
            glue(k, v.sentence, display=False)
            glue(k + "_status", STATUS_WORDS[v.status], display=False)
        glue("checks_summary", self.summary(), display=False)
        glue("not_measurable_note", self.not_measurable_note(), display=False)
        glue("n_seeds", len(self.seeds), display=False)
        glue("seeds_text", ", ".join(map(str, self.seeds)), display=False)
        self.glue_real_model()

    def real_model_sentence(self, recorded_dir: str | Path = "results") -> str:
        """What the recorded real-model runs of this chapter found, beside this run's
        claims (:func:`kbnb.report.recorded.comparison_sentence`)."""
        return recorded.comparison_sentence(self.name, {k: v.status for k, v in self.verdicts.items()},
                                            self.params.get("model_name", ""), recorded_dir)

    def glue_real_model(self, recorded_dir: str | Path = "results") -> None:
        """Glue ``real_model_comparison`` (:meth:`real_model_sentence`)."""
        from myst_nb import glue
        glue("real_model_comparison", self.real_model_sentence(recorded_dir), display=False)

    def figure(self, name: str, fig, dpi: int = 120) -> None:
        """Save ``fig`` as ``<run folder>/<name>.png``, glue it under ``name`` and close
        it, so that it appears once: where the text places it with ``glue:figure``.
        (Returns nothing, so that the cell shows nothing.)"""
        import matplotlib.pyplot as plt
        from myst_nb import glue
        path = self.out / f"{_key(name)}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        glue(name, fig, display=False)
        plt.close(fig)
        self.figures[name] = path

    def reproduce(self):
        """The "reproduce this page" box: the papermill command with these parameters,
        versions, device and threads, and how to run it on a real model."""
        from IPython.display import HTML
        return HTML(reproduce_html(self.name, self.params, self.real_example))


def _round(x: float, digits: int) -> float:
    return round(float(x), digits)


def papermill_command(name: str, params: dict) -> str:
    """The exact command that re-runs notebook ``name`` with ``params``."""
    args = []
    for k, v in params.items():
        if isinstance(v, (list, dict, tuple)):
            args.append(f"-y {shlex.quote(json.dumps({k: v}))}")
        elif isinstance(v, bool) or v is None or isinstance(v, (int, float)):
            args.append(f"-p {k} {v!r}")  # papermill reads True, False, None, ints, floats
        else:
            args.append(f"-p {k} {shlex.quote(str(v))}")
    return f"papermill notebooks/{name}.ipynb runs/{name}.ipynb \\\n    " + " \\\n    ".join(args)


def lock_note() -> str:
    """Which lock of exact versions ``make env`` installs: ``requirements.lock`` beside the
    package, named with the first 12 hex digits of its sha256."""
    import hashlib
    from pathlib import Path
    lock = Path(__file__).resolve().parents[2] / "requirements.lock"
    if not lock.exists():
        return "no requirements.lock beside this installation of kbnb"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    return f"which installs the exact versions in requirements.lock, sha256 {digest}"


def reproduce_html(name: str, params: dict, real_example: str | None = None) -> str:
    import platform

    import torch
    import transformers
    dev = params.get("device", "auto")
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    env = (f"kbnb {__version__}, Python {platform.python_version()}, torch {torch.__version__}, "
           f"transformers {transformers.__version__}; device {dev}, {torch.get_num_threads()} "
           f"CPU threads")
    real = real_example or (f"papermill notebooks/{name}.ipynb runs/{name}-real.ipynb "
                            "-p model_name smollm2 -p data_dir ../shared/data")
    return ("<details class='kbnb-reproduce'><summary><b>Reproduce this page</b> "
            f"({html.escape(env)})</summary>\n"
            f"<p>From the repository root, after <code>make env</code> ({lock_note()}):</p>"
            f"<pre>{html.escape(papermill_command(name, params))}</pre>"
            "<p>On a real model and data set (any Hugging Face causal LM; "
            "<code>data_dir</code> or <code>$KBNB_DATA_DIR</code> holds the data):</p>"
            f"<pre>{html.escape(real)}</pre>"
            "<p>Results land in <code>output_dir/" + html.escape(name) +
            "-&lt;hash of the parameters&gt;/</code>, next to <code>params.json</code>.</p>"
            "</details>")
