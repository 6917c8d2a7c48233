"""Benchmark: LUNAR's exact closed-form solve against the official SGD recipe.

Both minimise the same mean squared error over token rows (kbnb.unlearning.lunar). The
closed form solves it once; the recipe (AdamW, lr 1e-2, x0.9 per epoch, batches of 64 rows)
runs epoch after epoch. We time the closed form, the recipe's 20 epochs, and the
recipe run until its MSE comes within ``--tol`` of the closed form's ("equal MSE"),
and print the time ratio.

    .venv/bin/python benchmarks/lunar_solve.py                      # the organism's edit
    .venv/bin/python benchmarks/lunar_solve.py --source synthetic --d-in 2048 --d-out 512
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kbnb.unlearning import lunar, lunar_sets  # noqa: E402


def organism_problem(layer: int, coeff: float, n_retain: int, forget_split: str):
    import kbnb
    model, tok = kbnb.load_model("tinyworld", device="cpu")
    sets = lunar_sets.load_sets("tinyworld", forget_split, n_retain=n_retain)
    fp = lunar.prompts_of(tok, sets["forget"])
    V = lunar.steering_vectors(model, tok, lunar.prompts_of(tok, sets["ref"]), fp,
                               activation="residual", position="last", batch_size=128)
    p = lunar.build_problems(model, tok, fp, lunar.prompts_of(tok, sets["retain"]), V, [layer],
                             coeff=coeff, rows="last",
                             retain_answers=[r["answer"] for r in sets["retain"]],
                             batch_size=128)[0]
    return p.Z, p.Y, p.W0, f"organism layer {layer} (coeff {coeff})"


def synthetic_problem(n: int, d_in: int, d_out: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, d_in, generator=g)
    W0 = torch.randn(d_out, d_in, generator=g) / d_in ** 0.5
    Y = Z @ W0.T
    Y[: n // 10] += torch.randn(d_out, generator=g)  # a tenth of the rows are shifted
    return Z, Y, W0, f"synthetic n={n} d_in={d_in} d_out={d_out}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=("organism", "synthetic"), default="organism")
    ap.add_argument("--layer", type=int, default=18, help="organism: edited layer")
    ap.add_argument("--coeff", type=float, default=3.0, help="organism: steering coefficient")
    ap.add_argument("--n-retain", type=int, default=300, help="organism: retain prompts")
    ap.add_argument("--forget-split", default="forget05")
    ap.add_argument("--n", type=int, default=8192, help="synthetic: token rows")
    ap.add_argument("--d-in", type=int, default=1024, help="synthetic: down_proj inputs")
    ap.add_argument("--d-out", type=int, default=256, help="synthetic: down_proj outputs")
    ap.add_argument("--tol", type=float, default=0.01,
                    help="'equal MSE' = within this relative tolerance of the closed form")
    ap.add_argument("--max-epochs", type=int, default=200, help="cap for the SGD run to equal MSE")
    ap.add_argument("--repeats", type=int, default=3, help="closed-form timing repeats (best)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    if args.source == "organism":
        Z, Y, W0, what = organism_problem(args.layer, args.coeff, args.n_retain, args.forget_split)
    else:
        Z, Y, W0, what = synthetic_problem(args.n, args.d_in, args.d_out)
    print(f"problem: {what}; rows {Z.shape[0]}, W {tuple(W0.shape)}; "
          f"MSE before the edit {lunar.mse(W0, Z, Y):.4g}")

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        W_cf = lunar.solve_closed_form(Z, Y, W0)
        times.append(time.perf_counter() - t0)
    t_cf, m_cf = min(times), lunar.mse(W_cf, Z, Y)
    print(f"closed form      : MSE {m_cf:.6g} in {t_cf * 1e3:8.1f} ms")

    t0 = time.perf_counter()
    _, hist = lunar.solve_sgd(Z, Y, W0, epochs=20)
    t_20 = time.perf_counter() - t0
    print(f"SGD recipe 20 ep : MSE {hist[-1]:.6g} in {t_20 * 1e3:8.1f} ms "
          f"({hist[-1] / m_cf:.3f}x the closed form's MSE)")

    target = m_cf * (1 + args.tol)
    t0 = time.perf_counter()
    _, hist_eq = lunar.solve_sgd(Z, Y, W0, epochs=args.max_epochs, target_mse=target)
    t_eq = time.perf_counter() - t0
    reached = hist_eq[-1] <= target
    print(f"SGD to equal MSE : MSE {hist_eq[-1]:.6g} after {len(hist_eq)} epochs in "
          f"{t_eq * 1e3:8.1f} ms ({'reached' if reached else 'NOT reached'} "
          f"{1 + args.tol:.2f}x the closed form's MSE)")
    print(f"time ratio SGD(20 epochs) / closed form = {t_20 / t_cf:.1f}x")
    print(f"time ratio SGD(equal MSE) / closed form = {t_eq / t_cf:.1f}x"
          + ("" if reached else f" (lower bound: not reached in {args.max_epochs} epochs)"))


if __name__ == "__main__":
    main()
