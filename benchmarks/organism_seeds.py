"""Do the book's effects survive a change of organism? (not run by the book or CI)

Trains the organisms of several seeds (``tinyworld:N``, each on its own world), runs
every chapter on each with its default parameters (papermill), and prints one table
chapter x metric x organism seed, with the spread between organisms and each
issue-10 target's PASS/MISS per seed.

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
CHAPTERS = ("tinyworld", "rtuning", "rait", "lunar", "lunar_attacks", "npo_toy")


def _get(doc, *path):
    for p in path:
        if doc is None:
            return None
        doc = doc.get(p) if isinstance(doc, dict) else None
    return doc


def headline(chapter: str, m: dict) -> dict:
    """The numbers the issue-10 targets are about, from one chapter's metrics."""
    if chapter == "tinyworld":
        return {k: m.get(k) for k in ("known_exact_match", "known_paraphrase_recall", "unseen_recall",
                                      "unseen_chance", "refusal_rate_heldout", "train_seconds")}
    if chapter == "rtuning":
        return {"AP untuned (test)": _get(m, "ap", "test", "untuned_conf"),
                "AP tuned (test)": _get(m, "ap", "test", "tuned_score"),
                "AP untuned (ood)": _get(m, "ap", "ood", "untuned_conf"),
                "AP tuned (ood)": _get(m, "ap", "ood", "tuned_score"),
                "unsure on unseen": _get(m, "boundary_shares", "unsure_on_unseen")}
    if chapter == "rait":
        return {"over-refusal Cor-RAIT": _get(m, "over_refusal", "Cor-RAIT"),
                "over-refusal CRaFT": _get(m, "over_refusal", "CRaFT"),
                "THS Cor-RAIT": _get(m, "ths", "Cor-RAIT"), "THS CRaFT": _get(m, "ths", "CRaFT")}
    if chapter == "lunar":
        return {"forget ROUGE-1": _get(m, "lunar", "rouge1_forget"),
                "retain ROUGE-1": _get(m, "lunar", "rouge1_retain_eval"),
                "forget refusal rate": _get(m, "lunar", "refusal_rate_forget"),
                "layer": (m.get("layers") or [None])[0]}
    if chapter == "npo_toy":
        ch = _get(m, "change", "npo") or {}
        gt, fixed = ch.get("ground_truth"), ch.get("fixed")
        return {"NPO ground-truth change": gt, "NPO fixed change": fixed,
                "|fixed| / |ground truth|": abs(fixed) / abs(gt) if gt else None}
    if chapter == "lunar_attacks":
        return {f"{k} forget ROUGE-1": v.get("rouge1_forget")
                for k, v in (m.get("settings") or {}).items()}
    return {}


def targets(rows: dict) -> dict:
    """Issue 10's chapter targets for one organism seed: name -> bool (None if missing)."""
    def ok(f):
        try:
            return bool(f())
        except (TypeError, KeyError):
            return None
    r, l, n, a = (rows.get(c, {}) for c in ("rtuning", "lunar", "npo_toy", "rait"))
    return {
        "R-Tuning tuned AP > untuned (test)": ok(lambda: r["AP tuned (test)"] > r["AP untuned (test)"]),
        "R-Tuning tuned AP > untuned (ood)": ok(lambda: r["AP tuned (ood)"] > r["AP untuned (ood)"]),
        "LUNAR forget R1 <= 0.2": ok(lambda: l["forget ROUGE-1"] <= 0.2),
        "LUNAR retain R1 >= 0.85": ok(lambda: l["retain ROUGE-1"] >= 0.85),
        "LUNAR >= half refusals": ok(lambda: l["forget refusal rate"] >= 0.5),
        "NPO fixed moves <= 1/5 of ground truth": ok(lambda: n["|fixed| / |ground truth|"] <= 0.2),
        "RAIT over-refusal CRaFT < Cor-RAIT": ok(lambda: a["over-refusal CRaFT"] < a["over-refusal Cor-RAIT"]),
    }


def run_chapter(chapter: str, seed: int, out: Path, extra: dict) -> bool:
    params = {"model_name": f"tinyworld:{seed}", "output_dir": str(out / "runs"), **extra}
    if chapter == "tinyworld":
        params = {"seed": seed, "output_dir": str(out / "runs")}
    if chapter == "lunar_attacks":
        lunar_runs = sorted((out / "runs").glob("lunar-*/metrics.json"), key=lambda p: p.stat().st_mtime)
        mine = [p.parent for p in lunar_runs
                if json.loads(p.read_text())["params"].get("model_name") == f"tinyworld:{seed}"]
        if mine:
            params["lunar_dir"] = str(mine[-1] / "lunar")
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
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for seed in args.seeds:
            print(f"organism seed {seed}", flush=True)
            for ch in args.chapters:
                run_chapter(ch, seed, out, {})
    table = collect(out, args.seeds)
    (out / "table.json").write_text(json.dumps(table, indent=1))
    print(render(table, args.seeds))
    (out / "table.md").write_text(render(table, args.seeds))


def collect(out: Path, seeds) -> dict:
    """``{seed: {chapter: headline}}`` from the newest metrics.json of each chapter and
    organism seed under ``out/runs``."""
    newest = {}
    for p in (out / "runs").glob("*/metrics.json"):
        doc = json.loads(p.read_text())
        chapter = p.parent.name.rsplit("-", 1)[0]
        mp = doc["params"]
        name = str(mp.get("model_name", ""))
        seed = mp.get("seed") if chapter == "tinyworld" and ":" not in name else \
            (int(name.split(":")[1]) if name.startswith("tinyworld:") else None)
        key = (seed, chapter)
        if seed in seeds and (key not in newest or p.stat().st_mtime > newest[key][0]):
            newest[key] = (p.stat().st_mtime, doc["metrics"])
    table = {}
    for (seed, chapter), (_, m) in newest.items():
        table.setdefault(seed, {})[chapter] = headline(chapter, m)
    return table


def _fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "PASS" if v else "MISS"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def render(table: dict, seeds) -> str:
    import statistics
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
            nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
            spread = f"{max(nums) - min(nums):.3f}" if len(nums) > 1 else ""
            lines.append(f"| {ch} | {k} | " + " | ".join(map(_fmt, vals)) + f" | {spread} |")
    for name in targets({}):
        vals = [targets(table.get(s, {})).get(name) for s in seeds]
        lines.append(f"| target | {name} | " + " | ".join(map(_fmt, vals)) + " | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
