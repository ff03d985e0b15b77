"""References for the curvature along the flow: autograd Hessians of the flow's layer and the authors'
Euler scheme in numpy (no Numba compile)."""

import numpy as np
import torch

import particles


def reference(X, Q, K, V, Y, beta, dynamics, loss):
    """Independent reference: torch.func.hessian of l(w) on the flat [vec Q, vec K, vec V] and
    H_o = J^T (d^2 loss/dF^2) J with J = jacrev(vec F), written from the flow's velocity formula."""
    n, d = X.shape

    def output(w):
        Qw, Kw, Vw = w[: d * d].reshape(d, d), w[d * d : 2 * d * d].reshape(d, d), w[2 * d * d :].reshape(d, d)
        # v_i = sum_j w_ij V x_j with logits beta <Q x_i, K x_j>
        logits = beta * torch.einsum("pa,ia,pb,jb->ij", Qw, X, Kw, X)
        weights = torch.exp(logits) / n if dynamics == "USA" else torch.softmax(logits, dim=1)
        return torch.einsum("ij,ga,ja->ig", weights, Vw, X)

    if loss == "energy":

        def loss_fn(F):
            G = F @ F.T
            return (torch.expm1(beta * G) / beta).sum() / (2 * n * n) if beta > 0 else G.sum() / (2 * n * n)
    else:

        def loss_fn(F):
            return ((F - Y) ** 2).sum() / (n * d)

    w = torch.cat([Q.reshape(-1), K.reshape(-1), V.reshape(-1)])
    H = torch.func.hessian(lambda w: loss_fn(output(w)))(w)
    F = output(w)
    J = torch.func.jacrev(lambda w: output(w).reshape(-1))(w)
    Lam = torch.func.hessian(lambda f: loss_fn(f.reshape(n, d)))(F.reshape(-1))
    H_o = J.T @ Lam @ J
    return H, H_o, H - H_o


def euler_run(x0, *, beta, t_max, dt, Q=None, K=None, V=None):
    """The authors' scheme x_i <- (x_i + dt v_i) / |x_i + dt v_i| (SA) in plain numpy, as a Trajectory:
    the tests get their flows without the Numba solver (whose first compilation is slow on shared cores)."""
    params = particles.SimulationParams(beta=beta, t_max=t_max, dt=dt, Q=Q, K=K, V=V)
    ts = params.step_grid()[0]
    d = x0.shape[-1]
    Q, K, V = (np.eye(d) if M is None else M for M in (Q, K, V))
    x = np.array(x0, dtype=np.float64)
    xs = [x]
    for _ in ts[1:]:
        logits = beta * np.einsum("...pa,...ia,...pb,...jb->...ij", Q, x, K, x)
        v = np.einsum("...ij,...ga,...ja->...ig", softmax(logits), V, x)
        x = x + dt * v
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        xs.append(x)
    return particles.Trajectory(ts=ts, xs=np.stack(xs), params=params)


def softmax(T):
    E = np.exp(T - T.max(-1, keepdims=True))
    return E / E.sum(-1, keepdims=True)
