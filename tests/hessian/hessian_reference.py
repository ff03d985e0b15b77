"""Slow, obviously correct references: torch.func.hessian / jacrev on the flat block vector."""

from __future__ import annotations

from math import prod

import torch


def flat_objective(model, loss, params, X, Y, names):
    """(w0, l(w), F(w)) with w the row-major concatenation of ``names``."""
    shapes = [tuple(params[n].shape) for n in names]
    w0 = torch.cat([params[n].reshape(-1) for n in names])

    def merge(w):
        out, start = dict(params), 0
        for n, s in zip(names, shapes):
            out[n] = w[start : start + prod(s)].reshape(s)
            start += prod(s)
        return out

    return w0, (lambda w: loss(model(merge(w), X), Y)), (lambda w: model(merge(w), X))


def reference_split(model, loss, params, X, Y, names):
    """Exact (H, H_o, H_f) by torch.func.hessian and H_o = J^T (d^2 loss/dF^2) J with J = jacrev(vec F)."""
    w0, objective, output = flat_objective(model, loss, params, X, Y, names)
    H = torch.func.hessian(objective)(w0)
    F = output(w0)
    J = torch.func.jacrev(lambda w: output(w).reshape(-1))(w0)
    Lam = torch.func.hessian(lambda f: loss(f.reshape(F.shape), Y))(F.reshape(-1))
    H_o = J.T @ Lam @ J
    return H, H_o, H - H_o
