"""Benchmark: the RAIT knowledge query (N sampled answers per question), batched vs a loop.

The batched query (``kbnb.methods.rait.sample_answers``) generates all N samples of many
questions in one ``generate`` call per batch; the baseline calls ``generate`` once per
question and per sample. Both run side by side in this process on the same questions;
the script prints both times and their ratio.

    python benchmarks/rait_query.py                 # the organism, 16 questions x 10 samples
    python benchmarks/rait_query.py --questions 32 --samples 10 --model tinyworld --device cpu
"""
from __future__ import annotations

import argparse
import time

import torch

import kbnb
from kbnb.methods import rait, rait_questions


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tinyworld", help="model name or path (default: the organism)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--questions", type=int, default=16, help="questions to query")
    ap.add_argument("--samples", type=int, default=10, help="N sampled answers per question")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=320, help="sequences per batch (batched query)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = kbnb.load_model(args.model, device=args.device)
    _, source, _ = rait_questions.load_questions("tinyworld", max_questions=args.questions, seed=args.seed)
    prompts = [rait.query_prompt(tok, r) for r in source]
    kw = dict(n_samples=args.samples, temperature=1.0, max_new_tokens=args.max_new_tokens)

    rait.sample_answers(model, tok, prompts[:2], batch_size=args.batch_size, progress=False, **kw)  # warm-up
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    batched = rait.sample_answers(model, tok, prompts, batch_size=args.batch_size, progress=False, **kw)
    t_batched = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    looped = rait.sample_answers_loop(model, tok, prompts, **kw)
    t_loop = time.perf_counter() - t0

    n = len(prompts) * args.samples
    assert len(batched) == len(looped) == len(prompts)
    hits = lambda ss: sum(rait.is_correct(s, r) for xs, r in zip(ss, source) for s in xs) / n  # noqa: E731
    print(f"model {args.model} on {model.device}, torch threads {torch.get_num_threads()}: "
          f"{len(prompts)} questions x {args.samples} samples = {n} answers")
    print(f"batched (one generate call per {args.batch_size} sequences): {t_batched:8.2f} s "
          f"({1000 * t_batched / n:.1f} ms/answer), share correct {hits(batched):.2f}")
    print(f"loop (one generate call per question and sample):     {t_loop:8.2f} s "
          f"({1000 * t_loop / n:.1f} ms/answer), share correct {hits(looped):.2f}")
    print(f"speed-up of the batched query: {t_loop / t_batched:.1f}x")


if __name__ == "__main__":
    main()
