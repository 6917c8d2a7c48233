"""The organism's training loop: what is faster, what stays robust under load, what a
faster loop does to the organism's targets, in one run.

Each measurement runs in a fresh process (thread settings must be fixed before torch
loads):

* ``speed``: tokens per second over the first ``--steps`` steps of the default
  organism, alone on the machine, for the loop before issue 22 (kbnb's default keeps its
  numerics) and each change towards ``FAST_LOOP`` (:class:`kbnb.organism.model.TrainLoop`):
  no attention mask, the output head on labelled positions only, biographies in batches
  of their own. Ratio to the first row.
* ``load``: the same steps alone and beside a busy single-thread process (``while
  True: pass``), for the old loop as the book ran it (every core, idle threads spinning)
  and for kbnb's (adaptive threads). Slowdown under load.
* ``full``: kbnb's organism 0 and retain organism trained to the end (seconds; the
  organism probed against its targets, ``kbnb.eval.boundary.check_targets``, and its
  weight digest compared with the organism before issue 22; both are trained into
  kbnb's cache, as ``make book`` would), then ``FAST_LOOP`` on the
  organisms of ``--seeds`` and the retain organism: its speed and its targets.
* ``digests`` (not run by default): organism 0 at a fixed 1 and 2 threads.
* ``recipes`` (not run by default): cheaper recipes with ``FAST_LOOP`` (fewer
  presentations of the known facts, a narrower MLP), probed against the targets.

    .venv/bin/python benchmarks/organism_train.py                  # speed, load, full: ~40 min
    .venv/bin/python benchmarks/organism_train.py --parts speed load --steps 120
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

LOOPS = {  # name -> TrainLoop fields, each row adding one change to the one above
    "before issue 22 (same numerics as kbnb's)": dict(threads="fixed"),
    "+ no attention mask": dict(attention_mask=False, threads="fixed"),
    "+ head on labels only": dict(attention_mask=False, loss_on="labels", threads="fixed"),
    "+ biographies apart (FAST_LOOP)": dict(batching="pooled-split", attention_mask=False,
                                            loss_on="labels", threads="fixed"),
    "(whole-epoch sorted batches)": dict(batching="sorted", attention_mask=False,
                                         loss_on="labels", threads="fixed"),
}
FAST = dict(batching="pooled-split", attention_mask=False, loss_on="labels")  # FAST_LOOP


def worker(job: dict) -> dict:
    """Train once as ``job`` says (config fields, loop fields, max_steps, probe) and
    return the log's numbers, plus the targets when ``probe``."""
    sys.path.insert(0, str(ROOT))
    import kbnb  # noqa: F401, I001  (sets the thread environment before torch loads)
    import torch
    from kbnb.organism.model import (OrganismConfig, TrainLoop, build_organism, train_organism,
                                     training_log, weights_digest)

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    config = OrganismConfig(**job.get("config", {}))
    if job.get("cache"):  # the default loop into kbnb's cache, as the book builds it
        out = build_organism(config, force=True, progress=False)
        log = training_log(out)
    else:
        out = Path(tempfile.mkdtemp(prefix="kbnb-bench-"))
        log = train_organism(config, out, progress=False, loop=TrainLoop(**job.get("loop", {})),
                             max_steps=job.get("max_steps", 0))
    result = {k: log[k] for k in ("train_seconds", "steps", "n_tokens", "n_padded_tokens",
                                  "tokens_per_second", "thread_choices")}
    if job.get("probe") or job.get("digest"):
        from kbnb.lm.models import load_model
        model, tok = load_model(str(out), device="cpu")
        result["digest"] = weights_digest(model)
        if job.get("probe"):
            from kbnb.eval import boundary
            from kbnb.organism import world_of
            world = world_of(config)
            rows = boundary.probe_knowledge(model, tok, world, progress=False)
            refusals = boundary.probe_refusals(model, tok, world, progress=False)
            m = boundary.knowledge_metrics(rows, refusals, world, log)
            checks = boundary.check_targets(m)
            result["targets"] = {k: v for k, v in checks.items() if not k.startswith("trains in")}
            result["metrics"] = {k: m[k] for k in ("known_exact_match", "known_paraphrase_recall",
                                                   "unseen_recall", "refusal_rate_heldout")}
    return result


def run(job: dict, env: dict | None = None, busy: bool = False) -> dict:
    """``worker(job)`` in a fresh process with ``env`` changes, optionally beside a busy
    single-thread process."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    full_env.update(env or {})
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=full_env,
                             capture_output=True, text=True, check=True).stdout
    finally:
        if hog:
            hog.kill()
            hog.wait()
    return json.loads(out.strip().splitlines()[-1])


BOOK_ALONE = {"GOMP_SPINCOUNT": "300000"}  # how the book runner trains the organism
OLD_DIGEST = "8abe528e227352ee"  # organism 0 before issue 22 (runs/tinyworld-*/metrics.json)


def part_speed(steps: int) -> None:
    print(f"\n## speed: first {steps} steps of the default organism, alone, every core")
    print(f"{'loop':42s} {'tokens/s':>9s} {'padded tok':>11s} {'x old':>6s}")
    base = None
    for name, loop in LOOPS.items():
        r = run({"loop": loop, "max_steps": steps}, BOOK_ALONE)
        base = base or r["tokens_per_second"]
        print(f"{name:42s} {r['tokens_per_second']:9.0f} {r['n_padded_tokens']:11d} "
              f"{r['tokens_per_second'] / base:6.2f}", flush=True)


def part_load(steps: int) -> None:
    print(f"\n## load: first {steps} steps alone and beside a busy single-thread process")
    print(f"{'loop':44s} {'alone tok/s':>11s} {'busy tok/s':>11s} {'slowdown':>9s}  threads chosen")
    old = LOOPS["before issue 22 (same numerics as kbnb's)"]
    cases = {
        "before issue 22, as the book ran it (spin)": (old, BOOK_ALONE),
        "before issue 22, GOMP_SPINCOUNT=1000": (old, {}),
        "adaptive threads": ({"threads": "adaptive"}, BOOK_ALONE),
        "kbnb (one thread), as the book runs it": ({}, BOOK_ALONE),
    }
    for name, (loop, env) in cases.items():
        alone = run({"loop": loop, "max_steps": steps}, env)
        busy = run({"loop": loop, "max_steps": steps}, env, busy=True)
        print(f"{name:44s} {alone['tokens_per_second']:11.0f} {busy['tokens_per_second']:11.0f} "
              f"{alone['tokens_per_second'] / busy['tokens_per_second']:8.2f}x  "
              f"{busy['thread_choices']}", flush=True)


def _targets(r: dict) -> str:
    t = r.get("targets", {})
    return "all PASS" if t and all(t.values()) else \
        "MISS: " + "; ".join(k for k, v in t.items() if not v)


def _row(name: str, r: dict) -> None:
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in r.get("metrics", {}).items() if v is not None)
    print(f"{name:36s} {r['train_seconds']:8.0f} {r['n_tokens']:9d} {r['tokens_per_second']:9.0f}"
          f"  {_targets(r) if 'targets' in r else '-'}{'; ' + metrics if metrics else ''}",
          flush=True)


HEADER = f"{'recipe':36s} {'seconds':>8s} {'tokens':>9s} {'tokens/s':>9s}  targets; metrics"


def part_full(seeds: list[int], retain: bool = True) -> None:
    print("\n## full: trained to the end, alone, every core; then probed against the targets")
    print(HEADER)
    r = run({"config": {}, "probe": True, "cache": True}, BOOK_ALONE)
    _row("kbnb (organism 0)", r)
    print(f"{'':36s} weights {r['digest']} (before issue 22: {OLD_DIGEST}); threads by step "
          f"{r['thread_choices']}")
    _row("kbnb, retain organism (forget10)", run({"config": {"retain": "forget10"}, "cache": True},
                                                 BOOK_ALONE))
    for seed in seeds:
        _row(f"FAST_LOOP (organism {seed})", run({"config": {"seed": seed}, "loop": FAST,
                                                  "probe": True}, BOOK_ALONE))
    if retain:
        _row("FAST_LOOP, retain organism", run({"config": {"retain": "forget10"}, "loop": FAST},
                                               BOOK_ALONE))


def part_digests() -> None:
    print("\n## digests: kbnb's organism 0 at a fixed 1 and 2 threads")
    for threads in (1, 2):
        r = run({"config": {}, "loop": {"threads": "fixed"}, "threads": threads, "digest": True})
        print(f"  {threads} thread(s): {r['digest']}  ({r['train_seconds']:.0f} s)", flush=True)


RECIPES = {  # recipe changes tried for fewer training tokens or FLOPs, with kbnb's loop
    "2 questions per known fact and epoch": dict(known_qa_per_epoch=2),
    "1 question per known fact and epoch": dict(known_qa_per_epoch=1),
    "MLP width 128 instead of 256": dict(d_mlp=128),
}


def part_recipes() -> None:
    print("\n## recipes: cheaper recipes, trained to the end and probed (organism 0)")
    print(HEADER)
    for name, config in RECIPES.items():
        _row(name, run({"config": config, "loop": FAST, "probe": True}, BOOK_ALONE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["speed", "load", "full"],
                    choices=["speed", "load", "full", "recipes", "digests"])
    ap.add_argument("--steps", type=int, default=120, help="steps timed in speed and load")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-fast-retain", action="store_true",
                    help="full: skip FAST_LOOP's retain organism")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}")
    for part in args.parts:
        {"speed": lambda: part_speed(args.steps), "load": lambda: part_load(args.steps),
         "full": lambda: part_full(args.seeds, not args.no_fast_retain), "recipes": part_recipes,
         "digests": part_digests}[part]()


if __name__ == "__main__":
    main()
