"""Slow, obviously correct NumPy references for the particle kernels."""

import numpy as np


def velocity(x, beta, Q=None, K=None, V=None, dynamics="SA", project=True):
    """The field at one configuration x (n, d) by the explicit double loop (theory note, 1)."""
    n, d = x.shape
    Q = np.eye(d) if Q is None else Q
    K = np.eye(d) if K is None else K
    V = np.eye(d) if V is None else V
    out = np.zeros((n, d))
    for i in range(n):
        logits = np.array([beta * (Q @ x[i]) @ (K @ x[j]) for j in range(n)])
        if dynamics == "SA":
            w = np.exp(logits - logits.max())
            w /= w.sum()
        else:
            w = np.exp(logits) / n
        v = sum(w[j] * (V @ x[j]) for j in range(n))
        out[i] = v - (x[i] @ v) * x[i] if project else v
    return out


def euler(x, beta, dt, n_steps, **kwargs):
    """The authors' scheme x_i <- (x_i + dt v_i) / |x_i + dt v_i| with the unprojected v."""
    for _ in range(n_steps):
        y = x + dt * velocity(x, beta, project=False, **kwargs)
        x = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return x


def rk4(x, beta, dt, n_steps, **kwargs):
    """Classical RK4 on the projected field, renormalised after each step."""
    f = lambda y: velocity(y, beta, **kwargs)  # noqa: E731
    for _ in range(n_steps):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        k4 = f(x + dt * k3)
        y = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        x = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return x


def muscl_rhs(rho, u_face, h):
    """-(F_{i+1/2} - F_{i-1/2}) / h of the MUSCL scheme with van Leer slopes and upwind
    fluxes, in plain NumPy (vectorised over the periodic grid)."""
    a = rho - np.roll(rho, 1)
    b = np.roll(rho, -1) - rho
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(a * b > 0, 2 * a * b / (a + b), 0.0)
    left = rho + 0.5 * slope
    right = np.roll(rho - 0.5 * slope, -1)
    flux = np.where(u_face > 0, u_face * left, u_face * right)
    return -(flux - np.roll(flux, 1)) / h
