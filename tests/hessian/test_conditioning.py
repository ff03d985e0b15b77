"""Extreme eigenvalues, condition numbers and negative mass against LAPACK spectra (float64).

References: a random symmetric matrix with a prescribed spectrum (Q diag(lambda) Q^T, Q from a QR), and real
Hessian blocks (``CurvatureProblem(...).H.dense()`` / ``.H_o.dense()``, themselves checked against torch.func)
diagonalised by ``torch.linalg.eigvalsh``. Tolerances: 1e-8 for eigenvalues (LAPACK and ARPACK at tol 1e-12 agree
to ~1e-13 on these well-separated ends); the SLQ estimates are compared with the exact value within 4 standard
errors, since with ``num_steps = n`` each SLQ sample is exactly Hutchinson's unbiased ``v^T f(A) v / n``.
"""

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import aslinearoperator

from hessian.block_matrix import BlockMatrix
from hessian.conditioning import (
    condition_number,
    conditioning_from_eigenvalues,
    extreme_eigenvalues,
    negative_mass,
    negative_mass_from_eigenvalues,
)
from hessian.losses import CrossEntropyLoss, MSELoss
from hessian.models import SelfAttention, Transformer
from hessian.problem import CurvatureProblem

EIG_TOL = 1e-8


@pytest.fixture
def known():
    """(A, spectrum): n = 80, eigenvalues -3..-0.5 (24), ten exact zeros, 1e-3..10 (46), random eigenbasis."""
    rng = np.random.default_rng(7)
    lam = np.r_[np.linspace(-3.0, -0.5, 24), np.zeros(10), np.geomspace(1e-3, 10.0, 46)]
    Q, _ = np.linalg.qr(rng.standard_normal((lam.size, lam.size)))
    A = (Q * lam) @ Q.T
    return 0.5 * (A + A.T), np.sort(lam)


@pytest.fixture
def attention_problem():
    """Softmax attention, d = 5, L = 7, MSE to a random target: W_Q, W_V blocks of 25 parameters each."""
    gen = torch.Generator().manual_seed(3)
    layer = SelfAttention(d_model=5, d_k=5, d_v=5)
    params = layer.init(seed=2, std=0.7)
    X = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    Y = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    return layer, MSELoss(), params, X, Y


@pytest.mark.parametrize("threshold", [1000, 0], ids=["dense", "lanczos"])
@pytest.mark.parametrize("which", ["largest", "smallest", "both", "magnitude"])
def test_extreme_eigenvalues_known_spectrum(known, which, threshold):
    A, lam = known
    res = extreme_eigenvalues(A, 3, which, dense_threshold=threshold, tol=1e-12, return_vectors=True)
    assert res.method == ("dense" if threshold else "lanczos")
    expected = {
        "largest": lam[-3:],
        "smallest": lam[:3],
        "both": np.r_[lam[:3], lam[-3:]],
        "magnitude": np.sort(lam[np.argsort(-np.abs(lam))[:3]]),
    }[which]
    np.testing.assert_allclose(res.values, expected, rtol=0, atol=EIG_TOL)
    np.testing.assert_allclose(res.values, np.sort(res.values))
    U = res.vectors
    np.testing.assert_allclose(np.linalg.norm(U, axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(A @ U, U * res.values, atol=1e-7)
    if which in ("largest", "both"):
        np.testing.assert_allclose(res.largest, lam[::-1][:3], atol=EIG_TOL)
    if which in ("smallest", "both"):
        np.testing.assert_allclose(res.smallest, lam[:3], atol=EIG_TOL)
    if threshold == 0:
        assert np.all(res.residuals < 1e-8) and res.num_matvecs > 0


def test_every_input_type_gives_the_same_values(known):
    A, lam = known
    inputs = [A, torch.from_numpy(A), BlockMatrix(torch.from_numpy(A), ("A",), ((A.shape[0],),)), aslinearoperator(A)]
    for X in inputs:
        for threshold in (1000, 0):
            res = extreme_eigenvalues(X, 2, "both", dense_threshold=threshold, tol=1e-12)
            np.testing.assert_allclose(res.values, np.r_[lam[:2], lam[-2:]], atol=EIG_TOL)
            assert res.values.dtype == np.float64


def test_condition_number_definitions(known):
    A, lam = known
    c = condition_number(A)
    # ten exact zeros: rank 70, kappa = 10 / 1e-3 over the nonzero part
    assert c.method == "dense" and c.rank == 70 and c.dim == 80
    assert c.kappa == pytest.approx(1e4, rel=1e-9)
    assert (c.largest, c.smallest) == (pytest.approx(10.0, abs=EIG_TOL), pytest.approx(-3.0, abs=EIG_TOL))
    # the same spectrum shifted to be positive definite: kappa = lambda_max / lambda_min, also by Lanczos
    spd = A + 3.5 * np.eye(80)
    dense, lanczos = condition_number(spd), condition_number(spd, dense_threshold=0, tol=1e-12)
    assert dense.rank == lanczos.rank == 80
    assert dense.kappa == pytest.approx(13.5 / 0.5, rel=1e-9)
    assert lanczos.kappa == pytest.approx(dense.kappa, rel=EIG_TOL)
    # negative definite: moduli are used
    assert condition_number(-spd, dense_threshold=0, tol=1e-12).kappa == pytest.approx(27.0, rel=EIG_TOL)
    # indefinite or singular: the smallest |lambda| is interior, Lanczos does not determine kappa
    c = condition_number(A, dense_threshold=0, tol=1e-12)
    assert np.isnan(c.kappa) and c.rank == -1 and c.largest == pytest.approx(10.0, abs=EIG_TOL)
    # a rank tolerance above 1e-3 / 10 drops the smallest positive eigenvalues
    assert conditioning_from_eigenvalues(lam, rtol=2e-4).rank == 70 - int(np.sum((lam > 0) & (lam <= 2e-3)))
    assert conditioning_from_eigenvalues(np.zeros(4)).kappa == float("inf")


def test_negative_mass_dense_and_slq(known):
    A, lam = known
    exact_fraction, exact_mass = 24 / 80, np.abs(lam[lam < 0]).sum() / np.abs(lam).sum()
    d = negative_mass(A)
    assert d.method == "dense" and d.fraction == pytest.approx(exact_fraction, abs=1e-15)
    assert d.mass == pytest.approx(exact_mass, rel=1e-12)
    s = negative_mass(A, dense_threshold=0, num_probes=60, num_steps=80, seed=1)
    assert s.method == "slq" and 0 < s.fraction_stderr < 0.02 and 0 < s.mass_stderr < 0.02
    assert abs(s.fraction - exact_fraction) < 4 * s.fraction_stderr
    assert abs(s.mass - exact_mass) < 4 * s.mass_stderr
    # Ritz values lie in [lambda_min, lambda_max] (Cauchy interlacing): a PSD operator has no negative mass
    psd = negative_mass(A @ A, dense_threshold=0, num_probes=5, num_steps=20)
    assert psd.fraction == 0 and psd.mass < 1e-12
    r = negative_mass_from_eigenvalues(np.array([-2.0, -1e-20, 0.0, 1.0, 1.0]))
    assert r.fraction == pytest.approx(0.2) and r.mass == pytest.approx(0.5)


def test_attention_blocks_against_torch_eigvalsh(attention_problem):
    for block in ("W_Q", "W_V"):
        problem = CurvatureProblem(*attention_problem, [block])
        H = problem.H.dense().matrix
        ref = torch.linalg.eigvalsh(H).numpy()
        op = problem.H.operator()
        for threshold in (1000, 0):
            res = extreme_eigenvalues(op, 2, "both", dense_threshold=threshold, tol=1e-12)
            np.testing.assert_allclose(res.values, np.r_[ref[:2], ref[-2:]], rtol=0, atol=EIG_TOL * np.abs(ref).max())
            # the curvature's own method is the same function on its operator
            same = problem.H.extreme_eigenvalues(2, "both", dense_threshold=threshold, tol=1e-12)
            np.testing.assert_array_equal(same.values, res.values)
        c = condition_number(op)
        a = np.abs(ref)
        assert c.kappa == pytest.approx(a.max() / a[a > 25 * np.finfo(float).eps * a.max()].min(), rel=1e-8)
        assert problem.H.condition_number() == c
        G = problem.H_o.dense().matrix
        ref_o = torch.linalg.eigvalsh(G).numpy()
        c_o = problem.H_o.condition_number()
        assert c_o.rank == int(np.sum(np.abs(ref_o) > 25 * np.finfo(float).eps * np.abs(ref_o).max()))
        assert c_o.largest == pytest.approx(ref_o[-1], rel=1e-10)
        # H_o is PSD (convex loss, theory note §1.2): no eigenvalue below the round-off tolerance
        assert problem.H_o.negative_mass().fraction == 0
    # softmax makes H_f(Q, Q) indefinite (theory note §2.3), and H_f(V, V) = 0 since F is linear in W_V
    H_f = CurvatureProblem(*attention_problem, ["W_Q"]).H_f
    Hf_Q = H_f.dense().matrix
    nm = negative_mass(Hf_Q)
    assert 0 < nm.fraction < 1 and 0 < nm.mass < 1
    assert H_f.negative_mass() == nm
    c_f = H_f.condition_number()
    ref_f = torch.linalg.eigvalsh(Hf_Q).numpy()
    assert (c_f.largest, c_f.smallest) == (pytest.approx(ref_f[-1], abs=1e-12), pytest.approx(ref_f[0], abs=1e-12))


def test_transformer_blocks_lanczos_equals_dense():
    model = Transformer(d_model=8, d_head=8, d_mlp=16, readout=(11, 17))
    params = model.init(seed=0)
    tokens = torch.randint(0, 12, (4, 18), generator=torch.Generator().manual_seed(0))
    loss, target = CrossEntropyLoss(), tokens[:, 12:18]
    # (the W_V block's bottom is a cluster near 0 that takes ~1800 products to resolve to 1e-12:
    # tested on SelfAttention)
    for block in ("blocks.0.attn.W_Q",):
        H = CurvatureProblem(model, loss, params, tokens, target, [block]).H
        ref = torch.linalg.eigvalsh(H.dense().matrix).numpy()
        res = H.extreme_eigenvalues(1, "both", dense_threshold=0, tol=1e-12)
        np.testing.assert_allclose(res.values, [ref[0], ref[-1]], rtol=0, atol=EIG_TOL * np.abs(ref).max())


def test_bad_inputs(known):
    A, _ = known
    with pytest.raises(ValueError, match="k=80"):
        extreme_eigenvalues(A, 80)
    with pytest.raises(ValueError, match="k must be"):
        extreme_eigenvalues(A, 0)
    with pytest.raises(TypeError, match="k must be"):
        extreme_eigenvalues(A, 2.0)
    with pytest.raises(ValueError, match="which"):
        extreme_eigenvalues(A, 1, "LA")
    with pytest.raises(ValueError, match="2k < n"):
        extreme_eigenvalues(A, 40, "both", dense_threshold=0)
    with pytest.raises(ValueError, match="square"):
        extreme_eigenvalues(np.ones((3, 4)))
    with pytest.raises(ValueError, match="symmetric"):
        extreme_eigenvalues(np.triu(np.ones((4, 4))))
    with pytest.raises(TypeError, match="LinearOperator"):
        extreme_eigenvalues([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="dense_threshold"):
        condition_number(A, dense_threshold=-1)
    with pytest.raises(ValueError, match="rtol"):
        condition_number(A, rtol=-1.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        conditioning_from_eigenvalues(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="num_steps"):
        negative_mass(A, dense_threshold=0, num_steps=81)


def test_bad_curvature(attention_problem):
    with pytest.raises(ValueError, match=r"kind must be one of \('H', 'H_o', 'H_f'\), got 'GGN'"):
        CurvatureProblem(*attention_problem, "W_Q").curvature("GGN")
    with pytest.raises(ValueError, match="blocks"):
        CurvatureProblem(*attention_problem, "W_X")
