"""The checkpoint of a run file: two slots written in turn, each with a checksum.

A slot counts only if its checksum matches its (frame, time, state), its frame is complete
on disk and the stored frame equals its state (rounded to the storage dtype); a torn slot
fails this test. A flush writes the slot that does not hold the newest checkpoint, which
therefore stays intact whatever is cut.
"""

import hashlib
from typing import NamedTuple

import numpy as np

from .errors import StoreError
from .schema import CHECKPOINT, STEP, TIME, VALUE

DIGEST_BYTES = 32


class Checkpoint(NamedTuple):
    frame: int
    t: float
    state: np.ndarray
    slot: int


def create_checkpoint(f, frame_shape, dtype):
    ckpt = f.require_group(CHECKPOINT)
    ckpt.create_dataset("state", shape=(2,) + tuple(frame_shape), dtype=dtype)
    ckpt.create_dataset("frame", data=np.array([-1, -1], dtype=np.int64))
    ckpt.create_dataset("checksum", shape=(2, DIGEST_BYTES), dtype=np.uint8)


def checkpoint_digest(frame, t, state):
    """BLAKE2b of (frame, t, state): binds a state to the frame it was written for."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    h.update(np.array([frame], dtype="<i8").tobytes())
    h.update(np.array([t], dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(state, dtype=state.dtype.newbyteorder("<")).data)
    return np.frombuffer(h.digest(), dtype=np.uint8)


def write_checkpoint(ckpt, slot, frame, t, state):
    # Any order: the slot counts only once all three agree.
    ckpt["state"][slot] = state
    ckpt["frame"][slot] = frame
    ckpt["checksum"][slot] = checkpoint_digest(frame, t, state)


def clear_checkpoint_slot(ckpt, slot):
    ckpt["frame"][slot] = -1
    ckpt["checksum"][slot] = np.zeros(DIGEST_BYTES, np.uint8)


def complete_frames(f):
    """Frames complete on disk: a frame counts once it is in ``step`` (written last)."""
    return min(f[STEP].shape[0], f[TIME].shape[0], f[VALUE].shape[0])


def newest_checkpoint(f, path):
    """The newest checkpoint slot that verifies, or None when no frame beyond the first is
    complete (the run restarts from x0, exactly).

    Raises:
        StoreError: frames beyond the first are complete but no slot verifies; the message
            says why for each slot and how to recover.
    """
    ckpt = f[CHECKPOINT]
    m = complete_frames(f)
    if "checksum" not in ckpt:
        problems = ["the file predates checkpoint checksums"]
    else:
        frames, sums = ckpt["frame"][:], ckpt["checksum"][:]
        problems = []
        for slot in np.argsort(-frames, kind="stable"):
            slot, k = int(slot), int(frames[slot])
            if k < 0:
                problems.append(f"slot {slot} is empty")
                continue
            if k >= m:
                problems.append(f"slot {slot} names frame {k}, but {m} frames are complete")
                continue
            state, t = ckpt["state"][slot], float(f[TIME][k])
            if not np.array_equal(checkpoint_digest(k, t, state), sums[slot]):
                problems.append(f"slot {slot} (frame {k}) fails its checksum: a torn write")
                continue
            stored = f[VALUE][k]
            if stored.tobytes() != state.astype(stored.dtype).tobytes():
                problems.append(f"slot {slot} differs from the stored frame {k}")
                continue
            return Checkpoint(k, t, state, slot)
    if m <= 1:
        return None
    raise StoreError(
        f"cannot resume {path}: no checkpoint verifies ({'; '.join(problems)}), "
        f"so the state to continue its {m} frames from is unknown. The frames "
        f"still load with particles.load. Call particles.io.repair(path) to "
        f"rebuild the checkpoint from the stored frames, then resume; or start a "
        f"fresh run with overwrite=True"
    )
