"""Continuing a run file whose writer stopped, and repairing one that cannot be continued.

HDF5 marks a file as open for (SWMR) writing until its writer closes it; after a kill the
mark stays and only a copy of the content clears it. Resume therefore copies such a file
into a fresh one (cut to its checkpoint) and continues from the checkpoint; it starts from
``x0`` if no frame beyond the first is complete, and refuses the file otherwise
(``repair`` rebuilds the checkpoint from the stored frames).
"""

import os
import warnings

import h5py
import numpy as np

from .checkpoint import (
    DIGEST_BYTES,
    clear_checkpoint_slot,
    complete_frames,
    newest_checkpoint,
    write_checkpoint,
)
from .errors import StoreError
from .layout import open_to_append
from .locking import check_not_being_written, check_path, h5_errors, open_read
from .schema import CHECKPOINT, STEP, TIME, VALUE, check_schema, param_diff, read_params


def open_to_resume(path, x0, params, store_dtype):
    """Open a run file for appending after checking that it holds this run; returns the
    open file (None: the run is complete), ``start = (frame, t, x)`` for the time loop
    (None: from frame 0) and the slot of that checkpoint (None: none)."""
    check_not_being_written(path)
    with open_read(path) as f:
        check_schema(f, path, "trajectory")
        stored, stored_x0, stored_dtype = read_params(f, path)
    diffs = param_diff(stored, params)
    if not diffs and not (
        stored_x0.shape == x0.shape and stored_x0.dtype == x0.dtype and np.array_equal(stored_x0, x0)
    ):
        diffs = ["x0"]
    if not diffs and stored_dtype != store_dtype:
        diffs = [f"store_dtype (stored {stored_dtype}, given {store_dtype})"]
    if diffs:
        raise ValueError(
            f"cannot resume {path}: parameter {diffs[0]} differs from the stored "
            f"run; pass the stored parameters, or overwrite=True to start anew"
        )
    total = len(params.frame_steps())
    # Checked before anything is written: a refused file stays as it was.
    with open_read(path) as f, h5_errors(path, "read"):
        checkpoint = newest_checkpoint(f, path)
        lengths = {f[name].shape[0] for name in (VALUE, STEP, TIME)}
    if checkpoint is not None and checkpoint.frame == total - 1:
        return None, (total - 1, None, None), checkpoint.slot  # finished: nothing to write
    # Frames after the checkpoint are dropped, and recomputed bit for bit the same.
    keep = 0 if checkpoint is None else checkpoint.frame + 1
    copy = lengths != {keep}
    if not copy:
        try:
            f = open_to_append(path)
        except OSError as e:
            if "already open for" not in str(e):
                raise StoreError(f"cannot open {path} for resuming: it is damaged ({e})") from e
            copy = True
    if copy:
        # A killed writer's mark blocks opening for writing, and shrinking a dataset in
        # place may zero its last frames on disk before its new length gets there: a copy,
        # cut to the checkpoint, replaces the file in one step.
        _copy_clean(path, frames=keep)
        with h5_errors(path, "open for resuming"):
            f = open_to_append(path)
    try:
        with h5_errors(path, "read"):
            checkpoint = newest_checkpoint(f, path)
            if {f[name].shape[0] for name in (VALUE, STEP, TIME)} != {keep} or (
                checkpoint is not None and checkpoint.frame != keep - 1
            ):
                raise StoreError(f"{path} changed while resuming; resume again")
    except BaseException:
        f.close()
        raise
    if checkpoint is None:
        return f, None, None
    return f, (checkpoint.frame, checkpoint.t, checkpoint.state), checkpoint.slot


def repair(path):
    """Make a file whose writer was killed writable and resumable again, keeping its frames.

    HDF5 marks a file as open for (SWMR) writing until its writer closes it; after a kill
    the mark stays and HDF5 refuses to open the file for writing. The content readable in
    SWMR mode is copied into a fresh file that then replaces ``path`` (atomically, via a
    temporary file in the same directory). ``simulate(..., store=RunFile(path, resume=True))``
    does this copy itself.

    A run file whose checkpoint does not verify (which resume refuses) gets a new one, with
    a RuntimeWarning: the last stored frame when frames are stored in the run's dtype (that
    frame is the exact state), else ``x0`` at frame 0 (resume then recomputes the frames,
    bit for bit the same). Either way resume continues the stored run, never another one.

    Args:
        path: the file (str or os.PathLike).

    Raises:
        RuntimeError: another process is writing the file.
        StoreError: the file cannot be read.
    """
    _copy_clean(path, rebuild_checkpoint=True)


def _copy_clean(path, frames=None, rebuild_checkpoint=False):
    """Replace ``path`` by a copy of its content, with the frames of a run file cut to the
    complete ones (at most ``frames``), via a temporary file and one rename."""
    path = check_path(path)
    check_not_being_written(path)
    tmp = path.with_name(path.name + ".repair-tmp")
    with open_read(path) as src:
        with h5_errors(path, "repair"):
            with h5py.File(tmp, "w", libver="latest") as dst:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for name in src:
                    src.copy(src[name], dst, name)
                if STEP in dst:
                    m = dst[STEP].shape[0] if frames is None else frames
                    for name in (VALUE, TIME, STEP):
                        dst[name].resize(min(m, dst[name].shape[0]), axis=0)
                if "results/.pending" in dst:
                    del dst["results/.pending"]
                if rebuild_checkpoint and CHECKPOINT in dst:
                    _rebuild_checkpoint(dst, path)
    os.replace(tmp, path)


def _rebuild_checkpoint(f, path):
    """A verified checkpoint for a run file whose checkpoint does not verify."""
    try:
        newest_checkpoint(f, path)
        return
    except StoreError as e:
        problem = str(e)
    ckpt = f[CHECKPOINT]
    if "checksum" not in ckpt:
        ckpt.create_dataset("checksum", shape=(2, DIGEST_BYTES), dtype=np.uint8)
    m = complete_frames(f)
    value, state = f[VALUE], ckpt["state"]
    if value.dtype == state.dtype:
        k, x = m - 1, value[m - 1]
        source = f"the stored frame {k}"
    else:
        # Rounded frames cannot restart the run exactly; x0 can.
        k, x = 0, f["parameters/x0"][()]
        source = f"x0 (frame 0; {value.dtype} frames are rounded, resume recomputes them)"
    write_checkpoint(ckpt, 0, k, float(f[TIME][k]), x)
    clear_checkpoint_slot(ckpt, 1)
    warnings.warn(f"{path}: rebuilt the checkpoint from {source}. It was: {problem}", RuntimeWarning, stacklevel=3)
