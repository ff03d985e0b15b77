"""simulations.movie end to end: simulate or read a run, decode the MP4 and GIF written."""

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

import particles
from simulations import movie as script


def _mp4_frames_and_size(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return sum(1 for _ in reader), tuple(meta["size"])


def test_simulated_run_gives_mp4_and_gif_with_expected_frames(tmp_path, capsys):
    # d = 10 runs on the dense torch field (no Numba compilation) and takes the documented
    # random 3-D projection path.
    movie = script.main(
        [
            "--d",
            "10",
            "--n",
            "8",
            "--beta",
            "2",
            "--t-max",
            "1",
            "--dt",
            "0.1",
            "--fps",
            "8",
            "--duration",
            "1.5",
            "--size",
            "112",
            "--out",
            str(tmp_path),
            "--name",
            "run",
        ]
    )
    assert movie.n_frames == 12
    assert _mp4_frames_and_size(tmp_path / "run.mp4") == (12, (112, 112))
    gif = Image.open(tmp_path / "run.gif")
    assert (gif.n_frames, gif.size) == (12, (112, 112))
    assert "saved" in capsys.readouterr().out


def test_from_stored_run_picks_the_system(tmp_path):
    from particles import io

    # A cheap batched "run": tokens sliding along great circles to one point per system.
    x0 = particles.sample_sphere(5, 3, batch=2, seed=0)
    target = particles.sample_sphere(1, 3, batch=2, seed=1)
    s = np.linspace(0, 1, 9)[:, None, None, None]
    xs = (1 - s) * x0 + s * target
    xs /= np.linalg.norm(xs, axis=-1, keepdims=True)
    traj = particles.Trajectory(
        ts=np.linspace(0, 0.8, 9), xs=xs, params=particles.SimulationParams(beta=1.0, t_max=0.8, dt=0.1)
    )
    io.save(tmp_path / "run.h5", traj)
    movie = script.main(
        [
            "--from",
            str(tmp_path / "run.h5"),
            "--system",
            "1",
            "--duration",
            "0",
            "--size",
            "96",
            "--format",
            "mp4",
            "--out",
            str(tmp_path),
        ]
    )
    assert movie.paths == (tmp_path / "run_system1.mp4",)
    assert _mp4_frames_and_size(movie.paths[0]) == (9, (96, 96))
    with pytest.raises(ValueError, match="system"):
        script.main(["--from", str(tmp_path / "run.h5"), "--system", "2", "--format", "gif", "--out", str(tmp_path)])


def test_missing_source_file_exits_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        script.main(["--from", str(tmp_path / "nope.h5"), "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "--from" in capsys.readouterr().err


def test_study_parts_simulate_once_and_never_replace_a_movie(tmp_path):
    config = script.MovieConfig(d=10, n=4, beta=1.0, t_max=0.3, dt=0.1)
    path = script.run(config, tmp_path / "run.h5", progress=False)
    mtime = path.stat().st_mtime_ns
    assert script.run(config, path, progress=False) == path and path.stat().st_mtime_ns == mtime
    traj = script.load(path)
    assert traj.xs.shape == (4, 4, 10) and particles.io.info(path)["seed"] == 0
    gif = tmp_path / "m.gif"
    gif.write_bytes(b"not a movie")
    with pytest.raises(FileExistsError, match="overwrite"):
        script.render(path, [gif], size=64, duration=None, progress=False)
    assert gif.read_bytes() == b"not a movie"
    script.render(path, [gif], overwrite=True, size=64, duration=None, progress=False)
    assert Image.open(gif).n_frames >= 1
