"""The GPU backend of ``simulate`` and ``phase_diagram`` (``device="cuda"``), on Numba's CUDA
target (the optional ``gpu`` extra, numba-cuda).

- ``_device``: which device a run uses ("cpu", "cuda", "auto") and why CUDA is unavailable.
- ``_token_ops``: per-token device functions (images, online-softmax velocity, retraction).
- ``_small``: one thread block per system, tokens in shared memory, many steps per launch.
- ``_tiled``: flash-attention-style tiled kernels for systems too large for one block.
- ``_run``: the GPU time loop of ``simulate`` (state on the device, frames copied back).
- ``_phase``: the phase-diagram kernel, clustering statistics computed on the device.

Only ``_device`` is imported eagerly: numba-cuda loads when a GPU run starts.
"""

from ._device import DEVICES as DEVICES
from ._device import cuda_unavailable_reason as cuda_unavailable_reason
from ._device import resolve_device as resolve_device
from ._device import simulator_enabled as simulator_enabled

__all__ = [
    # device selection
    "DEVICES",
    "resolve_device",
    "cuda_unavailable_reason",
    "simulator_enabled",
    # the GPU paths of simulate and phase_diagram
    "run",
    "clustering_statistics",
]


# numba-cuda is imported only once a GPU run starts: it is an optional extra.
def run(x0, A, V, params, *, start=None, on_failure, tile=None):
    """Yield (t, state) for every saved frame of a fixed-step run on the GPU (see ``_run.run``)."""
    from . import _run

    return _run.run(x0, A, V, params, start=start, on_failure=on_failure, tile=tile)


def clustering_statistics(betas, ensemble, draws):
    """``beta_statistics`` rows of every beta, computed on the GPU (see
    ``_phase.clustering_statistics``)."""
    from . import _phase

    return _phase.clustering_statistics(betas, ensemble, draws)
