"""simulations.training_curvature end to end on a tiny model: HDF5, two PNGs and the summary next to each other."""

from hessian.training import load_training_curvature
from simulations import training_curvature


def test_training_curvature_cli(tmp_path):
    argv = [
        "--d-model",
        "4",
        "--steps",
        "3",
        "--checkpoint-every",
        "3",
        "--batch",
        "4",
        "--eval-batch",
        "4",
        "--top-k",
        "2",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    path = training_curvature.main(argv)
    res = load_training_curvature(path)
    assert list(res.steps) == [0, 3]
    for suffix in ("_spectrum.png", "_density.png", "_summary.txt"):
        assert path.with_name(path.stem + suffix).exists()
    assert "lambda_min" in path.with_name(path.stem + "_summary.txt").read_text()
