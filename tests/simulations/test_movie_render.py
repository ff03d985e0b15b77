"""simulations.movie.render: frame selection, decoded files (frame count, size, timing) and guards."""

import dataclasses

import imageio_ffmpeg
import matplotlib
import numpy as np
import pytest
from PIL import Image

import particles
from simulations.movie import frame_indices, movie_frames, save_movie

SIZE = 96


def _collapsing(n, d, frames, *, seed):
    """Tokens sliding along great circles from random starts into two points: a cheap
    trajectory with the shape and params of a real run (no Numba compilation)."""
    x0 = particles.sample_sphere(n, d, seed=seed)
    targets = particles.sample_sphere(2, d, seed=seed + 1)[np.arange(n) % 2]
    s = np.linspace(0.0, 1.0, frames)[:, None, None]
    xs = (1 - s) * x0 + s * targets
    xs /= np.linalg.norm(xs, axis=-1, keepdims=True)
    params = particles.SimulationParams(beta=1.0, t_max=2.0, dt=2.0 / (frames - 1))
    return particles.Trajectory(ts=np.linspace(0.0, 2.0, frames), xs=xs, params=params)


@pytest.fixture(scope="module")
def circle():
    return _collapsing(6, 2, 21, seed=1)


@pytest.fixture(scope="module")
def batched():
    runs = [_collapsing(5, 3, 11, seed=seed) for seed in (2, 4, 6)]
    return dataclasses.replace(runs[0], xs=np.stack([r.xs for r in runs], axis=1))


def _decode_mp4(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]
    return meta, frames


def test_frame_indices_all_frames_without_duration():
    np.testing.assert_array_equal(frame_indices(np.linspace(0, 1, 7), fps=10), np.arange(7))


@pytest.mark.parametrize("fps, duration", [(10, 1.0), (7, 2.3), (25, 0.2)])
def test_frame_indices_count_and_nearest_time(fps, duration):
    ts = np.linspace(0.0, 3.0, 31)
    idx = frame_indices(ts, fps=fps, duration=duration)
    assert len(idx) == round(fps * duration)
    targets = np.linspace(0.0, 3.0, len(idx))
    # Each chosen frame is a nearest saved frame to its target time (brute force).
    best = np.min(np.abs(ts[None, :] - targets[:, None]), axis=1)
    np.testing.assert_allclose(np.abs(ts[idx] - targets), best, atol=1e-12)
    assert idx[0] == 0 and idx[-1] == len(ts) - 1


def test_mp4_and_gif_decode_with_expected_frames_and_size(circle, tmp_path):
    fps, duration = 10, 1.5
    movie = save_movie(
        circle, [tmp_path / "c.mp4", tmp_path / "sub" / "c.gif"], fps=fps, duration=duration, size=SIZE, trail=3
    )
    n = round(fps * duration)
    assert movie.n_frames == n
    assert movie.size == (SIZE, SIZE)
    meta, frames = _decode_mp4(tmp_path / "c.mp4")
    assert len(frames) == n
    assert tuple(meta["size"]) == (SIZE, SIZE)
    assert meta["fps"] == pytest.approx(fps)
    gif = Image.open(tmp_path / "sub" / "c.gif")
    assert gif.size == (SIZE, SIZE)
    assert gif.n_frames == n  # the title's time changes every frame: nothing is merged
    durations = []
    for k in range(gif.n_frames):
        gif.seek(k)
        durations.append(gif.info["duration"])
    assert durations == [100] * n
    # Both files show the rendered pictures: GIF (palette, unchanged pixels transparent)
    # and MP4 (lossy H.264) decode close to the frames rendered here.
    _, rendered = movie_frames(circle, fps=fps, duration=duration, size=SIZE, trail=3)
    for k, (want, got_mp4) in enumerate(zip(rendered, frames, strict=True)):
        gif.seek(k)
        got_gif = np.asarray(gif.convert("RGB"), dtype=float)
        assert np.abs(got_gif - want).mean() < 3.0
        assert np.abs(got_mp4.astype(float) - want).mean() < 3.0


def test_frames_show_the_final_cluster_colours(circle):
    # Final state: three tokens at angle 0 (cluster of size 3: tab10 colour 0) and one at
    # angle pi (tab10 colour 1); no token is grey.
    angles = np.array([[0.5, 1.0, 2.0, 3.0], [0.2, 0.3, 0.4, 3.0], [0.0, 0.0, 0.0, np.pi]])
    xs = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    traj = particles.Trajectory(ts=np.array([0.0, 1.0, 2.0]), xs=xs, params=circle.params)
    _, frames = movie_frames(traj, size=SIZE, trail=0)
    pixels = list(frames)[-1].reshape(-1, 3).astype(int)

    def present(rgb):
        target = np.round(255 * np.asarray(rgb[:3])).astype(int)
        return np.min(np.abs(pixels - target).sum(axis=1)) <= 6

    tab10 = matplotlib.colormaps["tab10"]
    assert present(tab10(0)) and present(tab10(1))
    assert not present(tab10(2))


@pytest.mark.parametrize("d", [3, 5])
def test_sphere_and_projected_frames(d):
    traj = _collapsing(8, d, 6, seed=3)
    idx, frames = movie_frames(traj, size=SIZE, spin=30.0)
    frames = list(frames)
    assert len(frames) == len(idx) == len(traj.ts)
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[-1])


def test_system_selects_one_member_of_a_batch(batched):
    k = 2
    single = particles.Trajectory(ts=batched.ts, xs=np.ascontiguousarray(batched.xs[:, k]), params=batched.params)
    _, a = movie_frames(batched, system=k, size=SIZE, duration=0.3, fps=10)
    _, b = movie_frames(single, size=SIZE, duration=0.3, fps=10)
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa, fb)


def test_guards(circle, batched, tmp_path):
    with pytest.raises(ValueError, match="paths"):
        save_movie(circle, tmp_path / "c.avi", size=SIZE)
    with pytest.raises(ValueError, match="size"):
        movie_frames(circle, size=97)
    with pytest.raises(TypeError, match="size"):
        movie_frames(circle, size=96.0)
    with pytest.raises(ValueError, match="system"):
        movie_frames(batched, system=3)
    with pytest.raises(ValueError, match="system"):
        movie_frames(circle, system=1)
    with pytest.raises(TypeError, match="traj"):
        movie_frames(np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match="duration"):
        movie_frames(circle, duration=0.0)
    with pytest.raises(ValueError, match="fps"):
        movie_frames(circle, fps=0, duration=1.0)
    bad = dataclasses.replace(circle, ts=circle.ts[:-1])
    with pytest.raises(ValueError, match="traj.ts"):
        movie_frames(bad)
