"""Subprocess of test_io.py's SIGKILL test: stores a run, frame by frame, until killed.

    python tests/particles/io/store_worker.py PATH STORE_DTYPE

Each frame is followed by a short sleep, so that the parent can kill the run mid-way
whatever the speed of the machine; the frames themselves are those of ``RUN``.
"""

import sys
import time

import particles
from particles import _simulate
from particles.io import RunFile

# The run the parent compares against: 4 systems of 16 tokens in d = 2, 400 Euler frames.
RUN = dict(beta=2.0, t_max=20.0, dt=0.05, save_every=1)
X0 = dict(n=16, d=2, batch=4, seed=3)
FRAME_SLEEP = 0.01
FLUSH_EVERY = 0.05


def main():
    path, store_dtype = sys.argv[1], sys.argv[2]
    run = _simulate.run

    def slow_run(*args, **kwargs):
        for frame in run(*args, **kwargs):
            time.sleep(FRAME_SLEEP)
            yield frame

    _simulate.run = slow_run
    x0 = particles.sample_sphere(**X0)
    particles.simulate(
        x0, **RUN, store=RunFile(path, store_dtype=store_dtype, flush_every=FLUSH_EVERY, seed=X0["seed"])
    )


if __name__ == "__main__":
    main()
