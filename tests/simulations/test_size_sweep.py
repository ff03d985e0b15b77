"""``python -m simulations.size_sweep`` end to end on tiny sizes: HDF5, PNG and table next to each other, one number
recomputed directly, and the matrix-free path against the dense one."""

import numpy as np
import pytest
import torch

from hessian import CurvatureProblem
from hessian.kinds import KINDS
from simulations import size_sweep
from simulations._spectral_summary import QUANTITIES
from simulations.size_sweep import SizeSweepConfig, load, measure_row, row_setup


def test_size_sweep_cli(tmp_path):
    argv = [
        "--d-models",
        "4",
        "--layers",
        "1",
        "--batch",
        "4",
        "--blocks",
        "W_Q",
        "W_V",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    path = size_sweep.main(argv)
    assert path.with_suffix(".png").exists() and path.with_name(path.stem + "_table.txt").exists()
    res = load(path)
    assert set(res.rows) == {(4, 1, "softmax"), (4, 1, "linear")}
    row = res.rows[(4, 1, "softmax")]
    assert row["values"].shape == (2, 3, len(QUANTITIES)) and np.all(row["methods"] == "dense")
    # kappa of H_o(W_V) recomputed from the dense Gauss-Newton block and torch.linalg.eigvalsh (rtol P eps)
    config = SizeSweepConfig(d_models=(4,), layers=(1,), batch=4)
    setup, params = row_setup(config, 4, 1, "softmax")
    G = (
        CurvatureProblem(setup.model, setup.loss, params, setup.tokens, setup.target, ["blocks.0.attn.W_V"])
        .H_o.dense()
        .matrix
    )
    a = torch.linalg.eigvalsh(G).abs().numpy()
    kept = a[a > 16 * np.finfo(float).eps * a.max()]
    kappa, method = res.get(4, 1, "softmax", "W_V", "H_o", "kappa")
    assert method == "dense" and kappa == pytest.approx(a.max() / kept.min(), rel=1e-8)
    assert res.get(4, 1, "softmax", "W_V", "H_o", "frobenius")[0] == pytest.approx(
        float(torch.linalg.norm(G)), rel=1e-12
    )
    # H_f(V, V) = 0: the logits are piecewise linear in W_V of the last layer (ReLU MLP, no LayerNorm)
    assert (
        res.get(4, 1, "softmax", "W_V", "H_f", "frobenius")[0]
        < 1e-12 * res.get(4, 1, "softmax", "W_V", "H", "frobenius")[0]
    )
    # a rerun resumes: nothing recomputed, same file (--overwrite: the figure and table are redrawn)
    seconds = row["seconds"]
    assert load(size_sweep.main(argv + ["--overwrite"])).rows[(4, 1, "softmax")]["seconds"] == seconds


def test_matrix_free_row_matches_dense():
    dense_cfg = SizeSweepConfig(d_models=(4,), layers=(1,), attentions=("softmax",), blocks=("W_Q",), batch=4)
    free_cfg = SizeSweepConfig(
        d_models=(4,),
        layers=(1,),
        attentions=("softmax",),
        blocks=("W_Q",),
        batch=4,
        dense_threshold=0,
        lanczos_tol=1e-12,
        slq_probes=10,
        slq_steps=16,
        trace_samples=15,
        frobenius_samples=16,
    )
    dense, free = measure_row(dense_cfg, 4, 1, "softmax"), measure_row(free_cfg, 4, 1, "softmax")
    q = QUANTITIES.index
    for k, kind in enumerate(KINDS):
        d, f, se = dense["values"][0, k], free["values"][0, k], free["stderr"][0, k]
        scale = np.abs(d[[q("largest"), q("smallest")]]).max()
        assert (
            abs(f[q("largest")] - d[q("largest")]) < 1e-8 * scale
            and abs(f[q("smallest")] - d[q("smallest")]) < 1e-8 * scale
        )
        # random estimates (Hutch++, Hutchinson; SLQ with 16 steps = P: exact quadrature, unbiased samples): 4 stderr
        assert abs(f[q("trace")] - d[q("trace")]) <= 4 * se[q("trace")] + 1e-12 * scale
        assert abs(f[q("frobenius")] - d[q("frobenius")]) <= 4 * se[q("frobenius")] + 1e-12
        assert abs(f[q("negative_mass")] - d[q("negative_mass")]) <= 4 * se[q("negative_mass")] + 1e-12
    assert set(free["methods"][0, :, q("frobenius")]) == {"hutchinson"} and set(free["methods"][0, :, q("trace")]) == {
        "hutchpp"
    }
