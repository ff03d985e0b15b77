"""particles.histograms: Gram entries, binning, and the particle model at layer times."""

import numpy as np
import pytest

from particles import histograms as H
from particles import sample_sphere


def _naive_gram_entries(x, diagonal):
    n = len(x)
    return np.array(
        [sum(x[i, k] * x[j, k] for k in range(x.shape[1])) for i in range(n) for j in range(n) if diagonal or i != j]
    )


@pytest.mark.parametrize("diagonal", [True, False])
def test_gram_entries_match_a_loop(rng, diagonal):
    x = H.normalize_tokens(rng.standard_normal((3, 5, 4)))
    entries = H.gram_entries(x, diagonal=diagonal)
    assert entries.shape == (3, 25 if diagonal else 20)
    for layer in range(3):
        np.testing.assert_allclose(entries[layer], _naive_gram_entries(x[layer], diagonal), rtol=0, atol=1e-14)


def test_normalize_tokens_gives_unit_rows(rng):
    h = rng.standard_normal((2, 7, 3)) * 5
    np.testing.assert_allclose(np.linalg.norm(H.normalize_tokens(h), axis=-1), 1.0, atol=1e-15)
    with pytest.raises(ValueError, match="zero"):
        H.normalize_tokens(np.zeros((2, 3)))


@pytest.mark.parametrize("bins", ["fd", 37])
@pytest.mark.parametrize("diagonal", [True, False])
def test_histograms_equal_numpy_histograms_and_count_every_pair(rng, bins, diagonal):
    n = 11
    x = H.normalize_tokens(rng.standard_normal((4, n, 6)))
    hist = H.inner_product_histograms(x, bins=bins, diagonal=diagonal)
    n_pairs = n * n if diagonal else n * (n - 1)
    assert hist.n_pairs == n_pairs and hist.n_tokens == n
    np.testing.assert_array_equal(hist.counts.sum(axis=1), n_pairs)
    for layer in range(4):
        gram = x[layer] @ x[layer].T
        entries = gram.ravel() if diagonal else gram[~np.eye(n, dtype=bool)]
        np.testing.assert_array_equal(hist.counts[layer], np.histogram(entries, hist.edges)[0])
        assert hist.mean[layer] == pytest.approx(entries.mean(), abs=1e-14)
        assert hist.median[layer] == pytest.approx(np.median(entries), abs=1e-14)
    np.testing.assert_allclose((hist.density() * np.diff(hist.edges)).sum(axis=1), 1.0)


def test_edges_cover_the_authors_window_and_every_entry(rng):
    entries = rng.uniform(-0.9, 1.0, size=(3, 400))
    edges = H.histogram_edges(entries, "fd")
    assert edges[0] <= min(entries.min(), H.LOW) and edges[-1] >= H.HIGH
    width = np.diff(edges)
    np.testing.assert_allclose(width, width[0])
    assert H.MIN_BINS <= round((H.HIGH - H.LOW) / width[0]) <= H.MAX_BINS
    narrow = H.histogram_edges(np.full((2, 10), 0.5), "fd")  # IQR = 0: finest allowed bins
    assert round((H.HIGH - H.LOW) / np.diff(narrow)[0]) == H.MAX_BINS
    np.testing.assert_allclose(H.histogram_edges(entries, 10), np.linspace(entries.min(), 1.05, 11))


def test_histogram_guards(rng):
    x = H.normalize_tokens(rng.standard_normal((2, 4, 3)))
    with pytest.raises(ValueError, match="bins"):
        H.histogram_edges(np.zeros((2, 3)), "auto")
    with pytest.raises(ValueError, match="bins"):
        H.histogram_edges(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="edges must cover"):
        H.inner_product_histograms(x, edges=np.linspace(0.0, 1.0, 5))
    with pytest.raises(ValueError, match="x must have shape"):
        H.inner_product_histograms(x[0])


def test_particle_states_start_from_x0_at_layer_times():
    # d = 10 runs on the dense torch field: no Numba compilation in this test.
    x0 = sample_sphere(6, 10, seed=4)
    ts, xs = H.particle_states(x0, layers=3, beta=1.0, layer_time=0.2, steps_per_layer=2)
    np.testing.assert_allclose(ts, [0.0, 0.2, 0.4, 0.6], atol=1e-12)
    assert xs.shape == (4, 6, 10)
    np.testing.assert_array_equal(xs[0], x0)
    np.testing.assert_allclose(np.linalg.norm(xs, axis=-1), 1.0, atol=1e-12)
    # Clustering at beta = 1: the mean inner product grows with "depth".
    assert np.all(np.diff(H.gram_entries(xs).mean(axis=1)) > 0)
