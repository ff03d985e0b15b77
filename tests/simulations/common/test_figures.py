"""simulations.common.figures: the fig=/ax=/save= contract of every study plot, and the discrete count colours."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from simulations.common.figures import count_colours, finish, panels


def test_panels_new_given_figure_subfigure_and_given_axes():
    fig, axes = panels(2, 3, size=(6, 4))
    assert isinstance(fig, Figure) and axes.shape == (2, 3)
    outer = Figure()
    sub = outer.subfigures(1, 2)[1]
    fig, axes = panels(1, 2, size=(6, 4), fig=sub)
    assert fig is sub and axes.shape == (2,) and len(outer.axes) == 2
    mine = Figure().subplots(2, 2)
    fig, axes = panels(1, 4, size=(6, 4), ax=list(mine.ravel()))
    assert axes.shape == (4,) and axes[3] is mine[1, 1] and fig is mine[0, 0].figure
    fig, axes = panels(2, 2, size=(6, 4), ax=mine, squeeze=False)
    assert axes.shape == (2, 2) and axes[1, 0] is mine[1, 0]
    fig, one = panels(1, 1, size=(6, 4), ax=mine[0, 1])
    assert one is mine[0, 1]


def test_panels_refuse_wrong_axes_and_figures():
    with pytest.raises(ValueError, match="ax must hold 3 axes"):
        panels(1, 3, size=(6, 4), ax=Figure().subplots(1, 2))
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        panels(1, 1, size=(6, 4), ax="left")
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        panels(1, 1, size=(6, 4), fig=object())


def test_finish_saves_only_when_asked(tmp_path):
    fig, ax = panels(1, 1, size=(2, 2))
    ax.plot([0, 1], [0, 1])
    assert finish(fig, False, tmp_path / "beside.png") is fig and not list(tmp_path.iterdir())
    finish(fig, True, tmp_path / "beside.png")
    finish(fig, tmp_path / "sub" / "given.png", tmp_path / "unused.png")
    assert {p.name for p in tmp_path.rglob("*.png")} == {"beside.png", "given.png"}
    sub = Figure().subfigures(1, 2)[0]
    sub.subplots().plot([0, 1])
    finish(sub, tmp_path / "sub.png", None)  # a SubFigure saves through its figure
    assert (tmp_path / "sub.png").stat().st_size > 1000
    with pytest.raises(TypeError, match="save must be"):
        finish(fig, 1, tmp_path / "x.png")


def test_count_colours_give_each_small_count_its_own_colour():
    cmap, norm, ticks, labels = count_colours(32)
    colour = lambda c: tuple(cmap(norm(c)))  # noqa: E731
    assert labels[:5] == ["1", "2", "3", "4", "5"] and labels[-1].endswith("-32")
    assert len({colour(c) for c in (1, 2, 3, 4, 5, 6)}) == 6
    assert colour(2.5) == colour(3) != colour(2)  # a median between two counts takes the upper one
    # every count 1..32 falls in exactly one labelled bin, in order
    bins = [int(norm(c)) for c in range(1, 33)]
    assert bins == sorted(bins) and set(bins) == set(range(len(labels)))
    for c, b in zip(range(1, 33), bins):
        lo, _, hi = labels[b].partition("-")
        assert int(lo) <= c <= int(hi or lo)
    np.testing.assert_allclose(ticks[:2], [1.0, 2.0])
    assert count_colours(3)[3] == ["1", "2", "3"]
