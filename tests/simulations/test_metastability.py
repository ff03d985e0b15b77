"""python -m simulations.metastability end to end on a tiny run."""

import numpy as np

from simulations import metastability as script


def test_writes_staircases_and_figure(tmp_path):
    args = ["--betas", "2", "6", "--n", "8", "--batch", "3", "--t-max", "20", "--out", str(tmp_path)]
    path = script.main(args)
    (h5,) = tmp_path.glob("*.h5")
    assert h5 == path and h5.name.startswith("metastability_SA_d2_n8_")
    assert h5.with_suffix(".png").stat().st_size > 10_000
    data = script.load(h5)
    assert data["betas"][1] == 6.0
    counts = data["counts"][1]
    assert counts.shape == (len(data["ts"]), 3)
    # Cluster counts never exceed n and (for these starts) never increase at the end.
    assert counts.max() <= 8 and np.all(counts[-1] <= counts[0])
    assert script.run(script.make_config(script.parse_args(args)), h5) == h5  # finished: nothing to redo


def _staircases(ts, rates, t_max_left):
    """Hand-made staircase data: system s of beta b drops from 3 to 2 clusters at t = 1 and to 1 at
    exp(rate * b + s / 4), or keeps 2 clusters to the end when that is past ``t_max_left``."""
    betas = np.array([2.0, 4.0, 6.0])
    counts = np.full((3, ts.size, 4), 3)
    for b, beta in enumerate(betas):
        for s in range(4):
            end = 1.0 + np.exp(rates * beta + s / 4)
            counts[b, ts >= 1.0, s] = 2
            if end < t_max_left:
                counts[b, ts >= end, s] = 1
    return {"config": {"n": 8}, "betas": betas, "ts": ts, "counts": counts}


def test_plateaus_cut_at_t_max_are_lower_bounds_and_the_fit_knows_it():
    ts = np.geomspace(0.1, 200.0, 400)
    data = _staircases(ts, 0.9, ts[-1])
    growth = script.plateau_growth(data)
    # exp(0.9 * 6 + s / 4) > 200 for every s: beta = 6 is cut entirely, the rest is not.
    np.testing.assert_array_equal(growth.censored, growth.betas == 6.0)
    assert growth.fit.num_censored == 4 and growth.t_max == ts[-1]
    # The cut durations are ~200 where the truth is ~220..470: least squares would bend the rate
    # down; the censored fit stays within its interval of the rate 0.9 of the uncut betas.
    exact = ~growth.censored
    uncut_rate = np.polyfit(growth.betas[exact], np.log(growth.durations[exact]), 1)[0]
    assert growth.fit.ci[0] <= uncut_rate <= growth.fit.ci[1]
    assert np.polyfit(growth.betas, np.log(growth.durations), 1)[0] < uncut_rate - 0.1


def test_plot_returns_the_figure_draws_no_fit_above_t_max_and_saves_only_when_asked(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    ts = np.geomspace(0.1, 200.0, 400)
    monkeypatch.setattr(script, "load", lambda path: _staircases(ts, 0.9, ts[-1]) | {"config": _CONFIG})
    fig = script.plot(tmp_path / "m.h5", save=False)
    assert isinstance(fig, Figure) and not list(tmp_path.iterdir())
    right = fig.axes[1]
    (fit_line,) = [line for line in right.get_lines() if line.get_linestyle() == "--"]
    assert fit_line.get_ydata().max() <= ts[-1]
    markers = {line.get_marker(): len(line.get_xdata()) for line in right.get_lines()}
    assert markers["^"] == 4  # the censored points, marked
    outer = Figure()
    assert script.plot(tmp_path / "m.h5", fig=outer.subfigures(1, 2)[0], save=tmp_path / "given.png") is not None
    assert (tmp_path / "given.png").stat().st_size > 10_000 and len(outer.axes) == 2
    text = script.format_growth(script.load(tmp_path / "m.h5"))
    assert ">= " in text.splitlines()[3] and "theory: agrees" in text


_CONFIG = {"n": 8, "d": 2, "batch": 4, "dt": 0.1, "t_max": 200.0, "tol": 1e-3, "dynamics": "SA"}
