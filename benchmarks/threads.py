"""Two kbnb processes on one machine: OpenMP wait policies side by side.

Trains the organism's architecture (24 layers, 64 wide) for a few steps, alone and as
two processes at once, under: torch's default (idle threads spin), GOMP_SPINCOUNT=1000
(kbnb's default, see kbnb/core/threads.py), OMP_WAIT_POLICY=PASSIVE, and one thread each.
Prints tokens per second per process and the ratio to the default.

    .venv/bin/python benchmarks/threads.py
"""
from __future__ import annotations

import os
import subprocess
import sys

WORKER = r"""
import time, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=2048, hidden_size=64, intermediate_size=256, num_hidden_layers=24,
                  num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
m = LlamaForCausalLM(cfg).train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
toks = 0
for i in range(14):
    ids = torch.randint(0, 2048, (64, 28))
    if i == 4:
        t = time.time(); toks = 0
    m(input_ids=ids, labels=ids).loss.backward(); opt.step(); opt.zero_grad(); toks += ids.numel()
print(toks / (time.time() - t))
"""

SETTINGS = {
    "default (spin)": {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None},
    "GOMP_SPINCOUNT=1000 (kbnb)": {"GOMP_SPINCOUNT": "1000"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread each": {"OMP_NUM_THREADS": "1"},
}


def run(n_procs: int, env_changes: dict) -> list[float]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    procs = [subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(n_procs)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main():
    print(f"{os.cpu_count()} cores; tokens/s per process (training steps of the organism's shape)")
    base = {}
    print(f"{'setting':30s} {'alone':>8s} {'two at once':>22s}")
    for name, env in SETTINGS.items():
        alone = run(1, env)[0]
        two = run(2, env)
        base.setdefault("alone", alone)
        base.setdefault("two", sum(two) / 2)
        print(f"{name:30s} {alone:8.0f} {two[0]:8.0f} {two[1]:8.0f} "
              f"(alone x{alone / base['alone']:.2f}, two x{sum(two) / 2 / base['two']:.1f})", flush=True)


if __name__ == "__main__":
    main()
