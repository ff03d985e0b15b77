"""The GPU kernels in CI: the tests of this folder, rerun in a subprocess with numba-cuda's
simulator switched on (NUMBA_ENABLE_CUDASIM=1 must be set before numba-cuda is imported, and
holds for the whole process, so it cannot be switched on inside this one)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .gpu import REASON, SIMULATOR

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(REASON is None and not SIMULATOR, reason="a CUDA device is present: the tests ran on it")
@pytest.mark.skipif(SIMULATOR, reason="this process is the simulator run")
@pytest.mark.parametrize("tests", ["test_run.py", "test_phase.py"])
def test_gpu_kernels_pass_in_the_simulator(tests):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    # The copy of the package next to these tests, not another install.
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(HERE / tests)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
