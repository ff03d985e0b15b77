"""Where a run executes: ``device="cpu"``, ``"cuda"`` (Numba's CUDA target) or ``"auto"``.

With ``NUMBA_ENABLE_CUDASIM=1`` in the environment before Numba is imported, numba-cuda runs
the kernels on the CPU through its simulator and reports a device there: ``"cuda"`` then runs
the GPU path end to end (slowly: one Python thread per GPU thread), which is how CI tests it.
"""

import os

from ..checks import check_choice

DEVICES = ("cpu", "cuda", "auto")


def simulator_enabled():
    """True when numba-cuda's simulator stands in for a GPU (NUMBA_ENABLE_CUDASIM=1)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def cuda_unavailable_reason():
    """None when a CUDA device (or the simulator) can run the kernels; otherwise why not."""
    try:
        from numba import cuda
    except ImportError as error:  # numba-cuda is the optional "gpu" extra
        return f"numba-cuda is not installed ({error}); install it with pip install 'attention-dynamics[gpu]'"
    try:
        if not cuda.is_available():
            return "numba-cuda finds no CUDA driver or GPU on this machine"
        cuda.get_current_device()
    except Exception as error:  # the driver's own words: missing library, no device, bad version
        return f"numba-cuda cannot open a CUDA device: {error}".strip()
    return None


def resolve_device(device):
    """The device a run uses: "cpu" or "cuda".

    Args:
        device: "cpu", "cuda" or "auto" ("cuda" where a CUDA device or the simulator is
            available, else "cpu").

    Raises:
        TypeError, ValueError: ``device`` is not one of those.
        RuntimeError: "cuda" where no CUDA device is available (the message gives
            numba-cuda's reason and the alternatives).
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be one of {list(DEVICES)}, got {type(device).__name__} {device!r}")
    check_choice("device", device, DEVICES)
    if device == "cpu":
        return "cpu"
    reason = cuda_unavailable_reason()
    if reason is None:
        return "cuda"
    if device == "auto":
        return "cpu"
    raise RuntimeError(
        f"device='cuda' needs a CUDA GPU, but none is available: {reason}. "
        "Use device='cpu', or device='auto' to take a GPU only where there is one "
        "(NUMBA_ENABLE_CUDASIM=1 runs the GPU kernels through numba-cuda's CPU simulator)."
    )
