"""The three curvatures of a loss ``l(w) = loss(f(w))`` (Ormaniec, Dangel & Singh, 2025).

``H`` is the Hessian; the Gauss-Newton split writes ``H = H_o + H_f`` with ``H_o = J^T (d^2 loss) J``
the outer-product (generalized Gauss-Newton) part and ``H_f = sum_i (d loss / d f_i) d^2 f_i`` the
functional part. Every function or result that names a curvature uses these strings.
"""

KINDS = ("H", "H_o", "H_f")


def check_kind(name, value):
    """``value`` when it is one of :data:`KINDS`, else a ValueError naming the argument."""
    if value not in KINDS:
        raise ValueError(f"{name} must be one of {KINDS}, got {value!r}")
    return value
