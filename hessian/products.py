"""Matrix-free Hessian- and Gauss-Newton-vector products with torch.func (many vectors at once via vmap).

For ``l(w) = loss(F(w), Y)`` with ``w`` the row-major concatenation of the chosen blocks:

* ``H v = H^T v``: the ``vjp`` of the gradient map (reverse over reverse), whose graph is built once per
  product, so repeated and batched products skip the forward and first backward pass;
* ``G v = J^T (d^2 loss / dF^2) (J v)`` (``jvp`` of the model, ``jvp`` of the loss gradient, ``vjp``);
* ``H_f v = H v - G v``.

``PRODUCTS[kind]`` builds the product of a curvature kind (``hessian.kinds.KINDS``) as a function
``(V, chunk_size) -> M V`` on (P,) or (k, P) (rows are vectors); ``Curvature`` uses it. The builders
take no checked problem, only its pieces, so they stay pure and can themselves be vmapped, e.g. over
many inputs X.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor
from torch.func import grad, jvp, vjp, vmap

from ._problem import Loss, Model, Problem, flatten, unflatten

#: vectors per vmap call in the validated products (measured best on the reference transformer)
DEFAULT_CHUNK = 8

#: ``(V, chunk_size) -> M V`` for V of shape (P,) or (k, P); chunk_size: vectors per vmap call (None: all)
Product = Callable[[Tensor, "int | None"], Tensor]


def _closures(model: Model, loss: Loss, params: Mapping[str, Tensor], X: Tensor, Y: Tensor, names: tuple[str, ...]):
    shapes = tuple(tuple(params[n].shape) for n in names)
    w0 = flatten(params, names)

    def output(w: Tensor) -> Tensor:
        merged = dict(params)
        merged.update(unflatten(names, shapes, w))
        return model(merged, X)

    def objective(w: Tensor) -> Tensor:
        return loss(output(w), Y)

    return w0, output, objective


def batched(one: Callable[[Tensor], Tensor], V: Tensor, chunk_size: int | None) -> Tensor:
    """``one`` applied to a (P,) vector, or to each row of a (k, P) matrix by vmap in chunks."""
    return one(V) if V.ndim == 1 else vmap(one, chunk_size=chunk_size)(V)


def hessian_product(model, loss, params, X, Y, names) -> Product:
    """``H V`` with the gradient graph built once and reused by every call.

    H is symmetric, so ``H v`` is the vector-Jacobian product of the gradient map (reverse over
    reverse). Measured on the reference transformer this beats ``jvp`` of ``grad``: the forward pass
    and the first backward pass are not repeated for every call.
    """
    w0, _, objective = _closures(model, loss, params, X, Y, tuple(names))
    _, pullback = vjp(grad(objective), w0)
    return lambda V, chunk_size=None: batched(lambda v: pullback(v)[0], V, chunk_size)


def ggn_product(model, loss, params, X, Y, names) -> Product:
    """``G V = J^T (d^2 loss/dF^2) J V`` with the model output and its pullback computed once."""
    w0, output, _ = _closures(model, loss, params, X, Y, tuple(names))
    out, pullback = vjp(output, w0)
    loss_grad = grad(lambda o: loss(o, Y))

    def one(v: Tensor) -> Tensor:
        Jv = jvp(output, (w0,), (v,))[1]
        return pullback(jvp(loss_grad, (out,), (Jv,))[1])[0]

    return lambda V, chunk_size=None: batched(one, V, chunk_size)


def functional_product(model, loss, params, X, Y, names) -> Product:
    """``H_f V = H V - G V``."""
    h = hessian_product(model, loss, params, X, Y, names)
    g = ggn_product(model, loss, params, X, Y, names)
    return lambda V, chunk_size=None: h(V, chunk_size) - g(V, chunk_size)


PRODUCTS = {"H": hessian_product, "H_o": ggn_product, "H_f": functional_product}


def product_of(problem: Problem, kind: str) -> Product:
    """The product of curvature ``kind`` (a key of ``PRODUCTS``) of a checked problem."""
    return PRODUCTS[kind](problem.model, problem.loss, problem.params, problem.X, problem.Y, problem.names)


def checked_rows(problem: Problem, product: Product, chunk_size: int | None) -> Callable[[Tensor], Tensor]:
    """``V -> M V`` on (P,) or (k, P) tensors (rows are vectors), refusing other shapes, cast to the problem dtype."""
    P = problem.dim

    def apply(V: Tensor) -> Tensor:
        if not isinstance(V, Tensor):
            raise TypeError(f"V must be a torch.Tensor, got {type(V).__name__}")
        if V.ndim not in (1, 2) or V.shape[-1] != P:
            raise ValueError(f"V must have shape ({P},) or (k, {P}), got {tuple(V.shape)}")
        return product(V.to(problem.dtype), chunk_size)

    return apply


# Pure forms of the three products without validation, for torch.func transforms (vmap over many inputs).


def hessian_vector_product(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    V: Tensor,
    *,
    blocks: Sequence[str],
    chunk_size: int | None = None,
) -> Tensor:
    """``H v`` for one vector or each row of ``V`` (pure torch, no validation: vmappable over X).

    Args:
        model: functional model ``f(params, X)``.
        loss: ``loss(output, Y) -> scalar``.
        params: dict name -> tensor (all in one floating dtype).
        X, Y: data.
        V: (P,) or (k, P) vectors in the row-major concatenation of ``blocks``.
        blocks: names of the differentiated parameters.
        chunk_size: vmap chunk size (None: all k at once).

    Returns:
        Tensor of the shape of ``V``.
    """
    return hessian_product(model, loss, params, X, Y, blocks)(V, chunk_size)


def ggn_vector_product(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    V: Tensor,
    *,
    blocks: Sequence[str],
    chunk_size: int | None = None,
) -> Tensor:
    """``G v`` (outer-product Hessian H_o) for one vector or each row of ``V``; as ``hessian_vector_product``."""
    return ggn_product(model, loss, params, X, Y, blocks)(V, chunk_size)


def functional_hessian_vector_product(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    V: Tensor,
    *,
    blocks: Sequence[str],
    chunk_size: int | None = None,
) -> Tensor:
    """``H_f v = H v - G v`` for one vector or each row of ``V``; as ``hessian_vector_product``."""
    return functional_product(model, loss, params, X, Y, blocks)(V, chunk_size)
