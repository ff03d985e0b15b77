"""hessian.jacobians: dense Jacobians and the matrix-free operator against torch.func.jacrev and numpy (float64)."""

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import LinearOperator
from torch.func import jacrev

from hessian.jacobians import BlockJacobian, jacobian, jacobian_operator
from hessian.models import SelfAttention, Transformer

ATOL = 1e-12


@pytest.fixture
def layer_problem():
    """One head, d = 3, d_K = 2, d_V = 4, L = 5, causal, weights and tokens ~ N(0, 1)."""
    layer = SelfAttention(d_model=3, d_k=2, d_v=4, causal=True)
    params = layer.init(seed=1, std=1.0)
    X = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return layer, params, X


def reference(model, params, X, names):
    """(N, P) by torch.func.jacrev on the unflattened arguments, concatenated in the order of ``names``."""

    def f(args):
        merged = {**params, **{k: v for k, v in args.items() if k != "X"}}
        return model(merged, args.get("X", X))

    args = {n: (X if n == "X" else params[n]) for n in names}
    out = f(args)
    jac = jacrev(f)(args)
    return torch.cat([jac[n].reshape(out.numel(), -1) for n in names], dim=1)


def test_dense_jacobian_matches_jacrev_on_attention(layer_problem):
    layer, params, X = layer_problem
    names = ("X", "W_Q", "W_K", "W_V")
    J = jacobian(layer, params, X, wrt=names)
    assert isinstance(J, BlockJacobian) and J.names == names and J.out_shape == (5, 4)
    assert J.matrix.shape == (20, 15 + 6 + 6 + 12) and J.matrix.dtype == torch.float64
    ref = reference(layer, params, X, names)
    torch.testing.assert_close(J.matrix, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(J.block("W_V"), ref[:, 27:], atol=ATOL, rtol=0)
    assert set(J.blocks) == set(names) and J.boundaries == (0, 15, 21, 27, 39)
    # a single name as a str; forward mode (P < N) and reverse mode (P > N) give the same matrix
    torch.testing.assert_close(jacobian(layer, params, X, "W_Q").matrix, ref[:, 15:21], atol=ATOL, rtol=0)
    torch.testing.assert_close(jacobian(layer, params, X, chunk_size=3).matrix, ref[:, :15], atol=ATOL, rtol=0)


def test_dense_jacobian_on_the_transformer():
    """Integer tokens in, logits out: parameter blocks by TransformerLens name, against jacrev."""
    model = Transformer(d_model=4, d_head=2, n_heads=2, d_mlp=6, d_vocab=5, n_ctx=6, layer_norm=True)
    params = model.init(seed=3)
    tokens = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(2))
    names = ("blocks.0.attn.W_Q", "blocks.0.attn.W_V", "blocks.0.ln1.w")
    J = jacobian(model, params, tokens, wrt=names)
    assert J.matrix.shape == (2 * 6 * 5, 16 + 16 + 4)
    ref = reference(model, params, tokens, names)
    torch.testing.assert_close(J.matrix, ref, atol=ATOL, rtol=0)
    op = jacobian_operator(model, params, tokens, wrt=names)
    V, U = torch.randn(3, 36, dtype=torch.float64), torch.randn(3, 60, dtype=torch.float64)
    torch.testing.assert_close(op.torch_matmat(V), V @ ref.T, atol=ATOL, rtol=0)
    torch.testing.assert_close(op.torch_rmatmat(U), U @ ref, atol=ATOL, rtol=0)


def test_float32_jacobian(layer_problem):
    layer, params, X = layer_problem
    J32 = jacobian(layer, params, X, dtype=torch.float32).matrix
    assert J32.dtype == torch.float32
    torch.testing.assert_close(J32.double(), reference(layer, params, X, ("X",)), atol=1e-4, rtol=1e-4)


def test_operator_products_equal_dense(layer_problem):
    layer, params, X = layer_problem
    names = ("X", "W_K")
    M = reference(layer, params, X, names).numpy()
    op = jacobian_operator(layer, params, X, wrt=names, chunk_size=3)
    assert isinstance(op, LinearOperator) and op.shape == M.shape and op.dtype == np.float64
    assert op.names == names and op.shapes == ((5, 3), (1, 3, 2)) and op.out_shape == (5, 4)
    rng = np.random.default_rng(0)
    v, u = rng.standard_normal(M.shape[1]), rng.standard_normal(M.shape[0])
    V, U = rng.standard_normal((M.shape[1], 7)), rng.standard_normal((M.shape[0], 7))
    np.testing.assert_allclose(op @ v, M @ v, atol=ATOL, rtol=0)
    np.testing.assert_allclose(op.rmatvec(u), M.T @ u, atol=ATOL, rtol=0)
    np.testing.assert_allclose(op.T @ u, M.T @ u, atol=ATOL, rtol=0)
    np.testing.assert_allclose(op @ V, M @ V, atol=ATOL, rtol=0)
    np.testing.assert_allclose(op.rmatmat(U), M.T @ U, atol=ATOL, rtol=0)
    np.testing.assert_allclose(op @ np.eye(M.shape[1]), M, atol=ATOL, rtol=0)
    # torch batched products: rows of V are vectors
    Vt = torch.as_tensor(V.T)
    torch.testing.assert_close(op.torch_matmat(Vt), torch.as_tensor(M @ V).T, atol=ATOL, rtol=0)
    torch.testing.assert_close(op.torch_rmatmat(torch.as_tensor(U.T)), torch.as_tensor(M.T @ U).T, atol=ATOL, rtol=0)
    assert np.array_equal(op @ v, op @ v)
    # Gram operators on both sides
    np.testing.assert_allclose(op.gram("input") @ np.eye(M.shape[1]), M.T @ M, atol=1e-11, rtol=0)
    np.testing.assert_allclose(op.gram("output") @ np.eye(M.shape[0]), M @ M.T, atol=1e-11, rtol=0)


def test_spectral_norm_matches_svd(layer_problem):
    layer, params, X = layer_problem
    for names in (("X",), ("X", "W_Q", "W_K", "W_V"), ("W_V",)):  # square, wide (J J^T side), tall (J^T J side)
        M = reference(layer, params, X, names).numpy()
        est = jacobian_operator(layer, params, X, wrt=names).spectral_norm()
        top = np.linalg.svd(M, compute_uv=False)[0]
        assert abs(est.value - top) <= 1e-8 * top
        assert 0 <= est.stderr < 1e-6 and est.num_matvecs > 0


def test_bad_inputs(layer_problem):
    layer, params, X = layer_problem
    with pytest.raises(ValueError, match="no parameter named 'W_X'"):
        jacobian(layer, params, X, wrt=("W_X",))
    with pytest.raises(ValueError, match="must not repeat"):
        jacobian(layer, params, X, wrt=("X", "X"))
    with pytest.raises(ValueError, match="at least one argument"):
        jacobian_operator(layer, params, X, wrt=())
    with pytest.raises(TypeError, match="wrt must be a str or a sequence"):
        jacobian(layer, params, X, wrt=3)
    with pytest.raises(ValueError, match=r"X must be finite"):
        jacobian(layer, params, torch.full_like(X, float("nan")))
    with pytest.raises(ValueError, match=r"params\['W_V'\] must be finite"):
        jacobian(layer, {**params, "W_V": params["W_V"] * float("inf")}, X)
    with pytest.raises(ValueError, match=r"X must have shape \(\.\.\., L, d_model=3\)"):
        jacobian(layer, params, X[:, :2])
    with pytest.raises(ValueError, match="max_entries=100"):
        jacobian(layer, params, X, wrt=("X", "W_V"), max_entries=100)
    model = Transformer(d_model=4, d_head=4, d_mlp=4, d_vocab=5, n_ctx=6)
    with pytest.raises(ValueError, match="token ids"):
        jacobian(model, model.init(), torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(TypeError, match="dtype"):
        jacobian(layer, params, X, dtype=torch.int64)
    with pytest.raises(TypeError, match="model must be a callable"):
        jacobian_operator(None, params, X)
    op = jacobian_operator(layer, params, X)
    with pytest.raises(ValueError, match=r"V must have shape \(15,\) or \(k, 15\)"):
        op.torch_matmat(torch.zeros(3, 14, dtype=torch.float64))
    with pytest.raises(ValueError, match="side must be"):
        op.gram("left")
