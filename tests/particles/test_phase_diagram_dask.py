"""The phase-diagram sweep on a real Dask cluster (worker processes on loopback)."""
import numpy as np
import pytest

from particles import phase_diagram

distributed = pytest.importorskip("distributed")

SWEEP = dict(betas=[0.5, 2.0, 4.0, 8.0], n=8, d=2, batch=16, t_max=2.0, dt=0.1, checkpoints=5)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_cluster_matches_serial_bit_for_bit(client):
    serial = phase_diagram(**SWEEP)
    remote = phase_diagram(**SWEEP, scheduler=client)
    np.testing.assert_array_equal(remote.density, serial.density)
    np.testing.assert_array_equal(remote.clusters, serial.clusters)
    np.testing.assert_array_equal(remote.final_density, serial.final_density)


def test_scheduler_address(client):
    remote = phase_diagram(**SWEEP, scheduler=client.scheduler.address)
    np.testing.assert_array_equal(remote.density, phase_diagram(**SWEEP).density)
