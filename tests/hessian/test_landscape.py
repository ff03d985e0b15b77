"""hessian.landscape and hessian.landscape_directions against plain loops, dense eigh and Taylor's theorem (float64)."""

import numpy as np
import pytest
import torch

from hessian.addition import addition_data
from hessian.landscape import loss_landscape, quadratic_model
from hessian.landscape_directions import (
    random_filter_normalized_directions,
    top_eigenvector_directions,
)
from hessian.losses import CrossEntropyLoss
from hessian.models import Transformer
from hessian.problem import CurvatureProblem


@pytest.fixture(scope="module")
def problem():
    """A small transformer on 3 addition sequences, float64, the reference CE loss (P = 392)."""
    model = Transformer(d_model=4, d_head=4, d_mlp=8, readout=(11, 17))
    params = model.init(seed=3)
    gen = torch.Generator().manual_seed(5)
    # random biases: no parameter sits at a symmetric point where the cubic Taylor term could vanish
    params = {
        k: v + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype) if k.rsplit(".", 1)[1].startswith("b") else v
        for k, v in params.items()
    }
    tokens = addition_data(3, seed=7)[0]
    target = tokens[:, 12:18]
    loss = CrossEntropyLoss()
    return model, loss, params, tokens, target


def _random_direction(params, seed, names=None):
    gen = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items() if names is None or k in names
    }


def _loop(model, loss, params, tokens, target, directions, axes):
    """Reference: for every grid point, a fresh parameter dict loaded with that point's values, one model call."""
    out = np.empty([len(a) for a in axes])
    for idx in np.ndindex(*out.shape):
        p = {k: v.clone() for k, v in params.items()}
        for k, d in enumerate(directions):
            for n, t in d.items():
                p[n] += float(axes[k][idx[k]]) * t
        with torch.no_grad():
            out[idx] = float(loss(model(p, tokens), target))
    return out


def test_line_and_plane_match_plain_loop(problem):
    model, loss, params, tokens, target = problem
    f = lambda p: loss(model(p, tokens), target)
    d1 = _random_direction(params, 1)
    d2 = _random_direction(params, 2, names={"blocks.0.attn.W_Q", "blocks.0.mlp.W_in", "embed.W_E"})
    t = np.linspace(-0.7, 0.9, 9)
    a, b = np.linspace(-0.5, 0.5, 5), np.linspace(-0.3, 0.6, 4)
    line = loss_landscape(f, params, d1, t, chunk_size=4)  # 9 points in chunks of 4, 4, 1
    assert line.values.shape == (9,)
    np.testing.assert_allclose(line.values, _loop(model, loss, params, tokens, target, [d1], (t,)), rtol=1e-12, atol=0)
    plane = loss_landscape(f, params, [d1, d2], (a, b), chunk_size=7)
    assert plane.values.shape == (5, 4)
    np.testing.assert_allclose(
        plane.values, _loop(model, loss, params, tokens, target, [d1, d2], (a, b)), rtol=1e-12, atol=0
    )
    # automatic chunk size gives the same numbers, and the centre value is the loss at w
    auto = loss_landscape(f, params, [d1, d2], (a, b))
    np.testing.assert_allclose(auto.values, plane.values, rtol=1e-12, atol=0)
    assert auto.loss0 == pytest.approx(float(f(params)), rel=1e-14)
    # zero directions leave every point at w
    flat = loss_landscape(f, params, {"unembed.b_U": torch.zeros(12, dtype=torch.float64)}, t)
    np.testing.assert_array_equal(flat.values, np.full(9, flat.loss0))


def test_filter_normalisation(problem):
    _, _, params, _, _ = problem
    dirs = random_filter_normalized_directions(params, seed=0, num_directions=2)
    assert len(dirs) == 2 and set(dirs[0]) == set(params)
    assert not torch.equal(dirs[0]["blocks.0.attn.W_Q"], dirs[1]["blocks.0.attn.W_Q"])
    for d in dirs:
        for n, w in params.items():
            if w.ndim >= 2:
                # a filter is W[..., :, j], the weights feeding output unit j
                np.testing.assert_allclose(d[n].norm(dim=-2).numpy(), w.norm(dim=-2).numpy(), rtol=1e-12, atol=0)
            else:
                assert torch.count_nonzero(d[n]) == 0, n
    inc = random_filter_normalized_directions(
        params, seed=0, include_vectors=True, blocks=["blocks.0.mlp.b_in", "unembed.W_U"]
    )
    assert set(inc[0]) == {"blocks.0.mlp.b_in", "unembed.W_U"}
    assert float(inc[0]["blocks.0.mlp.b_in"].norm()) == pytest.approx(
        float(params["blocks.0.mlp.b_in"].norm()), rel=1e-12
    )


def test_top_eigenvectors_match_dense_eigh(problem):
    model, loss, params, tokens, target = problem
    H = CurvatureProblem(model, loss, params, tokens, target).H.dense().matrix.numpy()
    evals, evecs = np.linalg.eigh(H)
    eig = top_eigenvector_directions(model, loss, params, tokens, target, k=2, tol=1e-12)
    names = list(params)
    g = torch.func.grad(lambda p: loss(model(p, tokens), target))(params)
    g = torch.cat([g[n].reshape(-1) for n in names]).numpy()
    for i in range(2):
        v = torch.cat([eig.directions[i][n].reshape(-1) for n in names]).numpy()
        cos = abs(v @ evecs[:, -1 - i]) / np.linalg.norm(v)
        assert cos > 1 - 1e-8, (i, cos)
        assert v @ g <= 0  # sign convention: the loss decreases along +v to first order
        assert eig.eigenvalues[i] == pytest.approx(evals[-1 - i], rel=1e-10)
    assert evals[-1] - evals[-2] > 1e-3 * evals[-1]  # simple eigenvalues: the eigenvectors are well defined
    assert np.all(eig.residuals < 1e-8)


def test_quadratic_model_coefficients_match_dense(problem):
    model, loss, params, tokens, target = problem
    names = list(params)
    H = CurvatureProblem(model, loss, params, tokens, target).H.dense().matrix.numpy()
    g = torch.func.grad(lambda p: loss(model(p, tokens), target))(params)
    g = torch.cat([g[n].reshape(-1) for n in names]).numpy()
    d1, d2 = _random_direction(params, 1), _random_direction(params, 2, names={"blocks.0.attn.W_V"})
    V = np.stack(
        [torch.cat([d.get(n, torch.zeros_like(params[n])).reshape(-1) for n in names]).numpy() for d in (d1, d2)]
    )
    a, b = np.linspace(-0.2, 0.2, 3), np.linspace(-0.1, 0.3, 4)
    q = quadratic_model(model, loss, params, tokens, target, [d1, d2], (a, b))
    np.testing.assert_allclose(q.slopes, V @ g, rtol=1e-10)
    np.testing.assert_allclose(q.curvature, V @ H @ V.T, rtol=1e-10)
    L0 = float(loss(model(params, tokens), target))
    A, B = np.meshgrid(a, b, indexing="ij")
    C = V @ H @ V.T
    expect = L0 + A * (V[0] @ g) + B * (V[1] @ g) + 0.5 * (C[0, 0] * A**2 + 2 * C[0, 1] * A * B + C[1, 1] * B**2)
    np.testing.assert_allclose(q.values, expect, rtol=1e-12)


def test_quadratic_model_error_is_cubic(problem):
    """Taylor: L(w + t v) - q(t) = T[v, v, v] t^3 / 6 + O(t^4); the log-log slope of the error is 3.

    Attention-only blocks: without the ReLU the loss is smooth everywhere (with it, a unit switching sign
    inside 1e-3..1e-1 puts a kink into the error curve); random biases keep T[v, v, v] away from zero.
    """
    model = Transformer(d_model=4, d_head=4, attn_only=True, readout=(11, 17))
    _, loss, _, tokens, target = problem
    gen = torch.Generator().manual_seed(5)
    params = {k: v + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in model.init(seed=3).items()}
    eig = top_eigenvector_directions(model, loss, params, tokens, target, k=1, tol=1e-12)
    f = lambda p: loss(model(p, tokens), target)
    t = np.geomspace(1e-3, 1e-1, 9)
    land = loss_landscape(f, params, eig.directions[0], t)
    q = quadratic_model(model, loss, params, tokens, target, eig.directions[0], t)
    err = np.abs(land.values - q.values)
    slope = np.polyfit(np.log(t), np.log(err), 1)[0]
    print(f"fitted slope of |L - q| against t along v_1: {slope:.4f}")
    assert 2.8 <= slope <= 3.2


def test_bad_inputs(problem):
    model, loss, params, tokens, target = problem
    f = lambda p: loss(model(p, tokens), target)
    t = np.linspace(-1, 1, 5)
    d = _random_direction(params, 0)
    with pytest.raises(ValueError, match="unknown parameter name 'blocks.0.attn.W_X'"):
        loss_landscape(f, params, {"blocks.0.attn.W_X": torch.zeros(1, 4, 4, dtype=torch.float64)}, t)
    with pytest.raises(ValueError, match=r"must have the parameter's shape \(1, 4, 4\), got \(4, 4\)"):
        loss_landscape(f, params, {"blocks.0.attn.W_Q": torch.zeros(4, 4, dtype=torch.float64)}, t)
    bad = dict(d)
    bad["unembed.W_U"] = bad["unembed.W_U"].clone()
    bad["unembed.W_U"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        loss_landscape(f, params, bad, t)
    with pytest.raises(TypeError, match="directions"):
        loss_landscape(f, params, "W_Q", t)
    with pytest.raises(ValueError, match="one axis per direction"):
        loss_landscape(f, params, [d, d], t)
    with pytest.raises(ValueError, match="1 or 2 directions"):
        loss_landscape(f, params, [d, d, d], (t, t, t))
    with pytest.raises(ValueError, match="finite"):
        loss_landscape(f, params, d, np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="0-dim tensor"):
        loss_landscape(lambda p: model(p, tokens).sum(-1), params, d, t)
    # memory: the message names the size asked for and the limit; nothing is evaluated
    with pytest.raises(ValueError, match=r"one grid point needs \d+ bytes .* above max_memory=1000 bytes"):
        loss_landscape(f, params, d, t, max_memory=1000)
    with pytest.raises(
        ValueError, match=r"chunk_size=1000000 grid points need \d+ bytes .* above max_memory=1073741824 bytes"
    ):
        loss_landscape(f, params, d, t, chunk_size=1_000_000)
    with pytest.raises(ValueError, match="k=392 must be smaller"):
        top_eigenvector_directions(model, loss, params, tokens, target, k=392)
