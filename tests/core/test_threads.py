"""Thread settings: a short OpenMP spin unless the user chose, threads = usable cores."""
import os
import subprocess
import sys

from kbnb.core import threads


def test_available_cores_respects_the_affinity():
    n = threads.available_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_import_sets_a_short_spin_unless_the_user_chose(tmp_path):
    code = "import os, kbnb, torch; print(os.environ.get('GOMP_SPINCOUNT'), torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [threads.SPINCOUNT, str(threads.available_cores())]
    env.update(GOMP_SPINCOUNT="50000", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["50000", "1"]
