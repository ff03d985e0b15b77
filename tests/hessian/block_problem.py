"""A tiny one-layer pre-LN transformer on addition for the block tests: every LN gain and bias moved away
from its initial value, so that every LayerNorm term is exercised."""

import torch

from hessian import CrossEntropyLoss, Transformer
from hessian.addition import addition_data, answer_positions


def tiny_block_problem(*, layer_norm=True):
    """(model, params, tokens, target, loss): d_model 4, d_mlp 8, 4 sequences, CE on the answer digits."""
    a0, a1 = answer_positions(5)
    model = Transformer(d_model=4, d_head=4, d_mlp=8, layer_norm=layer_norm, readout=(a0 - 1, a1 - 1))
    params = model.init(seed=3)
    g = torch.Generator().manual_seed(7)
    for name in params:
        if ".ln" in "." + name or name.startswith("ln_final") or ".b_" in name or name.endswith(("b_in", "b_out")):
            params[name] = params[name] + 0.3 * torch.randn(params[name].shape, generator=g, dtype=torch.float64)
    tokens = addition_data(4, seed=1234)[0]
    return model, params, tokens, tokens[:, a0:a1], CrossEntropyLoss()
