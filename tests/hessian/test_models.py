"""Functional models against explicit formulas (theory note §1.1, §2.5, §2.7, §2.8, §3.3)."""

import math

import pytest
import torch

from hessian import LinearMLP, SelfAttention, Transformer

gen = torch.Generator().manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def test_single_head_softmax_formula():
    layer = SelfAttention(d_model=3, d_k=2, d_v=4)
    p = layer.init(seed=0, std=1.0)
    X = randn(5, 3)
    WQ, WK, WV = p["W_Q"][0], p["W_K"][0], p["W_V"][0]
    A = torch.softmax(X @ WQ @ WK.T @ X.T / math.sqrt(2), dim=-1)
    torch.testing.assert_close(layer(p, X), A @ X @ WV, atol=1e-14, rtol=0)


def test_linear_causal_and_joint_qk():
    lin = SelfAttention(d_model=3, d_k=2, d_v=3, attention="linear", causal=True)
    p = lin.init(seed=1, std=1.0)
    X = randn(4, 3)
    T = X @ p["W_Q"][0] @ p["W_K"][0].T @ X.T / math.sqrt(2)
    torch.testing.assert_close(lin(p, X), torch.tril(T) @ X @ p["W_V"][0], atol=1e-14, rtol=0)
    joint = SelfAttention(d_model=3, d_v=3, joint_qk=True, beta=1 / math.sqrt(2), causal=True)
    soft = SelfAttention(d_model=3, d_k=2, d_v=3, causal=True)
    pj = {"W_QK": (p["W_Q"][0] @ p["W_K"][0].T)[None], "W_V": p["W_V"]}
    torch.testing.assert_close(joint(pj, X), soft(p, X), atol=1e-14, rtol=0)


def test_causal_mask_blocks_future_tokens():
    layer = SelfAttention(d_model=3, d_k=2, d_v=3, causal=True)
    p = layer.init(seed=2, std=1.0)
    X = randn(5, 3)
    Z = X.clone()
    Z[3:] = randn(2, 3)
    torch.testing.assert_close(layer(p, X)[:3], layer(p, Z)[:3], atol=0, rtol=0)
    assert not torch.allclose(layer(p, X)[3:], layer(p, Z)[3:])


def test_heads_output_and_residual():
    multi = SelfAttention(d_model=4, n_heads=2, d_k=2, d_v=2, output=True, residual=0.5)
    p = multi.init(seed=3, std=1.0)
    X = randn(3, 5, 4)  # leading batch axis
    single = SelfAttention(d_model=4, d_k=2, d_v=2)
    heads = [
        single({"W_Q": p["W_Q"][h : h + 1], "W_K": p["W_K"][h : h + 1], "W_V": p["W_V"][h : h + 1]}, X)
        for h in range(2)
    ]
    want = 0.5 * X + sum(heads[h] @ p["W_O"][h] for h in range(2))
    torch.testing.assert_close(multi(p, X), want, atol=1e-14, rtol=0)
    concat = SelfAttention(d_model=4, n_heads=2, d_k=2, d_v=2)
    torch.testing.assert_close(concat(p, X), torch.cat(heads, dim=-1), atol=1e-14, rtol=0)


def test_transformer_matches_manual_forward():
    model = Transformer(
        d_model=4, d_head=2, n_heads=2, d_mlp=6, d_vocab=5, n_ctx=7, layer_norm=True, residual_scaling=0.3
    )
    p = model.init(seed=0)
    p = {k: v + 0.1 * randn(*v.shape) for k, v in p.items()}  # non-trivial biases and LayerNorm weights
    tokens = torch.randint(0, 5, (2, 6), generator=gen)

    def ln(x, w, b):
        return torch.nn.functional.layer_norm(x, (4,), w, b, eps=1e-5)

    x = p["embed.W_E"][tokens] + p["pos_embed.W_pos"][:6]
    h = ln(x, p["blocks.0.ln1.w"], p["blocks.0.ln1.b"])
    q = torch.einsum("bla,hak->bhlk", h, p["blocks.0.attn.W_Q"]) + p["blocks.0.attn.b_Q"][:, None]
    k = torch.einsum("bla,hak->bhlk", h, p["blocks.0.attn.W_K"]) + p["blocks.0.attn.b_K"][:, None]
    v = torch.einsum("bla,hak->bhlk", h, p["blocks.0.attn.W_V"]) + p["blocks.0.attn.b_V"][:, None]
    scores = (q @ k.transpose(-1, -2) / math.sqrt(2)).masked_fill(torch.ones(6, 6).triu(1).bool(), -math.inf)
    z = torch.softmax(scores, -1) @ v
    attn = torch.einsum("bhlf,hfo->blo", z, p["blocks.0.attn.W_O"]) + p["blocks.0.attn.b_O"]
    mid = 0.3 * x + attn
    h2 = ln(mid, p["blocks.0.ln2.w"], p["blocks.0.ln2.b"])
    post = (
        mid
        + torch.relu(h2 @ p["blocks.0.mlp.W_in"] + p["blocks.0.mlp.b_in"]) @ p["blocks.0.mlp.W_out"]
        + p["blocks.0.mlp.b_out"]
    )
    logits = ln(post, p["ln_final.w"], p["ln_final.b"]) @ p["unembed.W_U"] + p["unembed.b_U"]
    torch.testing.assert_close(model(p, tokens), logits, atol=1e-13, rtol=0)


def test_reference_config_and_init():
    model = Transformer()
    shapes = model.param_shapes()
    assert shapes["blocks.0.attn.W_Q"] == (1, 128, 128) and shapes["embed.W_E"] == (12, 128)
    p = model.init(seed=0, dtype=torch.float32)
    assert p["blocks.0.attn.W_Q"].std().item() == pytest.approx(0.8 / math.sqrt(128), rel=0.02)
    assert torch.all(p["blocks.0.attn.b_Q"] == 0)
    assert model(p, torch.zeros(2, 18, dtype=torch.long)).shape == (2, 18, 12)


def test_linear_mlp_is_product_of_matrices():
    mlp = LinearMLP(n_layers=3, d_model=4, d_vocab=5)
    p = mlp.init(seed=0)
    tokens = torch.tensor([[0, 3, 4]])
    want = p["embed.W_E"][tokens] @ p["layers.0.W"] @ p["layers.1.W"] @ p["layers.2.W"]
    torch.testing.assert_close(mlp(p, tokens), want, atol=1e-14, rtol=0)
    assert p["layers.2.W"].shape == (4, 5) and p["layers.0.W"].abs().max() <= 0.5


def test_bad_configs():
    with pytest.raises(ValueError, match="residual=1.0 needs the output width"):
        SelfAttention(d_model=3, d_k=2, d_v=2, residual=1.0)
    with pytest.raises(ValueError, match="attention must be one of"):
        SelfAttention(d_model=3, attention="relu")
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention(d_model=3, n_heads=2)
    with pytest.raises(TypeError, match="d_model must be an int"):
        SelfAttention(d_model=3.0)
    with pytest.raises(ValueError, match="n_ctx=18"):
        Transformer(d_model=4, d_head=4, d_mlp=4)(
            Transformer(d_model=4, d_head=4, d_mlp=4).init(), torch.zeros(1, 19, dtype=torch.long)
        )
    with pytest.raises(TypeError, match="tokens must be an integer"):
        Transformer(d_model=4, d_head=4, d_mlp=4)(Transformer(d_model=4, d_head=4, d_mlp=4).init(), torch.zeros(1, 3))
    layer = SelfAttention(d_model=3)
    with pytest.raises(ValueError, match=r"params\['W_Q'\] must have shape \(1, 3, 3\)"):
        layer({**layer.init(), "W_Q": torch.zeros(3, 3, dtype=torch.float64)}, randn(2, 3))


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_transformer_readout_equals_sliced_logits(attention):
    import dataclasses

    model = Transformer(
        d_model=8, d_head=4, n_heads=2, d_mlp=16, n_layers=2, layer_norm=True, attention=attention, residual_scaling=0.5
    )
    p = model.init(seed=0)
    tokens = torch.randint(0, 12, (3, 18), generator=gen)
    short = dataclasses.replace(model, readout=(11, 17))
    # same arithmetic on fewer rows: equal up to summation-order round-off
    torch.testing.assert_close(short(p, tokens), model(p, tokens)[:, 11:17], atol=1e-14, rtol=0)
    with pytest.raises(ValueError, match="readout must be None or"):
        Transformer(readout=(5, 19))
