"""simulations.training_curvature: checkpoint diagnostics against the dense Hessian, resume, the command line.

References: ``CurvatureProblem(...).H.dense()`` of the whole model with
``numpy.linalg.eigvalsh`` (eigenvalues to 1e-8: ARPACK tol 1e-10 relative; the exact block norms to 1e-10);
exact properties of Gauss quadrature (weights sum to 1, Ritz values inside [lambda_min, lambda_max]); the trace
estimate within 4 standard errors of the exact trace.
"""

import dataclasses

import numpy as np
import pytest

from hessian import CurvatureProblem
from hessian.block_groups import block_groups
from particles.io import ResultStore
from simulations import training_curvature
from simulations._addition_model import addition_problem
from simulations.training_curvature import KIND, TrainingConfig, checkpoint_curvature

TINY = dict(d_model=4, d_mlp=8, eval_batch=4, batch=4, top_k=2, trace_matvecs=30, slq_probes=2, slq_steps=8)


def test_checkpoint_curvature_against_dense():
    config = TrainingConfig(**TINY)
    model = config.model()
    params = model.init(seed=5)
    tokens, target, loss = addition_problem(model, config.eval_batch, seed=config.eval_seed)
    out = checkpoint_curvature(model, params, tokens, target, loss, config)
    H = CurvatureProblem(model, loss, params, tokens, target).H.dense()
    eig = np.linalg.eigvalsh(H.matrix.numpy())
    assert out["num_params"] == H.matrix.shape[0]
    np.testing.assert_allclose(out["top"], eig[::-1][: config.top_k], rtol=0, atol=1e-8)
    assert abs(out["bottom"] - eig[0]) < 1e-8
    exact_trace = float(np.trace(H.matrix.numpy()))
    assert abs(out["trace"] - exact_trace) <= 4 * out["trace_se"] + 1e-10
    w = out["slq_weights"]
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=0, atol=1e-12)
    nodes = out["slq_nodes"][w > 0]
    assert nodes.min() >= eig[0] - 1e-8 and nodes.max() <= eig[-1] + 1e-8
    for g, members in enumerate(block_groups(model).values()):
        exact = np.sqrt(sum(float((H.block(a, b) ** 2).sum()) for a in members for b in members))
        assert abs(out["block_norms"][g] - exact) < 1e-10 * max(1.0, exact)


def test_training_resumes_bit_for_bit(tmp_path):
    config = TrainingConfig(**TINY, steps=4, checkpoint_every=2, lr=0.01)
    path = training_curvature.run(config, tmp_path / "run.h5", progress=False)
    res = training_curvature.load(path)
    assert list(res.steps) == [0, 2, 4] and res.top.shape == (3, 2) and res.block_norms.shape == (3, 10)
    assert res.train_loss[-1] > 0 and np.isfinite(res.trace).all()
    store = ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})
    final = store.load("step=0000004")
    store.delete("step=0000004")  # interrupted after step 2: training resumes from the saved Adam state
    training_curvature.run(config, path, progress=False)
    again = store.load("step=0000004")
    for key, value in final.items():
        if key.startswith(("param:", "adam_")) or key in ("loss", "top", "trace", "block_norms"):
            np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(value))


def test_guards():
    with pytest.raises(ValueError, match="lr must be"):
        TrainingConfig(lr=-1.0)
    with pytest.raises(ValueError, match="beta2 must be"):
        TrainingConfig(beta2=1.0)
    with pytest.raises(ValueError, match="trace_matvecs must be >= 3"):
        TrainingConfig(trace_matvecs=2)
    with pytest.raises(TypeError, match="steps must be an int"):
        TrainingConfig(steps=1.5)
    with pytest.raises(TypeError, match="config must be a TrainingConfig"):
        training_curvature.run({}, "x.h5")
    assert TrainingConfig(steps=250, checkpoint_every=100).checkpoints == [0, 100, 200, 250]


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
    res = training_curvature.load(path)
    assert list(res.steps) == [0, 3]
    for suffix in ("_spectrum.png", "_density.png", "_summary.txt"):
        assert path.with_name(path.stem + suffix).exists()
    assert "lambda_min" in path.with_name(path.stem + "_summary.txt").read_text()
