r"""Riemannian gradient and Hessian of the interaction energy on $(S^{d-1})^n$.

With Q = K = V = I and $W_{ij} = e^{\beta\langle x_i, x_j\rangle}$ (theory note, section 1),

$$E_\beta(x) = \frac{1}{2\beta n^2}\sum_{i,j} W_{ij}, \qquad
  \nabla_{x_i} E_\beta = \frac{1}{n^2}\sum_j W_{ij}\,x_j \quad (j = i \text{ included}).$$

The Euclidean Hessian has the blocks
$\partial^2 E/\partial x_i \partial x_k = n^{-2} W_{ik}(I + \beta x_k x_i^\top)
+ \delta_{ik}\,\beta n^{-2}\sum_j W_{ij} x_j x_j^\top$. With $P_i = I - x_i x_i^\top$,
$y_{ik} = P_i x_k$ and $c_i = \langle x_i, \nabla_{x_i}E\rangle = n^{-2}\sum_j W_{ij}\langle x_i, x_j\rangle$,
the Riemannian gradient and Hessian (ambient coordinates, $P = \mathrm{blockdiag}(P_i)$) are

$$\mathrm{grad}_i = \frac{1}{n^2}\sum_j W_{ij}\, y_{ij}, \qquad
  \mathrm{Hess} = P\,\nabla^2 E\,P - \mathrm{blockdiag}_i(c_i P_i),$$
$$\mathrm{Hess}_{ik} = \frac{W_{ik}}{n^2}\big(P_i P_k + \beta\, y_{ik} y_{ki}^\top\big)
  + \delta_{ik}\Big(\frac{\beta}{n^2}\sum_j W_{ij}\, y_{ij} y_{ij}^\top - c_i P_i\Big).$$

The self-term $j = i$ is normal ($y_{ii} = 0$), so it leaves the gradient alone; it adds
$W_{ii} P_i / n^2$ to $P\nabla^2E\,P$ and the same to $c_i P_i$, which cancel. It is dropped
from the sums: kept, it would leave rounding of order $10^{-16} e^\beta$ in the Hessian.

beta = 0 is allowed: $E_\beta - 1/(2\beta)$ tends to $|\sum_i x_i|^2/(2n^2)$, whose
derivatives are the beta -> 0 limits of the formulas above (they are continuous in beta);
only the constant $1/(2\beta)$ diverges and it has no derivative.
"""

import numpy as np

from .checks import check_configuration, check_real

__all__ = ["MAX_BETA", "MAX_HESSIAN_SIZE", "SPHERE_TOL", "energy_gradient", "energy_hessian"]

# Rows farther than this from the unit sphere are rejected: the formulas use |x_i| = 1.
SPHERE_TOL = 1e-10
# e^beta overflows float64 beyond ~709.
MAX_BETA = 700.0
# n*d above this would make the dense (n d)^2 Hessian and its temporaries exceed ~0.5 GB.
MAX_HESSIAN_SIZE = 4096


def _weights(x, beta):
    """Gram matrix and W = exp(beta G) without the self-terms (which cancel, see above)."""
    gram = x @ x.T
    W = np.exp(beta * gram)
    np.fill_diagonal(W, 0.0)
    return gram, W


def energy_gradient(x, beta):
    r"""Riemannian gradient of $E_\beta$ on $(S^{d-1})^n$ at one configuration.

    Args:
        x: (n, d) float64 (or float32) array of unit rows (within 1e-10).
        beta: inverse temperature, 0 <= beta <= 700 (beta = 0: the limit, see the module).

    Returns:
        (n, d) float64 array, row i tangent at x_i: $P_{x_i} S_i / n^2$.

    Raises:
        TypeError: x is not a float array, beta not a real number.
        ValueError: bad shape, non-finite entries, a row off the sphere, beta out of range.
    """
    x = check_configuration("x", x, tol=SPHERE_TOL)
    beta = check_real("beta", beta, low=0.0, high=MAX_BETA)
    n = x.shape[0]
    gram, W = _weights(x, beta)
    # sum_j W_ij (x_j - G_ij x_i): the radial part of W x removed.
    return (W @ x - (W * gram).sum(axis=1)[:, None] * x) / n**2


def energy_hessian(x, beta):
    r"""Riemannian Hessian of $E_\beta$ on $(S^{d-1})^n$ at one configuration, in ambient
    coordinates: $P\nabla^2E\,P - \mathrm{blockdiag}_i(\langle x_i, \nabla_i E\rangle P_i)$.

    It maps tangent vectors to tangent vectors and has the n normal directions
    $(0, .., x_i, .., 0)$ in its kernel. The dynamics is gradient *ascent* of $E_\beta$,
    so positive eigenvalues are unstable directions.

    Args:
        x: (n, d) float64 (or float32) array of unit rows (within 1e-10), n d <= 4096.
        beta: inverse temperature, 0 <= beta <= 700.

    Returns:
        (n d, n d) symmetric float64 array, rows and columns ordered (i, a) row-major.

    Raises:
        TypeError, ValueError: as ``energy_gradient``; also n d > MAX_HESSIAN_SIZE.
    """
    x = check_configuration("x", x, tol=SPHERE_TOL)
    beta = check_real("beta", beta, low=0.0, high=MAX_BETA)
    n, d = x.shape
    if n * d > MAX_HESSIAN_SIZE:
        raise ValueError(
            f"x of shape {x.shape} gives a dense Hessian of size {n * d}; at most {MAX_HESSIAN_SIZE} is supported"
        )
    gram, W = _weights(x, beta)
    eye = np.eye(d)
    xx = x[:, :, None] * x[:, None, :]  # x_i x_i^T, (n, d, d)
    proj = eye - xx  # P_i
    y = x[None, :, :] - gram[:, :, None] * x[:, None, :]  # y[i, k] = P_i x_k, (n, n, d)
    # P_i P_k = I - x_i x_i^T - x_k x_k^T + G_ik x_i x_k^T
    pp = eye - xx[:, None] - xx[None, :] + gram[:, :, None, None] * x[:, None, :, None] * x[None, :, None, :]
    blocks = W[:, :, None, None] * (pp + beta * y[:, :, :, None] * np.swapaxes(y, 0, 1)[:, :, None, :])
    c = (W * gram).sum(axis=1)
    diag = beta * np.einsum("ij,ija,ijb->iab", W, y, y) - c[:, None, None] * proj
    idx = np.arange(n)
    blocks[idx, idx] += diag
    H = blocks.transpose(0, 2, 1, 3).reshape(n * d, n * d) / n**2
    # Symmetric in exact arithmetic; symmetrise the rounding so eigh sees one matrix.
    return (H + H.T) / 2
