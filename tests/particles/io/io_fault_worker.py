"""Subprocess of test_io_faults.py: cuts a stored run after every single HDF5 write.

    NUMBA_THREADING_LAYER=workqueue python tests/particles/io/io_fault_worker.py DIR

Prints one JSON object: for each scenario, the writes of the uninterrupted run (N), and for
every k = 1..N the outcome of cutting the writer right after its k-th write (os._exit, as
a kill would: nothing buffered in HDF5 reaches the file) and then resuming in a fresh
process. A "write" is every call that changes a file: opening one for writing, creating a
group or dataset, setting an attribute, resizing, writing or flushing a dataset, flushing
or closing a file, switching on SWMR, copying, deleting, renaming.

One process imports particles and computes the reference; each cut run and each resume
runs in a child forked from it, so no child pays for the import and the kernels' loading.
Numba's workqueue threading layer is fork-safe (GNU OpenMP is not), hence the variable.
"""

import json
import os
import shutil
import sys
import threading
import traceback
from pathlib import Path

import h5py
import numpy as np

import particles
from particles import _simulate, io
from particles.io import RunFile, StoreError, writer

X0 = dict(n=6, d=3, batch=3, seed=0)
BETA, DT = 1.5, 0.05
# name: (t_max, flush_every, store_dtype, cut_creation). "every_frame" flushes after each of
# its 4 frames; "parity" after frame 0 and then after frame 6 only (the old choice of slot by
# parity put both in slot 0). The creation of the file, the same code for both, is cut in
# the first only (it writes a temporary file; the second's cuts start at its rename).
RUNS = {"every_frame": (0.15, 1e-9, "float32", True), "parity": (0.30, 1e9, "float64", False)}
# "resume" cuts the resume of an "every_frame" file whose writer was killed inside its
# second flush, right after writing the state of its checkpoint slot: resume starts from
# frame 0, and its first flush must write the other slot than frame 0's.
RESUMED_RUN, RESUMED_TORN_FLUSH = "every_frame", 2
CUT_EXIT = 86
# Cuts run two at a time, one per core of the CI machine.
JOBS = 2
REAL_RUN = _simulate.run


class Cutter:
    """Counts the writes of this process; exits right after the ``cut_at``-th."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cut_at, self.count, self.log, self.flushed = None, 0, [], []

    def reset(self, cut_at):
        self.cut_at, self.count, self.log, self.flushed = cut_at, 0, [], []

    def wrote(self, what):
        with self.lock:
            self.count += 1
            self.log.append(what)
            if self.count == self.cut_at:
                os._exit(CUT_EXIT)


CUTTER = Cutter()


def _name(obj):
    try:
        return obj.name or ""
    except Exception:  # a closed object
        return ""


def _counted(cls, method, when=lambda self, *a, **k: True):
    original = getattr(cls, method)

    def wrapper(self, *args, **kwargs):
        counts = when(self, *args, **kwargs)
        out = original(self, *args, **kwargs)
        if counts:
            CUTTER.wrote(f"{cls.__name__}.{method} {_name(self)}")
        return out

    setattr(cls, method, wrapper)


def install_cutter():
    for cls, method in [
        (h5py.Dataset, "resize"),
        (h5py.Dataset, "__setitem__"),
        (h5py.Dataset, "flush"),
        (h5py.Group, "create_group"),
        (h5py.Group, "create_dataset"),
        (h5py.Group, "copy"),
        (h5py.Group, "__delitem__"),
        (h5py.Group, "move"),
        (h5py.AttributeManager, "__setitem__"),
        (h5py.File, "flush"),
    ]:
        _counted(cls, method)
    _counted(h5py.File, "close", when=lambda self: bool(self.id.valid) and self.mode == "r+")
    # Opening at the lowest level h5py has: h5py.File calls these too.
    open_file, create_file = h5py.h5f.open, h5py.h5f.create

    def counted_open(name, flags=h5py.h5f.ACC_RDONLY, *args, **kwargs):
        fid = open_file(name, flags, *args, **kwargs)
        if flags & (h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE):
            CUTTER.wrote(f"h5f.open {flags} {Path(os.fsdecode(name)).name}")
        return fid

    def counted_create(name, *args, **kwargs):
        fid = create_file(name, *args, **kwargs)
        CUTTER.wrote(f"h5f.create {Path(os.fsdecode(name)).name}")
        return fid

    h5py.h5f.open, h5py.h5f.create = counted_open, counted_create
    swmr = h5py.File.swmr_mode

    def set_swmr(self, value):
        swmr.fset(self, value)
        CUTTER.wrote("File.swmr_mode")

    h5py.File.swmr_mode = property(swmr.fget, set_swmr)
    replace = os.replace

    def counted_replace(src, dst, *args, **kwargs):
        replace(src, dst, *args, **kwargs)
        CUTTER.wrote(f"os.replace {Path(dst).name}")

    os.replace = counted_replace
    flush = writer.RunWriter._flush

    def recorded_flush(self):
        flush(self)
        CUTTER.flushed.append((CUTTER.count, self.count))

    writer.RunWriter._flush = recorded_flush


def start_child(fn):
    """Fork a child running fn(); returns (pid, pipe) for ``finish_child``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 0
        try:
            out = json.dumps(fn()).encode()
        except BaseException:
            out, code = json.dumps({"crash": traceback.format_exc()}).encode(), 1
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(out)
        os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def finish_child(pid, read_fd):
    """(exit code, the JSON the child's fn returned, or None)."""
    with os.fdopen(read_fd, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), (json.loads(data) if data else None)


def in_child(fn):
    return finish_child(*start_child(fn))


class Scenario:
    def __init__(self, name, t_max, flush_every, store_dtype, cut_creation, x0):
        self.name, self.flush_every, self.store_dtype = name, flush_every, store_dtype
        self.cut_creation = cut_creation
        self.x0, self.t_max = x0, t_max
        self.reference = particles.simulate(x0, beta=BETA, t_max=t_max, dt=DT)
        self.params = self.reference.params
        self.total = len(self.reference.ts)

    def write(self, path, cut_at):
        """Store the run (resume it if ``path`` exists), cut after write ``cut_at``.

        The writer under test gets the reference frames replayed instead of computed (the
        same frames, without the solver's cost in every child); a replay asked to start
        from a state other than the reference's fails the child.
        """

        def replay(x0, params, *, start=None, **kwargs):
            first = 0 if start is None else start[0] + 1
            if start is not None and (
                start[1] != self.reference.ts[start[0]] or start[2].tobytes() != self.reference.xs[start[0]].tobytes()
            ):
                raise AssertionError(f"resumed from a state other than frame {start[0]}'s")
            for k in range(first, self.total):
                yield float(self.reference.ts[k]), self.reference.xs[k].copy()

        _simulate.run = replay
        CUTTER.reset(cut_at)
        self.simulate(path, resume=path.exists(), seed=X0["seed"])
        return dict(writes=CUTTER.count, log=CUTTER.log, flushed=CUTTER.flushed)

    def simulate(self, path, **store):
        """The stored run through ``simulate``, the one entry point of stored runs."""
        options = RunFile(path, store_dtype=self.store_dtype, flush_every=self.flush_every, **store)
        return particles.simulate(self.x0, beta=BETA, t_max=self.t_max, dt=DT, store=options)

    def cut_and_resume(self, path, cut_at, kept):
        """Cut a writer (a child of this process) after its write ``cut_at``, then resume
        here, in a process that never held the file."""
        code, _ = in_child(lambda: self.write(path, cut_at))
        if code != CUT_EXIT:
            return dict(outcome=f"writer exited with {code}, not cut")
        return self.resume(path, kept)

    def check_prefix(self, traj, m):
        """The m frames on disk are the reference's first m, in the storage dtype."""
        xs = np.asarray(traj.xs[:m])
        expected = self.reference.xs[:m].astype(self.store_dtype)
        return xs.tobytes() == expected.tobytes() and np.array_equal(traj.ts[:m], self.reference.ts[:m])

    def resume(self, path, kept):
        """Load what the cut left (at least ``kept`` frames must be there), then resume with
        the real solver."""
        out = dict(before=None, outcome=None, detail="")
        CUTTER.reset(None)
        _simulate.run = REAL_RUN
        if path.exists():
            try:
                before = particles.load(path)
                out["before"] = len(before)
                if not self.check_prefix(before, len(before)):
                    out["outcome"] = "bad prefix"
                    return out
            except StoreError as e:
                out["detail"] = f"load: {e}"
        if (out["before"] or 0) < kept:
            out["outcome"] = "lost frames"
            return out
        try:
            traj = self.simulate(path, resume=True)
        except StoreError as e:
            out["outcome"], out["detail"] = "refused", str(e)
            return out
        exact = len(traj) == self.total and self.check_prefix(traj, self.total)
        exact = exact and io.last_state(path)[2].tobytes() == self.reference.xs[-1].tobytes()
        out["outcome"] = "exact" if exact else "different"
        return out


def run_scenario(scenario, directory, base=None):
    """Count the writes, then cut after each one and resume in a fresh process, JOBS at a
    time."""
    directory.mkdir()
    counting = directory / "uncut.h5"
    kept_before = 0
    if base is not None:
        shutil.copy(base[0], counting)
        kept_before = base[1]
    code, counted = in_child(lambda: scenario.write(counting, None))
    if code != 0:
        return dict(error=f"uninterrupted run failed: {counted}")
    n = counted["writes"]
    first, rename = 1, f"os.replace {counting.name}"
    if not scenario.cut_creation and base is None and rename in counted["log"]:
        first = counted["log"].index(rename) + 1
    cuts, running = [], []

    def collect(job):
        k, kept, child = job
        code, result = finish_child(*child)
        if code != 0:
            result = dict(outcome="crash", detail=(result or {}).get("crash", ""))
        result.update(k=k, kept=kept, write=counted["log"][k - 1])
        cuts.append(result)

    for k in range(first, n + 1):
        path = directory / f"cut{k}.h5"
        if base is not None:
            shutil.copy(base[0], path)
        # Frames of the flushes completed before the cut: they must survive it.
        kept = max([kept_before] + [frames for at, frames in counted["flushed"] if at <= k])
        running.append((k, kept, start_child(lambda: scenario.cut_and_resume(path, k, kept))))
        if len(running) == JOBS:
            collect(running.pop(0))
    for job in running:
        collect(job)
    return dict(writes=n, first_cut=first, log=counted["log"], flushed=counted["flushed"], cuts=cuts)


def main():
    directory = Path(sys.argv[1])
    install_cutter()
    x0 = particles.sample_sphere(**X0)
    scenarios = {name: Scenario(name, *run, x0) for name, run in RUNS.items()}
    report = {name: run_scenario(scenario, directory / name) for name, scenario in scenarios.items()}
    resumed, counted = scenarios[RESUMED_RUN], report[RESUMED_RUN]
    state_writes = [i + 1 for i, w in enumerate(counted["log"]) if w.endswith("/parameters/checkpoint/state")]
    at = state_writes[RESUMED_TORN_FLUSH - 1]
    kept = max([0] + [frames for k, frames in counted["flushed"] if k <= at])
    base = directory / "resume-base.h5"
    code, _ = in_child(lambda: resumed.write(base, at))
    assert code == CUT_EXIT, code
    report["resume"] = run_scenario(resumed, directory / "resume", (base, kept))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
