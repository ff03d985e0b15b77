"""What the GPU tests share: whether kernels can run here (a GPU, or numba-cuda's simulator
switched on for this process) and the marker that skips them otherwise. In a plain test run
they run through ``test_simulator.py``, in a subprocess with NUMBA_ENABLE_CUDASIM=1 (the
simulator is chosen when numba-cuda is imported, once per process)."""

import pytest

from particles.cuda import cuda_unavailable_reason, simulator_enabled

REASON = cuda_unavailable_reason()
needs_cuda = pytest.mark.skipif(
    REASON is not None, reason=f"no CUDA device ({REASON}); test_simulator.py runs these in the simulator"
)
SIMULATOR = simulator_enabled()
