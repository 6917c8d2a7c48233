"""R-Tuning's knowledge query, batched (kbnb.methods.rtuning) vs the reference's loop, side by side.

    .venv/bin/python benchmarks/rtuning_query.py [--n 128] [--batch-size 64] [--model tinyworld]

The reference (shizhediao/R-Tuning, evaluate.py) asks one question at a time:
``model.generate(ids, max_new_tokens=1, output_scores=True)`` for the letter, then a
second ``generate`` call on ``{prompt}{letter}. Are you sure ...? I am`` for P(sure).
kbnb does both steps in batches (one forward pass per batch for the letters, one
forward pass plus the continuation tokens for " sure"/" unsure"). Prints the wall
times, the speed-up ratio, and how often the two agree on the predicted letter.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import kbnb  # noqa: E402
from kbnb.methods import rtuning as rt  # noqa: E402
from kbnb.organism.model import OrganismConfig, world_of  # noqa: E402


@torch.no_grad()
def reference_loop(model, tok, prompts):
    """The reference's batch-size-1 query: letter by first-token lookup of "A".."D",
    then P(sure) by first-token lookup of "sure"/"unsure" (its tokenizer pitfall kept,
    this is a timing baseline)."""
    letters = [tok(c, add_special_tokens=False)["input_ids"][0] for c in rt.LETTERS]
    sure = tok("sure", add_special_tokens=False)["input_ids"][0]
    unsure = tok("unsure", add_special_tokens=False)["input_ids"][0]
    preds, confs, sures = [], [], []
    for p in prompts:
        ids = tok(p, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
        out = model.generate(ids, max_new_tokens=1, output_scores=True, return_dict_in_generate=True,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        probs = torch.softmax(out.scores[0][0][letters].float(), 0)
        pred = rt.LETTERS[int(probs.argmax())]
        preds.append(pred)
        confs.append(float(probs.max()))
        ids = tok(rt.sure_context(p, pred + "."), return_tensors="pt",
                  add_special_tokens=False)["input_ids"].to(model.device)
        out = model.generate(ids, max_new_tokens=1, output_scores=True, return_dict_in_generate=True,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        pt = torch.softmax(out.scores[0][0].float(), 0)
        sures.append(float(pt[sure] / (pt[sure] + pt[unsure])))
    return preds, confs, sures


def batched(model, tok, prompts, batch_size):
    q = rt.query(model, tok, prompts, scoring="letter", batch_size=batch_size, progress=False)
    preds = [rt.LETTERS[i] for i in q["pred"].tolist()]
    sure = rt.sure_probability(model, tok, prompts, [f"{p}." for p in preds], batch_size=batch_size)
    return preds, q["conf"].tolist(), sure.tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128, help="questions")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", default="tinyworld")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    model, tok = kbnb.load_model(args.model, device=args.device)
    rows, _ = rt.tinyworld_questions_and_shots(world_of(OrganismConfig()))
    prompts = rt.build_prompts(rows[:args.n])
    batched(model, tok, prompts[:4], args.batch_size)  # warm-up

    t0 = time.perf_counter()
    b_pred, b_conf, _ = batched(model, tok, prompts, args.batch_size)
    t_b = time.perf_counter() - t0
    t0 = time.perf_counter()
    r_pred, r_conf, _ = reference_loop(model, tok, prompts)
    t_r = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(b_pred, r_pred))
    print(f"{len(prompts)} questions on {args.model} ({model.device}, {torch.get_num_threads()} threads):")
    print(f"  batched (batch {args.batch_size}): {t_b:.2f}s   reference loop (batch 1): {t_r:.2f}s   "
          f"ratio {t_r / t_b:.1f}x")
    print(f"  same predicted letter: {same}/{len(prompts)} (the reference reads only the no-space "
          f"spelling of each letter; kbnb merges all spellings)")


if __name__ == "__main__":
    main()
