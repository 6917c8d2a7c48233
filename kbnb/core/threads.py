"""CPU thread settings that degrade gracefully when several processes share the cores.

GNU OpenMP (the runtime of PyTorch's CPU wheels) lets idle threads spin for a long
time before they sleep. Alone, that is fastest; with a second busy process on the same
cores, the spinning threads steal the cores the other process needs, and both run
several times slower (on 2 cores, 3 to 27 times in two runs of ``benchmarks/threads.py``).
``GOMP_SPINCOUNT=1000`` makes idle threads sleep soon: alone it costs 7-13%, and two
processes side by side each keep about 45% of their solo speed. It must be set
before the OpenMP runtime loads, i.e. before ``import torch``: ``import kbnb`` does it
when the variable is unset; export it yourself if torch is imported first.

The thread count defaults to the cores this process may actually use (its CPU
affinity and, in a container, its cgroup CPU quota), unless ``OMP_NUM_THREADS`` is set.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

SPINCOUNT = "1000"


def available_cores() -> int:
    """Cores this process may use: CPU affinity, capped by a cgroup v2/v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, quota) if quota else n)


def _cgroup_quota() -> int | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return math.ceil(int(text[0]) / int(text[1]))
    except (OSError, ValueError, IndexError):
        pass
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if q > 0 and p > 0:
            return math.ceil(q / p)
    except (OSError, ValueError):
        pass
    return None


SPINCOUNT_IS_KBNBS = False  # True when configure_environment set it (the user did not)


def configure_environment() -> None:
    """Set ``GOMP_SPINCOUNT`` (unless set); call before torch is imported."""
    global SPINCOUNT_IS_KBNBS
    if "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
        SPINCOUNT_IS_KBNBS = True


def configure_torch() -> int:
    """Use ``available_cores()`` threads unless ``OMP_NUM_THREADS`` says otherwise;
    returns the thread count in use."""
    import torch
    if not os.environ.get("OMP_NUM_THREADS"):
        n = available_cores()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return torch.get_num_threads()
