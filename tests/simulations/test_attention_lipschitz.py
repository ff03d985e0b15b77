"""simulations.attention_lipschitz end to end on tiny sizes: HDF5, PNG, slopes; stored norms equal an independent
recomputation."""

import json

import numpy as np
import pytest
import torch

from hessian.closed_form.attention_jacobians import attention_jacobians
from hessian.closed_form.layernorm import layer_norm_jacobian
from simulations import attention_lipschitz
from simulations.attention_lipschitz import LAYERS, TOKENS, LipschitzConfig, draw, load, run, store


def closed_form_norm(layer, params, X, eps):
    """||dF/dX||_2 from the closed forms (no torch.func): attention Jacobian, chained with the per-token LayerNorm
    Jacobian."""
    W_Q, W_K, W_V = (params[n][0] for n in ("W_Q", "W_K", "W_V"))
    if layer == "attention":
        J = attention_jacobians(X, W_Q, W_K, W_V)["X"]
    else:
        c = X - X.mean(-1, keepdim=True)
        Z = c / torch.sqrt((c * c).mean(-1, keepdim=True) + eps)
        J = attention_jacobians(Z, W_Q, W_K, W_V)["X"] @ torch.block_diag(*layer_norm_jacobian(X, eps=eps))
    return np.linalg.svd(J.numpy(), compute_uv=False)[0]


def test_attention_lipschitz_cli(tmp_path):
    argv = [
        "--n",
        "4",
        "--d",
        "3",
        "--draws",
        "2",
        "--num-scales",
        "9",
        "--s-max",
        "1000",
        "--s-fit",
        "100",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    path = attention_lipschitz.main(argv)
    assert path.exists() and path.with_suffix(".png").exists()
    res = load(path)
    assert res.norms.shape == (2, 2, 2, 9) and np.isfinite(res.norms).all() and (res.bounds == 0).all()
    np.testing.assert_allclose(res.scales, np.geomspace(0.1, 1000, 9), rtol=1e-15)
    config = res.config
    # one point per (tokens, layer), recomputed from the closed forms and numpy's SVD
    k = 5
    for t, tokens in enumerate(TOKENS):
        params, X = draw(config, 1, tokens)
        for l, layer in enumerate(LAYERS):
            ref = closed_form_norm(layer, params, res.scales[k] * X, config.eps)
            assert abs(res.norms[t, 1, l, k] - ref) <= 1e-10 * ref
    rows = json.loads(path.with_name(path.stem + "_slopes.json").read_text())
    assert {(r["layer"], r["tokens"]): r["theory"] for r in rows}[("attention", "zero_token")] == 2.0
    # the slopes printed are those of the stored norms: a per-draw least-squares fit, redone with numpy
    keep = res.scales >= 100 * (1 - 1e-12)
    fits = [np.polyfit(np.log(res.scales[keep]), np.log(y[keep]), 1)[0] for y in res.norms[1, :, 0]]
    row = next(r for r in rows if r["layer"] == "attention" and r["tokens"] == "zero_token")
    assert abs(row["slope"] - np.mean(fits)) < 1e-10 and abs(row["slope"] - 2) < 0.05
    # an interrupted run resumes to the same numbers; a finished file is not rewritten
    store(config, path).delete("zero_token_draw=001")
    run(config, path, progress=False)
    np.testing.assert_array_equal(load(path).norms, res.norms)
    mtime = path.stat().st_mtime_ns
    run(config, path, progress=False)
    assert path.stat().st_mtime_ns == mtime


def test_lanczos_method_agrees_with_dense(tmp_path):
    kw = {"L": 4, "d": 3, "draws": 1, "num_scales": 3, "s_max": 10.0, "s_fit": 1.0}
    dense = load(run(LipschitzConfig(**kw), tmp_path / "dense.h5", progress=False))
    lanczos = load(run(LipschitzConfig(method="lanczos", **kw), tmp_path / "lanczos.h5", progress=False))
    np.testing.assert_allclose(lanczos.norms, dense.norms, rtol=1e-8, atol=0)
    assert (lanczos.bounds < 1e-6 * lanczos.norms).all()


def test_config_guards(tmp_path):
    with pytest.raises(ValueError, match="method must be 'dense' or 'lanczos', got 'svd'"):
        LipschitzConfig(method="svd")
    with pytest.raises(ValueError, match="s_max must exceed s_min"):
        LipschitzConfig(s_min=10.0, s_max=1.0)
    with pytest.raises(ValueError, match="eps must be a finite float > 0"):
        LipschitzConfig(eps=0.0)
    with pytest.raises(ValueError, match="L must be >= 2"):
        LipschitzConfig(L=1)
    with pytest.raises(ValueError, match="tokens must be one of"):
        draw(LipschitzConfig(), 0, "uniform")
    run(LipschitzConfig(L=3, d=2, draws=1, num_scales=2), tmp_path / "a.h5", progress=False)
    with pytest.raises(ValueError, match="config differs"):
        run(LipschitzConfig(L=3, d=2, draws=1, num_scales=3), tmp_path / "a.h5", progress=False)
