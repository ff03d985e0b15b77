"""particles.io under fault injection: a stored run cut after every single HDF5 write, then
resumed in a fresh process, is the uninterrupted run bit for bit or a clear refusal.

One subprocess (io_fault_worker.py) does every cut: it counts the writes of a short run
(every file-changing HDF5 call, the rename of the new file and the copy of a resume), then
for each k forks a writer that exits (os._exit, like a kill) right after its k-th write and
resumes what it left in another process. The reference is the in-memory ``simulate``.
Scenarios: 4 frames flushed one by one (94 writes), frames 0 and 6 flushed in turn (39
writes after the file's creation) and the resume of a file torn inside a flush (51 writes);
every cut resumes exactly (none refused). ~15 s of CPU, two cuts at a time.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from . import io_fault_worker

OUTCOMES = ("exact", "refused")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker forks its cuts")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cuts")
    # workqueue: the worker forks after running kernels, which GNU OpenMP does not survive.
    # One thread per child: the cuts run in parallel already.
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(Path(io_fault_worker.__file__)), str(directory)], env=env, capture_output=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return json.loads(proc.stdout)


def _check_every_cut(scenario):
    """Each cut point once; each outcome exact or a refusal that says how to recover, and
    exact after a completed flush: the slot it wrote stays intact until the other verifies."""
    assert "error" not in scenario, scenario.get("error")
    cuts = scenario["cuts"]
    assert [c["k"] for c in cuts] == list(range(scenario["first_cut"], scenario["writes"] + 1))
    bad = [c for c in cuts if c["outcome"] not in OUTCOMES or (c["kept"] > 0 and c["outcome"] != "exact")]
    assert not bad, bad[:3]
    for c in cuts:
        if c["outcome"] == "refused":
            assert "particles.io.repair" in c["detail"] and "overwrite=True" in c["detail"], c
    return Counter(c["outcome"] for c in cuts)


def test_every_cut_of_a_run_flushed_after_each_frame(report):
    # Also covers every write of the file's creation (under a temporary name).
    print("every_frame:", _check_every_cut(report["every_frame"]))


def test_parity_torn_flush_resumes_exactly_or_is_refused(report):
    # Frames 0 and 6 flushed in turn: the old choice of slot by frame parity wrote frame 6's
    # state over frame 0's slot, and a cut before its frame index resumed frame 6's state as
    # frame 0 (0.2 off the uninterrupted run, silently).
    scenario = report["parity"]
    log = scenario["log"]
    last_state = max(i for i, w in enumerate(log) if w.endswith("/parameters/checkpoint/state"))
    index = min(i for i, w in enumerate(log) if w.endswith("/parameters/checkpoint/frame") and i > last_state)
    # Cut k comes right after write k (log[k - 1]).
    torn = [c for c in scenario["cuts"] if last_state < c["k"] <= index]
    assert torn and all(c["outcome"] in OUTCOMES for c in torn), torn
    print("parity:", _check_every_cut(scenario))


def test_every_cut_of_a_resume(report):
    # The resume of a file killed inside a flush: its copy (clearing HDF5's mark), the
    # truncation to the checkpoint and the flushes after it. The frames flushed before the
    # first kill survive all.
    print("resume:", _check_every_cut(report["resume"]))
