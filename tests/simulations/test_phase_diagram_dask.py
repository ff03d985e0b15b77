"""The phase-diagram study on a real Dask cluster (worker processes on loopback)."""

import os
import signal
import threading
import time

import distributed
import numpy as np
import pytest

from particles import ClusteringEnsemble, phase_diagram
from particles.io import ResultStore
from simulations import phase_diagram as study

BETAS = [0.5, 2.0, 4.0, 8.0]
SMALL = dict(n=8, d=2, batch=16, t_max=2.0, dt=0.1, checkpoints=5)


def _on_cluster(betas, path, scheduler, **settings):
    config = study.PhaseDiagramConfig(betas=betas, ensemble=ClusteringEnsemble(**{**SMALL, **settings}))
    return study.run(config, path, progress=False, scheduler=scheduler)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_cluster_matches_serial_bit_for_bit(client, tmp_path):
    serial = phase_diagram(BETAS, **SMALL)
    remote = _on_cluster(BETAS, tmp_path / "a.h5", client)
    np.testing.assert_array_equal(remote.density, serial.density)
    np.testing.assert_array_equal(remote.clusters, serial.clusters)
    np.testing.assert_array_equal(remote.final_density, serial.final_density)
    # Another subset, in another order, split otherwise over the workers: the same rows.
    part = _on_cluster([8.0, 0.5, 4.0], tmp_path / "b.h5", client)
    np.testing.assert_array_equal(part.final_density, serial.final_density[[3, 0, 2]])
    np.testing.assert_array_equal(part.density, serial.density[[3, 0, 2]])


def test_scheduler_address(client, tmp_path):
    remote = _on_cluster(BETAS, tmp_path / "a.h5", client.scheduler.address)
    np.testing.assert_array_equal(remote.density, phase_diagram(BETAS, **SMALL).density)


def test_worker_killed_mid_sweep_loses_nothing(client, tmp_path):
    """SIGKILL a worker process while the sweep runs: finished betas are already in the
    HDF5 store, Dask reruns the lost task on a worker the nanny restarts, and the result
    equals the serial one."""
    betas, settings = [0.5, 1.0, 2.0, 4.0, 6.0, 8.0], dict(SMALL, t_max=10.0, batch=256)
    config = study.PhaseDiagramConfig(betas=betas, ensemble=ClusteringEnsemble(**settings))
    store = tmp_path / "sweep.h5"
    outcome = {}
    runner = threading.Thread(
        target=lambda: outcome.setdefault("result", study.run(config, store, progress=False, scheduler=client))
    )
    runner.start()
    saved = 0
    deadline = time.time() + 120
    while saved < 1 and runner.is_alive() and time.time() < deadline:
        time.sleep(0.02)
        saved = len(ResultStore(store, config=config.as_dict())) if store.exists() else 0
    victim = next(iter(client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=240)
    assert 1 <= saved < len(config.betas), "the kill must land mid-sweep"
    assert "result" in outcome
    serial = phase_diagram(betas, **settings)
    np.testing.assert_array_equal(outcome["result"].density, serial.density)
    np.testing.assert_array_equal(outcome["result"].final_density, serial.final_density)
