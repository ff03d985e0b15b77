"""torch's OpenMP runtime stays its own: ``import particles`` loads torch before Numba's
thread pool starts (see ``particles/__init__.py``)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

_TORCH_GOMP = Path(torch.__file__).parent / "lib" / "libgomp.so.1"

# A Numba parallel kernel first (its OpenMP pool starts), then torch's first parallel pass.
_SCRIPT = """
import particles
particles.simulate(particles.sample_sphere(64, 2, batch=4, seed=0), beta=1.0, t_max=0.2, dt=0.1)
import torch
torch.ones(1 << 20).exp_()
print("\\n".join(sorted({line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line})))
"""


@pytest.mark.skipif(not _TORCH_GOMP.exists(), reason="this torch build ships no libgomp of its own")
def test_torch_keeps_its_own_openmp_runtime():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True)
    loaded = [Path(p).resolve() for p in done.stdout.split()]
    assert _TORCH_GOMP.resolve() in loaded, done.stdout
