"""One bias-corrected Adam step (Kingma & Ba, 2015) on a parameter dict, written out so that its state
(the moments m, v and the step count) can be saved and resumed bit for bit."""

from __future__ import annotations

from torch import Tensor


def adam_step(
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    m: dict[str, Tensor],
    v: dict[str, Tensor],
    t: int,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """One Adam update in place at step ``t`` = 1, 2, ...: ``w -= lr m_hat / (sqrt(v_hat) + eps)``.

    Args:
        params: parameters, updated in place.
        grads: gradients of the parameters named in it (the others stay).
        m, v: first and second moments (zeros before step 1), updated in place.
        t: the step number (1 for the first step), for the bias correction.
        lr, beta1, beta2, eps: Adam's constants (torch.optim.Adam's defaults but ``lr``).
    """
    for name, g in grads.items():
        m[name].mul_(beta1).add_(g, alpha=1 - beta1)
        v[name].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = m[name] / (1 - beta1**t)
        v_hat = v[name] / (1 - beta2**t)
        params[name].sub_(lr * m_hat / (v_hat.sqrt() + eps))
