"""Opening store files: waiting for locks, reading files a writer holds or left behind,
and turning HDF5's errors into messages that name the file.

Writing uses HDF5's single-writer/multiple-reader mode (SWMR), in which HDF5 drops its own
file lock; a run writer therefore holds a shared ``flock`` of its own on the file, which
resume and overwrite test (``check_not_being_written``).
"""

import contextlib
import fcntl
import os
import struct
import time
from pathlib import Path

import h5py

from .errors import NotStored, StoreError

# Seconds a reader waits for a file locked by a writer outside SWMR (a ResultStore save).
READ_LOCK_TIMEOUT = 10.0
_LOCKED = "unable to lock file"  # HDF5's message when another process holds the file
_READ_HERE = "already open for read-only"  # ...when this process is reading it


def check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"path must be a file, got the directory {path}")
    return path


def superblock_eof(path):
    """End-of-file address stored in a version 2/3 superblock (None for older ones)."""
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 48 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] < 2 or head[9] != 8:
        return None
    base, _, eof = struct.unpack_from("<QQQ", head, 12)
    return base + eof


def open_retrying(path, mode, timeout):
    """h5py.File(path, mode), waiting up to ``timeout`` seconds while another process holds
    HDF5's lock or another thread reads the file (a ResultStore save or read holds it for
    milliseconds); the OSError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return h5py.File(path, mode)
        except OSError as e:
            # A read in another thread of this process blocks an append for its
            # milliseconds, just as another process's lock does.
            busy = _LOCKED in str(e) or (mode == "a" and _READ_HERE in str(e))
            if busy and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise


@contextlib.contextmanager
def open_read(path):
    """Open for reading: a finished file, a file being written, or one whose writer died."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not h5py.is_hdf5(path):
        raise StoreError(f"{path} is not an HDF5 file (empty, truncated at the start, or another format)")
    try:
        f = open_retrying(path, "r", READ_LOCK_TIMEOUT)
    except OSError as e:
        if _LOCKED in str(e):
            raise RuntimeError(f"cannot open {path}: another process holds it open for writing ({e})") from e
        if "already open for write" not in str(e):
            raise StoreError(f"cannot open {path}: it is truncated or damaged ({e})") from e
        # Marked as being written: a live SWMR writer or one that was killed. SWMR
        # reading retries damaged metadata for a long time, so rule out truncation first.
        eof = superblock_eof(path)
        if eof is not None and os.path.getsize(path) < eof:
            raise StoreError(
                f"cannot open {path}: it is truncated ({os.path.getsize(path)} bytes, {eof} expected)"
            ) from e
        try:
            f = h5py.File(path, "r", swmr=True)
        except OSError as e2:
            raise StoreError(f"cannot open {path}: it is damaged ({e2})") from e2
    with f:
        yield f


@contextlib.contextmanager
def open_write(path, lock_timeout=0.0):
    path = check_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        f = open_retrying(path, "a", lock_timeout)
    except OSError as e:
        message = str(e)
        if _LOCKED in message:
            raise RuntimeError(f"{path} is in use by another process ({e})") from e
        if "already open for write" in message:
            raise StoreError(
                f"{path} is still being written, or its writer was killed; "
                f"resume the run or call particles.io.repair(path)"
            ) from e
        raise StoreError(f"cannot open {path} for writing: it is truncated or damaged ({e})") from e
    with f:
        yield f


@contextlib.contextmanager
def h5_errors(path, action):
    """h5py raises KeyError/OSError/RuntimeError from deep inside; name the file instead."""
    try:
        yield
    except (StoreError, NotStored):
        raise
    except (OSError, KeyError, RuntimeError) as e:
        if isinstance(e, (FileNotFoundError, FileExistsError)):
            raise
        raise StoreError(f"cannot {action} {path}: the file is damaged or incomplete ({type(e).__name__}: {e})") from e


def hold_writer_lock(path):
    """A shared lock on ``path`` that says a writer is alive (HDF5 drops its own in SWMR
    mode); shared, so that readers who lock are not blocked. Returns the descriptor to
    close, which releases it."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def check_not_being_written(path):
    """RuntimeError if a live writer holds our lock on ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError(
            f"{path} is being written by another process; wait for it to finish or stop it first"
        ) from None
    finally:
        os.close(fd)  # closing releases the lock
