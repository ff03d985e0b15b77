"""The datasets of a run file: chunking, compression, creation under a temporary name, and
opening it to append in SWMR mode."""

import os

import h5py
import numpy as np

from .checkpoint import create_checkpoint
from .locking import h5_errors
from .schema import RUN_KIND, write_h5md, write_params

COMPRESSIONS = ("gzip", "lzf", None)
# No compression by default: on the authors' workload at save_every = 1, lzf saves ~18% of
# a float64 file (gzip ~27%) but writes at ~100 (~45) MB/s against ~650 MB/s without, which
# costs far more than the 10% of simulation time allowed for storing (bench_io.py).
# float32 storage halves the file at little cost.
DEFAULT_COMPRESSION = None
# Chunks of ~1 MiB read and compress well; one system's block of a chunk stays <= 64 KiB
# so that reading one system over all frames reads a small part of the file.
CHUNK_BYTES = 1 << 20
SYSTEM_BLOCK_BYTES = 1 << 16
# The chunk cache must hold one time-block of chunks (all batch blocks), or each frame
# written would recompress partly filled chunks.
CACHE_BYTES = 64 << 20
_CACHE = dict(rdcc_nbytes=CACHE_BYTES, rdcc_nslots=100_003, rdcc_w0=1.0)
_GZIP_LEVEL = 1


def check_compression(compression):
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")


def frame_chunks(frame_shape, dtype, total_frames):
    """Chunk of (frames, [systems,] n, d): ~1 MiB, whole frames of small runs."""
    itemsize = np.dtype(dtype).itemsize
    system_bytes = int(np.prod(frame_shape[-2:])) * itemsize
    if len(frame_shape) == 3:
        systems = int(min(frame_shape[0], max(1, SYSTEM_BLOCK_BYTES // system_bytes)))
        block = (systems,) + tuple(frame_shape[1:])
    else:
        block = tuple(frame_shape)
    block_bytes = int(np.prod(block)) * itemsize
    frame_bytes = int(np.prod(frame_shape)) * itemsize
    frames = max(1, min(CHUNK_BYTES // block_bytes, (CACHE_BYTES // 2) // frame_bytes, total_frames))
    return (frames,) + block


def _filters(compression):
    if compression is None:
        return {}
    if compression == "gzip":
        return dict(compression="gzip", compression_opts=_GZIP_LEVEL, shuffle=True)
    return dict(compression="lzf", shuffle=True)


def create_run_file(path, x0, params, store_dtype, compression, seed, fill=None):
    """Write the layout of a new run (then ``fill(f)``, if given) under a temporary name and
    rename it to ``path``: a cut leaves no half-made file at ``path``."""
    frame_shape = x0.shape
    tmp = path.with_name(path.name + ".create-tmp")
    with h5_errors(path, "create"):
        f = h5py.File(tmp, "w", libver="latest", **_CACHE)
    try:
        write_h5md(f, "trajectory", RUN_KIND)
        tokens = f.create_group("particles/tokens")
        box = tokens.create_group("box")
        d = frame_shape[-1]
        box.attrs["dimension"] = np.int32(d)
        box.attrs["boundary"] = np.array(["none"] * d, dtype=h5py.string_dtype())
        chunks = frame_chunks(frame_shape, store_dtype, len(params.frame_steps()))
        pos = tokens.create_group("position")
        # fletcher32: a checksum per chunk, so damaged frames raise instead of reading as
        # plausible numbers.
        value = pos.create_dataset(
            "value",
            shape=(0,) + frame_shape,
            dtype=store_dtype,
            maxshape=(None,) + frame_shape,
            chunks=chunks,
            fletcher32=True,
            **_filters(compression),
        )
        value.attrs["unit"] = "1"  # unit vectors: dimensionless
        n_t = min(4096, len(params.frame_steps()))
        pos.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(n_t,))
        pos.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(n_t,))
        write_params(f, params, x0, store_dtype, seed)
        create_checkpoint(f, frame_shape, x0.dtype)
        f.create_group("observables")
        if fill is not None:
            with h5_errors(path, "write"):
                fill(f)
        f.close()
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def open_to_append(path):
    """Open a run file for writing directly in SWMR mode: opened first and switched after, a
    cut in between left it marked as open for writing without SWMR, which no reader opens.

    Raises:
        OSError: HDF5's, for instance when the file is marked as being written.
    """
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_cache(fapl.get_cache()[0], _CACHE["rdcc_nslots"], _CACHE["rdcc_nbytes"], _CACHE["rdcc_w0"])
    flags = h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE
    return h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=fapl))
