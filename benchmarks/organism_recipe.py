"""tinyworld v3 against today's recipe before it (v2), in one run: tokens per second,
seconds to train, and whether the organism meets its knowledge targets.

Each organism trains in a fresh process into a throw-away cache, alone on the machine
with every core (as ``make book`` may train it), then probed against the targets
(``kbnb.eval.boundary.check_targets``) with the code that trained it. The baseline is
trained from a ``git worktree`` of ``--baseline`` (default: main before tinyworld v3).
Last, the v3 organism and its retain organism train side by side, as the cold book
build trains them (the organism may use every core, the retain organism one), and the
wall time until both are ready is printed.

    .venv/bin/python benchmarks/organism_recipe.py                 # ~12 min on 2 cores
    .venv/bin/python benchmarks/organism_recipe.py --skip-baseline
    .venv/bin/python benchmarks/organism_recipe.py --skip-baseline --skip-pair \
        --variants '{"epochs": 10, "known_qa_per_epoch": 2}'   # a cheaper recipe, probed

``--variants``: more configurations of this commit's recipe (``OrganismConfig`` fields as
JSON), each trained alone and probed like the others.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "f8505da"  # main before tinyworld v3 (recipe version 2)

WORKER = r"""
import json, sys, time
import kbnb  # sets the thread environment before torch loads
from kbnb.organism.model import OrganismConfig, build_organism, training_log
from kbnb.eval import boundary
from kbnb.lm.models import load_model
from kbnb.organism import world_of
config = OrganismConfig(**json.loads(sys.argv[1]))
t0 = time.time()
path = build_organism(config, progress=False)
wall = time.time() - t0
log = training_log(path)
out = {k: log[k] for k in ("train_seconds", "n_tokens", "tokens_per_second", "steps")}
out["wall_seconds"] = wall
if sys.argv[2] == "probe":
    model, tok = load_model(str(path), device="cpu")
    world = world_of(config)
    m = boundary.knowledge_metrics(boundary.probe_knowledge(model, tok, world, progress=False),
                                   boundary.probe_refusals(model, tok, world, progress=False),
                                   world, log)
    checks = boundary.check_targets(m)
    out["missed"] = [k for k, v in checks.items() if v is False and not k.startswith("trains in")]
    out["known_exact_match"] = m["known_exact_match"]
print(json.dumps(out))
"""


def _start(code_root: Path, config: dict, probe: bool, cache: str, threads: int | None):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env.update(KBNB_CACHE=cache, PYTHONPATH=str(code_root))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(config),
                             "probe" if probe else "-"], cwd=code_root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _result(proc) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"a training run failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def _row(name: str, r: dict, base: dict | None) -> None:
    ratio = f"{base['train_seconds'] / r['train_seconds']:5.2f}x" if base else "     "
    missed = "; ".join(r.get("missed", [])) or "all met"
    print(f"{name:34s} {r['n_tokens']:9d} {r['tokens_per_second']:9.0f} {r['train_seconds']:8.0f} "
          f"{ratio}  {r['known_exact_match']:.3f}  {missed}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=BASELINE, help="commit of the recipe to compare with")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-pair", action="store_true", help="do not time the side-by-side pair")
    ap.add_argument("--variants", nargs="*", default=[], type=json.loads,
                    help="OrganismConfig fields as JSON, one recipe variant each")
    args = ap.parse_args(argv)
    cfg = {"seed": args.seed}
    print(f"{'organism (alone, every core)':34s} {'tokens':>9s} {'tokens/s':>9s} {'seconds':>8s} "
          f"{'speed':>6s}  known  targets")
    base = None
    with tempfile.TemporaryDirectory(prefix="kbnb-recipe-") as tmp:
        if not args.skip_baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline],
                           cwd=ROOT, check=True, capture_output=True)
            try:
                base = _result(_start(tree, cfg, True, f"{tmp}/cache-base", None))
                _row(f"v2 ({args.baseline})", base, None)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               capture_output=True)
        new = _result(_start(ROOT, cfg, True, f"{tmp}/cache-v3", None))
        _row("v3 (this commit)", new, base)
        for i, variant in enumerate(args.variants):
            r = _result(_start(ROOT, {**cfg, **variant}, True, f"{tmp}/cache-variant{i}", None))
            _row(json.dumps(variant)[:34], r, base or new)
        if args.skip_pair:
            return
        t0 = time.time()
        procs = [_start(ROOT, cfg, False, f"{tmp}/cache-pair", None),
                 _start(ROOT, {**cfg, "retain": "forget10"}, False, f"{tmp}/cache-pair", 1)]
        both = [_result(p) for p in procs]
        print(f"\nv3 organism and retain organism side by side (as a cold `make book`): both "
              f"ready after {time.time() - t0:.0f} s (organism {both[0]['train_seconds']:.0f} s, "
              f"retain organism {both[1]['train_seconds']:.0f} s of training)")


if __name__ == "__main__":
    main()
