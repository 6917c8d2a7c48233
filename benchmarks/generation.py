"""Batched vs one-by-one generation on the organism, measured side by side.

    .venv/bin/python benchmarks/generation.py [--n 64] [--samples 10]

1. greedy answers for n questions: one batched call vs one call per question;
2. N sampled answers per question: one batched call (prompts repeated inside the
   batch) vs a loop over questions and samples.
Prints the wall times and the speed-up ratios.
"""
import argparse
import time

import torch

import kbnb
from kbnb.lm.generation import generate
from kbnb.organism.model import OrganismConfig, world_of


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="questions")
    ap.add_argument("--samples", type=int, default=10, help="samples per question")
    ap.add_argument("--sample-questions", type=int, default=16, help="questions for the sampling test")
    ap.add_argument("--model", default="tinyworld")
    args = ap.parse_args()
    model, tok = kbnb.load_model(args.model)
    world = world_of(OrganismConfig())
    qs = [kbnb.format_prompt(tok, r["question"]) for r in world.rows()[:args.n]]

    batched, t_batch = timed(lambda: generate(model, tok, qs, max_new_tokens=24, batch_size=64,
                                              progress=False))
    single, t_single = timed(lambda: [generate(model, tok, [q], max_new_tokens=24, progress=False)[0]
                                      for q in qs])
    same = sum(a == b for a, b in zip(batched, single))
    print(f"greedy, {len(qs)} questions: batched {t_batch:.2f}s, one by one {t_single:.2f}s, "
          f"ratio {t_single / t_batch:.1f}x (identical answers: {same}/{len(qs)})")

    sq = qs[:args.sample_questions]
    N = args.samples
    torch.manual_seed(0)
    _, t_b = timed(lambda: generate(model, tok, sq, max_new_tokens=24, do_sample=True,
                                    num_samples=N, batch_size=160, progress=False))
    _, t_l = timed(lambda: [[generate(model, tok, [q], max_new_tokens=24, do_sample=True,
                                      progress=False)[0] for _ in range(N)] for q in sq])
    print(f"sampling, {len(sq)} questions x {N} samples: one batched call {t_b:.2f}s, "
          f"per-question per-sample loop {t_l:.2f}s, ratio {t_l / t_b:.1f}x")


if __name__ == "__main__":
    main()
