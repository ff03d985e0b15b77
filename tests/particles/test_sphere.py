import numpy as np
import pytest

from particles import inner_products, sample_sphere


def test_sample_sphere_shapes_norms_and_seed():
    x = sample_sphere(5, 3, seed=0)
    assert x.shape == (5, 3) and x.dtype == np.float64
    assert np.abs(np.linalg.norm(x, axis=-1) - 1).max() < 1e-15
    np.testing.assert_array_equal(x, sample_sphere(5, 3, seed=0))
    assert sample_sphere(5, 3, batch=4, seed=0).shape == (4, 5, 3)
    assert sample_sphere(5, 3, dtype="float32").dtype == np.float32


def test_sample_sphere_is_uniform():
    # Uniform on S^2: each coordinate is uniform on [-1, 1] (Archimedes), mean 0, var 1/3.
    x = sample_sphere(200_000, 3, seed=1)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=5 * np.sqrt(1 / 3 / len(x)))
    np.testing.assert_allclose((x**2).mean(axis=0), 1 / 3, atol=5e-3)
    counts, _ = np.histogram(x[:, 2], bins=10, range=(-1, 1))
    np.testing.assert_allclose(counts / len(x), 0.1, atol=5e-3)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((0, 3), {}, ValueError, "n must be >= 1"),
        ((3, 1), {}, ValueError, "d must be >= 2"),
        ((3.0, 2), {}, TypeError, "n must be an integer"),
        ((3, 2), dict(batch=0), ValueError, "batch must be >= 1"),
        ((3, 2), dict(dtype="int32"), ValueError, "dtype must be"),
    ],
)
def test_sample_sphere_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        sample_sphere(*args, **kwargs)


def test_inner_products(rng):
    x = rng.standard_normal((2, 4, 3))
    G = inner_products(x)
    assert G.shape == (2, 4, 4)
    np.testing.assert_allclose(G[1, 2, 3], x[1, 2] @ x[1, 3], rtol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        inner_products(np.ones(3))
    with pytest.raises(TypeError, match="dtype"):
        inner_products(np.ones((2, 2), dtype=int))
