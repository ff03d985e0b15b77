"""simulations.loss_landscape end to end on a tiny model: HDF5, one PNG per point and the summary next to each other."""

import numpy as np
import pytest

from simulations import loss_landscape
from simulations.loss_landscape import PIECES, load, run


def test_loss_landscape_cli(tmp_path):
    argv = [
        "--d-model",
        "4",
        "--batch",
        "4",
        "--train-steps",
        "2",
        "--points-line",
        "5",
        "--points-plane",
        "3",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    path = loss_landscape.main(argv)
    config, data = load(path)
    assert config.points == ("init", "trained")
    for point in config.points:
        line, plane = data[f"{point}_{PIECES[0]}"], data[f"{point}_{PIECES[2]}"]
        assert line["values"].shape == (5,) and plane["values"].shape == (3, 3)
        # the centre of every grid is the point itself, where the second-order model is exact
        assert line["values"][2] == pytest.approx(line["quadratic"][2], rel=1e-12)
        assert plane["values"][1, 1] == pytest.approx(float(line["loss0"]), rel=1e-12)
        assert path.with_name(f"{path.stem}_{point}.png").exists()
    assert len(data["trained_params"]["train_loss"]) == 2
    assert not np.allclose(data["init_eig_line"]["loss0"], data["trained_eig_line"]["loss0"])
    assert "lambda_1" in path.with_name(path.stem + "_summary.txt").read_text()
    # a rerun finds everything saved and computes nothing
    mtime = path.stat().st_mtime_ns
    assert run(config, path, progress=False) == path
    assert path.stat().st_mtime_ns == mtime
