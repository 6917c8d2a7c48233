"""Do the book's effects survive a change of organism? (not run by the book or CI)

Trains the organisms of several seeds (``tinyworld:N``, each on its own world), runs
every chapter on each with its default parameters (papermill), and prints one table
chapter x headline metric x organism seed (each chapter's mean and interval over its own
seeds), with the spread between organisms, and every check's verdict per organism.

    .venv/bin/python benchmarks/organism_seeds.py --seeds 0 1 2 [--chapters rtuning lunar]

Results go to ``runs/organism_seeds/`` (executed notebooks, metrics, ``table.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ("tinyworld", "rtuning", "rait", "lunar", "lunar_attacks", "npo_toy", "unlearning")


def headline(chapter: str, m: dict) -> dict:
    """One chapter's headline means (with the 95% interval of that run) and the status
    of each of its checks, from the ``headline`` and ``checks`` sections of metrics.json."""
    out = {}
    for k, h in (m.get("headline") or {}).items():
        out[h.get("label", k)] = {"mean": h["mean"], "ci95": h["ci95"]}
    for k, c in (m.get("checks") or {}).items():
        out[f"check: {k}"] = c.get("status")
    return out


def run_chapter(chapter: str, seed: int, out: Path, extra: dict) -> bool:
    params = {"model_name": f"tinyworld:{seed}", "output_dir": str(out / "runs"), **extra}
    if chapter == "lunar_attacks":  # attack the edit the LUNAR chapter selected (as the book does)
        lunar_runs = sorted((out / "runs").glob("lunar-*/metrics.json"), key=lambda p: p.stat().st_mtime)
        mine = [p.parent for p in lunar_runs
                if json.loads(p.read_text())["params"].get("model_name") == f"tinyworld:{seed}"]
        if mine:
            params["lunar_dir"] = str(mine[-1])
    args = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{chapter}.ipynb"),
            str(out / f"{chapter}-seed{seed}.ipynb"), "--cwd", str(ROOT), "--no-progress-bar"]
    for k, v in params.items():
        args += ["-p", k, str(v)] if not isinstance(v, (int, float)) else ["-p", k, str(v)]
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if proc.returncode:
        print(f"  {chapter} seed {seed} FAILED:\n{proc.stderr[-2000:]}", flush=True)
        return False
    print(f"  {chapter} seed {seed}: {time.time() - t0:.0f}s", flush=True)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--chapters", nargs="+", default=list(CHAPTERS), choices=CHAPTERS)
    ap.add_argument("--out", default=str(ROOT / "runs" / "organism_seeds"))
    ap.add_argument("--table-only", action="store_true", help="only rebuild the table from --out")
    ap.add_argument("--margins", action="store_true",
                    help="only print each organism's target margins from its tinyworld run")
    ap.add_argument("--with-runs", nargs="*", default=[],
                    help="more run folders to read (e.g. a book build's runs/, whose default "
                         "model 'tinyworld' is organism 0)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.margins:
        text = render_margins(newest_metrics(out, args.seeds, [Path(r) for r in args.with_runs],
                                             "tinyworld"), args.seeds)
        print(text)
        (out / "margins.md").write_text(text)
        return
    if not args.table_only:
        for seed in args.seeds:
            print(f"organism seed {seed}", flush=True)
            for ch in args.chapters:
                run_chapter(ch, seed, out, {})
    table = collect(out, args.seeds, [Path(r) for r in args.with_runs])
    (out / "table.json").write_text(json.dumps(table, indent=1))
    print(render(table, args.seeds))
    (out / "table.md").write_text(render(table, args.seeds))


def newest_metrics(out: Path, seeds, more=(), chapter: str = "tinyworld") -> dict:
    """``{seed: metrics}`` of ``chapter``'s newest run per organism seed."""
    return {seed: m for (seed, ch), (_, m) in _newest(out, seeds, more).items() if ch == chapter}


def render_margins(by_seed: dict, seeds) -> str:
    """Each organism's targets as value (limit, margin): ``kbnb.eval.boundary.target_margins``
    of its tinyworld run; a negative margin is a miss."""
    from kbnb.eval.boundary import target_margins
    def utility(m):  # the chapter saves both organisms' parts; the target reads the organism's
        u = m.get("utility")
        if not u:
            return None
        parts = {k: v for k, v in u["parts"]["organism"].items() if k != "model_utility"}
        return {**u, "parts": parts}

    rows = {s: target_margins(m, utility(m)) for s, m in by_seed.items()}
    names = list(dict.fromkeys(k for s in seeds for k in rows.get(s, {})))
    lines = ["| target | limit | " + " | ".join(f"organism {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for k in names:
        limits = {f"{rows[s][k][1]:.3g}" for s in seeds if k in rows.get(s, {})}
        cells = []
        for s in seeds:
            v = rows.get(s, {}).get(k)
            cells.append("n/a" if v is None else
                         f"{v[0]:.3g} ({'+' if v[2] >= 0 else '−'}{abs(v[2]):.3g})")
        lines.append(f"| {k} | {' / '.join(sorted(limits))} | " + " | ".join(cells) + " |")
    lines.append("| recall rises with exposure | — | " + " | ".join(
        "n/a" if s not in by_seed else ("yes" if by_seed[s].get("recall_rises") else "no")
        for s in seeds) + " |")
    lines += ["", "Each cell: the value and, in brackets, its margin to the limit (− : missed "
              "by that much). The unseen-recall limit is each world's best guess + 0.05."]
    return "\n".join(lines)


def collect(out: Path, seeds, more=()) -> dict:
    """``{seed: {chapter: headline}}`` from the newest metrics.json of each chapter and
    organism seed under ``out/runs`` and the folders ``more``."""
    table = {}
    for (seed, chapter), (_, m) in _newest(out, seeds, more).items():
        table.setdefault(seed, {})[chapter] = headline(chapter, m)
    return table


def _newest(out: Path, seeds, more=()) -> dict:
    """``{(seed, chapter): (mtime, metrics)}``: the newest run of each."""
    newest = {}
    found = [p for d in (out / "runs", *more) for p in d.glob("*/metrics.json")]
    for p in found:
        doc = json.loads(p.read_text())
        chapter = p.parent.name.rsplit("-", 1)[0]
        mp = doc["params"]
        name = str(mp.get("model_name", ""))
        seed = int(name.split(":")[1]) if name.startswith("tinyworld:") else None
        if name == "tinyworld":
            seed = 0
        key = (seed, chapter)
        if seed in seeds and (key not in newest or p.stat().st_mtime > newest[key][0]):
            newest[key] = (p.stat().st_mtime, doc["metrics"])
    return newest


def _fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, dict):
        return f"{v['mean']:.3f} ± {(v['ci95'][1] - v['ci95'][0]) / 2:.3f}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def render(table: dict, seeds) -> str:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines = [f"{time.strftime('%Y-%m-%d')}, commit {commit}", "",
             "| chapter | metric | " + " | ".join(f"organism {s}" for s in seeds) + " | spread |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    chapters = [c for c in CHAPTERS if any(c in table.get(s, {}) for s in seeds)]
    for ch in chapters:
        keys = list(dict.fromkeys(k for s in seeds for k in table.get(s, {}).get(ch, {})))
        for k in keys:
            vals = [table.get(s, {}).get(ch, {}).get(k) for s in seeds]
            nums = [v["mean"] for v in vals if isinstance(v, dict)]
            spread = f"{max(nums) - min(nums):.3f}" if len(nums) > 1 else ""
            lines.append(f"| {ch} | {k} | " + " | ".join(map(_fmt, vals)) + f" | {spread} |")
    lines += ["", "Each cell: the chapter's mean over its own seeds ± half its 95% interval (for "
              "one organism); checks: shown (PASS), opposite shown (MISS), cannot tell (UNCLEAR), "
              "excluded at the paper's size (EXCLUDED). "
              "Spread: largest minus smallest mean over organisms."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
