"""phase_diagram(): consistency with simulate and the observables, determinism, errors."""

import warnings

import numpy as np
import pytest

from particles import (
    ClusteringEnsemble,
    StepSizeWarning,
    beta_generator,
    beta_statistics,
    clustering_density,
    count_clusters,
    phase_diagram,
    simulate,
)
from particles.ensembles import draw

SMALL = dict(n=8, d=2, batch=16, t_max=3.0, dt=0.1, checkpoints=7)


def _start(ensemble, beta):
    # The initial state of beta, as beta_statistics draws it.
    rng = beta_generator(ensemble.seed, beta)
    x0 = rng.standard_normal((ensemble.batch, ensemble.n, ensemble.d))
    return x0 / np.linalg.norm(x0, axis=-1, keepdims=True), rng


def test_statistics_match_simulate_and_observables():
    ensemble = ClusteringEnsemble(**SMALL)
    for beta in (0.5, 4.0):
        stats = beta_statistics(beta, ensemble)
        x0, _ = _start(ensemble, beta)
        # Checkpoints at t = 0, 0.5, ..., 3: steps 0, 5, ..., 30 of the same Euler scheme.
        traj = simulate(x0, beta=beta, t_max=3.0, dt=0.1, save_every=5)
        # Pooled counts versus the mean of per-system fractions: equal up to rounding.
        np.testing.assert_allclose(stats["density"], clustering_density(traj.xs).mean(axis=1), rtol=1e-14)
        np.testing.assert_array_equal(stats["clusters"], np.median(count_clusters(traj.xs, tol=1e-4), axis=1))
        np.testing.assert_array_equal(stats["final_density"], clustering_density(traj.final))


def test_per_system_random_matrices_match_simulate():
    ensemble = ClusteringEnsemble(interaction="gaussian", value="minus_qk", **SMALL)
    x0, rng = _start(ensemble, 1.0)
    drawn = draw("gaussian", "minus_qk", 2, rng, size=ensemble.batch)
    A, V = drawn.A, drawn.V
    # A = Q^T K with Q = A^T, K = I.
    traj = simulate(
        x0, beta=1.0, t_max=3.0, dt=0.1, Q=np.swapaxes(A, 1, 2), K=np.broadcast_to(np.eye(2), A.shape).copy(), V=V
    )
    np.testing.assert_array_equal(beta_statistics(1.0, ensemble)["final_density"], clustering_density(traj.final))


@pytest.mark.parametrize("n", [8, 64])
def test_redrawn_matrices_match_simulate_segment_by_segment(n):
    # Redraws every 0.5 (= every checkpoint): the sweep is the chain of 5-step runs, each
    # with the next draw of (B, V). n = 8 takes the bit-mask statistics, n = 64 the
    # depth-first search.
    ensemble = ClusteringEnsemble(
        regen_period=0.5, interaction="goe", value="minus_qk", draw="beta", **{**SMALL, "n": n}
    )
    x, rng = _start(ensemble, 1.5)
    frames = [x]
    for _ in range(6):
        drawn = draw("goe", "minus_qk", 2, rng)
        A, V = drawn.A, drawn.V
        x = simulate(x, beta=1.5, t_max=0.5, dt=0.1, Q=A.T, K=np.eye(2), V=V).final
        frames.append(x)
    frames = np.stack(frames)
    stats = beta_statistics(1.5, ensemble)
    np.testing.assert_allclose(stats["density"], clustering_density(frames).mean(axis=1), rtol=1e-14)
    np.testing.assert_array_equal(stats["clusters"], np.median(count_clusters(frames, tol=1e-4), axis=1))
    np.testing.assert_array_equal(stats["final_density"], clustering_density(frames[-1]))


def test_sweep_shapes_and_determinism():
    result = phase_diagram([0.1, 3.0], **SMALL)
    again = phase_diagram([0.1, 3.0], **SMALL)
    assert result.density.shape == result.clusters.shape == (2, 7)
    assert result.final_density.shape == (2, 16)
    np.testing.assert_array_equal(result.ts, np.linspace(0, 3.0, 7))
    np.testing.assert_array_equal(result.density, again.density)
    assert np.all((0 <= result.density) & (result.density <= 1))


# Gaussian B and V at beta = 4 take the raw step past Euler's stability limit.
@pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")
@pytest.mark.parametrize("draw", ["system", "run"])
def test_any_subset_of_betas_in_any_order_gives_the_same_numbers(draw):
    """The README's promise: a beta's statistics depend on its value and the seed, not on
    its place in the list (draws keyed by position k gave other numbers for [4, 0.5])."""
    kwargs = dict(SMALL, interaction="gaussian", value="gaussian", draw=draw)
    full = phase_diagram([0.5, 2.0, 4.0], **kwargs)
    part = phase_diagram([4.0, 0.5], **kwargs)
    for name in ("density", "clusters", "final_density"):
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[[2, 0]])
    # Another seed gives other numbers: the seed still enters the draws.
    other = phase_diagram([4.0, 0.5], **{**kwargs, "seed": 1})
    assert not np.array_equal(other.final_density, part.final_density)


def test_beta_generator_keys_by_value():
    # -0.0 and 0.0 are one beta; nearby floats are not.
    same = beta_generator(3, 0.0).standard_normal(4), beta_generator(3, -0.0).standard_normal(4)
    np.testing.assert_array_equal(*same)
    first = beta_generator(3, 1.0).standard_normal(4)
    assert not np.array_equal(first, beta_generator(3, np.nextafter(1.0, 2.0)).standard_normal(4))
    assert not np.array_equal(first, beta_generator(4, 1.0).standard_normal(4))


def test_regeneration_and_usa_step_correction_run():
    ensemble = ClusteringEnsemble(
        dynamics="USA",
        usa_step_correction=True,
        interaction="goe",
        draw="beta",
        regen_period=0.5,
        **SMALL,
    )
    # h = 0.1 / (sqrt(2) e^{1.5}): many more steps than with dt, the same checkpoints.
    assert ensemble.step_size(2.0) == pytest.approx(0.1 / (np.sqrt(2) * np.exp(1.5)))
    stats = beta_statistics(2.0, ensemble)
    assert np.all(np.isfinite(stats["density"]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(betas=[]), "betas"),
        (dict(betas=[-1.0]), "betas"),
        (dict(betas=[1.0], n=1), "n must be >= 2"),
        (dict(betas=[1.0], checkpoints=1), "checkpoints must be >= 2"),
        (dict(betas=[1.0], interaction="wishart"), "interaction must be one of"),
        (dict(betas=[1.0], draw="layer"), "draw must be one of"),
        (dict(betas=[1.0], dynamics="softmax"), "dynamics must be one of"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        phase_diagram(**kwargs)


def test_regeneration_on_a_checkpoint_step_redraws(monkeypatch):
    # regen_period 0.5 with checkpoints every 0.5: every redraw falls on a checkpoint step.
    import particles._phase_diagram as module

    draws = []
    original = module.ensembles.draw
    monkeypatch.setattr(module.ensembles, "draw", lambda *a, **k: draws.append(1) or original(*a, **k))
    ensemble = ClusteringEnsemble(regen_period=0.5, interaction="goe", **SMALL)
    beta_statistics(1.0, ensemble)
    # t_max 3: the initial draw plus redraws at t = 0.5, 1.0, ..., 3.0.
    assert len(draws) == 1 + 6


def test_sweep_warns_once_at_its_worst_step():
    """USA with the raw step dt = 0.1 leaves Euler's stability region past beta ~ 1 (dt
    times the field's Lipschitz bound 12,750 at beta = 10): one warning for the sweep,
    naming its worst beta. The authors' step correction and their SA defaults stay silent.
    """
    usa = dict(SMALL, t_max=0.2, dynamics="USA")
    with pytest.warns(StepSizeWarning) as record:
        phase_diagram([0.5, 6.0, 3.0], **usa)
    assert len(record) == 1 and "beta = 6" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepSizeWarning)
        phase_diagram([0.5, 6.0, 3.0], usa_step_correction=True, **usa)
        phase_diagram([0.1, 9.0], **dict(SMALL, t_max=0.2))


# n = 8: bit-mask statistics; n = 70: depth-first search; 15 checkpoints over 10 steps:
# checkpoints with no step between them; USA: no shift, Z_i = n; the other fused kernels:
# a non-symmetric interaction on the circle, d = 3.
@pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")
@pytest.mark.parametrize(
    "settings",
    [
        dict(n=8),
        dict(n=70, batch=6),
        dict(checkpoints=15, t_max=1.0),
        dict(dynamics="USA"),
        dict(interaction="gaussian", value="gaussian"),
        dict(d=3, interaction="goe", value="minus_qk"),
    ],
)
def test_one_launch_per_beta_gives_the_stepwise_numbers(monkeypatch, settings):
    """The fused sweep (one launch per beta) against the stepwise one (a launch per step
    and per checkpoint), bit for bit; and the fused sweep is what runs."""
    import particles._phase_diagram as module

    ensemble = ClusteringEnsemble(**{**SMALL, **settings})
    fused_calls = []
    original = module._fused_sweep
    monkeypatch.setattr(module, "_fused_sweep", lambda *a: fused_calls.append(1) or original(*a))
    fused = beta_statistics(3.0, ensemble)
    assert fused_calls == [1]
    monkeypatch.setattr(module, "_fits_fused_sweep", lambda *a: False)
    stepwise = beta_statistics(3.0, ensemble)
    assert fused_calls == [1]
    for name in ("density", "clusters", "final_density"):
        np.testing.assert_array_equal(fused[name], stepwise[name])


def test_threads_do_not_change_the_numbers():
    settings = dict(SMALL, n=12, batch=40)
    one = phase_diagram([0.5, 4.0], threads=1, **settings)
    two = phase_diagram([0.5, 4.0], threads=2, **settings)
    for name in ("density", "clusters", "final_density"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))


@pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")
def test_fused_sweep_reports_an_overflow_as_the_stepwise_one(monkeypatch):
    import particles._phase_diagram as module

    ensemble = ClusteringEnsemble(**{**SMALL, "dynamics": "USA", "t_max": 1.0})
    with pytest.raises(RuntimeError, match=r"non-finite at t = 0.1 \(step 1\) with beta = 800") as fused:
        beta_statistics(800.0, ensemble)
    monkeypatch.setattr(module, "_fits_fused_sweep", lambda *a: False)
    with pytest.raises(RuntimeError) as stepwise:
        beta_statistics(800.0, ensemble)
    assert str(fused.value) == str(stepwise.value)


@pytest.mark.parametrize("settings", [dict(), dict(dynamics="USA", usa_step_correction=True, t_max=0.5)])
def test_on_steps_reports_every_time_step_once(settings):
    # The phase-diagram bar counts steps: the reports of one beta add up to its step count
    # (also with the USA step correction, where the step shrinks with beta), and the
    # statistics do not change with a callback.
    ensemble = ClusteringEnsemble(**{**SMALL, "batch": 2, **settings})
    steps = []
    stats = beta_statistics(2.0, ensemble, on_steps=steps.append)
    h = ensemble.step_size(2.0)
    assert sum(steps) == ensemble.num_steps(2.0) == int(np.ceil(ensemble.t_max / h - 1e-9))
    assert len(steps) == ensemble.checkpoints and steps[0] == 0
    np.testing.assert_array_equal(stats["density"], beta_statistics(2.0, ensemble)["density"])
