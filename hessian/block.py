"""Curvature of the whole pre-LN Transformer block: group block maps, sigma growth, closed-form assembly.

The block is ``LN1 -> attention -> residual -> LN2 -> FFN -> residual`` of a one-layer ``Transformer``
(``layer_norm=True``: also ln_final and the unembedding after it) on the addition task, cross-entropy on
the answer digits (theory note §3, §4). Parameters are grouped as Q, K, V, O (attention weights), LN1,
LN2 (gain and bias), W1, b1, W2, b2 (``mlp.W_in``, ``b_in``, ``W_out``, ``b_out``); for every pair of
groups the Frobenius norm of the exact Hessian block (H, H_o, H_f, dense autograd in float64) is
recorded, at initialisation and along a grid of embedding scales sigma (the growth protocol of
``hessian.experiments.growth``). ``assembled_feedforward_blocks`` rebuilds the LN2 and FFN blocks from
the closed forms of ``hessian.closed_form`` and the loss derivatives at their outputs (the second-order
chain rule of theory note §4.4). ``simulations/block_curvature.py`` is the command line.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, vjp, vmap

from simulations._sigma_grids import sigma_grid
from simulations.common.fits import fit_power_law

from ._checks import check_positive_int
from .addition import addition_data, answer_positions
from .block_matrix import BlockMatrix
from .closed_form.feedforward import feedforward_blocks
from .closed_form.layernorm import layer_norm_blocks
from .dense import HessianSplit, hessian_split
from .losses import CrossEntropyLoss
from .models import Transformer
from .models.attention import apply_attention
from .models.transformer import layer_norm

#: parameter groups of one block, in forward order
GROUPS = ("Q", "K", "V", "O", "LN1", "LN2", "W1", "b1", "W2", "b2")
KINDS = ("H", "H_o", "H_f")
#: a block of H_f below this fraction of the H block is float64 round-off of H - H_o (identically zero in theory)
ZERO_RTOL = 1e-10
_MEMBERS = {
    "Q": ("attn.W_Q",),
    "K": ("attn.W_K",),
    "V": ("attn.W_V",),
    "O": ("attn.W_O",),
    "LN1": ("ln1.w", "ln1.b"),
    "LN2": ("ln2.w", "ln2.b"),
    "W1": ("mlp.W_in",),
    "b1": ("mlp.b_in",),
    "W2": ("mlp.W_out",),
    "b2": ("mlp.b_out",),
}


def block_groups(model: Transformer, layer: int = 0) -> dict[str, tuple[str, ...]]:
    """Parameter names of each group of block ``layer`` (LN groups only with ``layer_norm``).

    Attention biases are left out, as in the reference heatmap (theory note §3.7).

    Args:
        model: the transformer (not ``attn_only``).
        layer: block index.

    Returns:
        dict group -> tuple of parameter names, in the order of ``GROUPS``.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a hessian.Transformer, got {type(model).__name__}")
    if model.attn_only:
        raise ValueError("model must have an MLP (attn_only=False) for the FFN groups")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < model.n_layers:
        raise ValueError(f"layer must be an int in [0, {model.n_layers}), got {layer!r}")
    out = {}
    for g in GROUPS:
        if g.startswith("LN") and not model.layer_norm:
            continue
        out[g] = tuple(f"blocks.{layer}.{m}" for m in _MEMBERS[g])
    return out


def group_norm_map(H: BlockMatrix, groups: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Frobenius norms ``||H[g, g']||_F`` of every pair of parameter groups.

    Args:
        H: block matrix whose names include every member of ``groups``.
        groups: dict group -> parameter names (a group may span several parameters).

    Returns:
        (G, G) symmetric array (G = number of groups), in the order of ``groups``.
    """
    names = list(groups)
    G = len(names)
    sq = {(a, b): float((H.block(a, b) ** 2).sum()) for a in H.names for b in H.names}
    out = np.zeros((G, G))
    for i, gi in enumerate(names):
        for j, gj in enumerate(names):
            out[i, j] = math.sqrt(sum(sq[(a, b)] for a in groups[gi] for b in groups[gj]))
    return out


def split_maps(split: HessianSplit, groups: Mapping[str, Sequence[str]]) -> np.ndarray:
    """(3, G, G) group norm maps of H, H_o, H_f (order ``KINDS``)."""
    return np.stack([group_norm_map(M, groups) for M in (split.H, split.H_o, split.H_f)])


def addition_problem(model: Transformer, batch: int, *, seed: int = 1234) -> tuple[Tensor, Tensor, CrossEntropyLoss]:
    """(tokens (batch, 18), target (batch, 6) answer digits, loss) of the reference CE objective.

    The model must read out the positions before the answer digits (``readout=(11, 17)``).
    """
    a0, a1 = answer_positions(5)
    if model.readout != (a0 - 1, a1 - 1):
        raise ValueError(
            f"model.readout must be {(a0 - 1, a1 - 1)} (the positions that predict the answer), got {model.readout}"
        )
    tokens = addition_data(batch, seed=seed)[0]
    return tokens, tokens[:, a0:a1], CrossEntropyLoss()


def block_hessian(
    model: Transformer, params: Mapping[str, Tensor], tokens: Tensor, target: Tensor, loss, *, layer: int = 0
) -> tuple[HessianSplit, dict[str, tuple[str, ...]]]:
    """Exact H, H_o, H_f (float64, dense autograd) over every parameter group of block ``layer``.

    Returns:
        (HessianSplit over the flattened group members, groups).
    """
    groups = block_groups(model, layer)
    names = [n for members in groups.values() for n in members]
    return hessian_split(model, loss, params, tokens, target, names), groups


# ---------------------------------------------------------------------------------------------------------
# assembly of the LN2 and FFN blocks from the closed forms


def _token_derivatives(fn: Callable[[Tensor], Tensor], y0: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient (n, D) and per-token Hessians (n, D, D) of a scalar ``fn`` that is a sum over tokens of y0 (..., D).

    A Hessian-vector product with the unit vector e_c placed at every token returns column c of every
    token's Hessian at once (no cross-token terms), so D products suffice.
    """
    D = y0.shape[-1]
    g, pullback = vjp(grad(fn), y0)
    cols = vmap(lambda e: pullback(e.expand(y0.shape))[0])(torch.eye(D, dtype=y0.dtype))
    return g.reshape(-1, D), cols.reshape(D, -1, D).permute(1, 2, 0)


def assembled_feedforward_blocks(
    model: Transformer, params: Mapping[str, Tensor], tokens: Tensor, target: Tensor, loss
) -> dict[tuple[str, str], Tensor]:
    """LN2 and FFN Hessian blocks of a one-layer transformer from the closed forms (theory note §4.2-4.4).

    With ``r`` the residual after attention (read-out tokens), ``y = LN2(r)``, ``o = FFN(y)`` and the tail
    ``l(o) = loss(unembed(ln_final(r + o)))`` (per token), the FFN blocks are ``feedforward_blocks`` at the
    gradient and per-token Hessian of ``l`` in ``o``, and the LN2 gain/bias blocks are ``layer_norm_blocks``
    at the derivatives of ``l(FFN(y))`` in ``y``: the loss derivatives at each sub-layer's output are the
    only autograd input, every parameter derivative comes from the formulas.

    Args:
        model: one-layer pre-LN ``Transformer`` with a readout and one head (float64 parameters).
        params: its parameters.
        tokens: (N, T) tokens; target: loss target; loss: a per-token loss (``CrossEntropyLoss()``).

    Returns:
        dict ``(name_a, name_b) -> block`` over ``blocks.0.{ln2.w, ln2.b, mlp.W_in, mlp.b_in, mlp.W_out, mlp.b_out}``
        (LN2 x FFN cross blocks are not assembled).
    """
    if (
        not isinstance(model, Transformer)
        or model.n_layers != 1
        or not model.layer_norm
        or model.readout is None
        or model.attn_only
    ):
        raise ValueError("model must be a one-layer pre-LN Transformer with an MLP and a readout")
    p = "blocks.0."
    start, stop = model.readout
    tokens = tokens[..., :stop]
    T = tokens.shape[-1]
    params = {k: v.to(torch.float64) for k, v in params.items()}
    with torch.no_grad():
        resid = params["embed.W_E"][tokens] + params["pos_embed.W_pos"][:T]
        h = layer_norm(resid, params[p + "ln1.w"], params[p + "ln1.b"], model.ln_eps)
        r = model.residual_scaling * resid[..., start:stop, :] + apply_attention(
            model.attn, params, h, prefix=p + "attn.", query_rows=(start, stop)
        )
    W1, b1, W2, b2 = (params[p + "mlp." + n] for n in ("W_in", "b_in", "W_out", "b_out"))
    w2, bias2 = params[p + "ln2.w"], params[p + "ln2.b"]

    def tail(o: Tensor) -> Tensor:
        x = layer_norm(r + o, params["ln_final.w"], params["ln_final.b"], model.ln_eps)
        return loss(x @ params["unembed.W_U"] + params["unembed.b_U"], target)

    def ffn(y: Tensor) -> Tensor:
        return torch.relu(y @ W1 + b1) @ W2 + b2

    y = layer_norm(r, w2, bias2, model.ln_eps)
    d = r.shape[-1]
    G_o, Lam_o = _token_derivatives(tail, ffn(y))
    G_y, Lam_y = _token_derivatives(lambda v: tail(ffn(v)), y)
    ffn_split = feedforward_blocks(y.reshape(-1, d), W1, b1, W2, b2, G_o, Lam_o, activation="relu")
    ln_split = layer_norm_blocks(r.reshape(-1, d), w2, bias2, G_y, Lam_y, eps=model.ln_eps)
    out = {}
    ffn_names = dict(zip(("W_1", "b_1", "W_2", "b_2"), ("mlp.W_in", "mlp.b_in", "mlp.W_out", "mlp.b_out")))
    for a, na in ffn_names.items():
        for b, nb in ffn_names.items():
            out[(p + na, p + nb)] = ffn_split.H.block(a, b)
    for a in ("w", "b"):
        for b in ("w", "b"):
            out[(p + "ln2." + a, p + "ln2." + b)] = ln_split.H.block(a, b)
    return out


# ---------------------------------------------------------------------------------------------------------
# the sweep


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    """The block-curvature experiment.

    Attributes:
        d_model: width (d_head = d_model, one head); d_mlp: FFN width.
        layer_norm: pre-LN block (True, the issue's block) or no LayerNorm.
        batch: sequences in the one data batch (seed ``data_seed``).
        grid, num_sigmas: sigma grid (``hessian.experiments.sigma_grid``).
        repeats: fresh model seeds ``model_seed + r``.
        embedding: "fresh" (redraw the token and position embeddings ~ N(0, sigma^2) at every sigma, the
            authors' protocol) or "rescaled" (sigma times one unit draw per repeat).
    """

    d_model: int = 8
    d_mlp: int = 32
    layer_norm: bool = True
    batch: int = 16
    grid: str = "log"
    num_sigmas: int = 10
    repeats: int = 2
    embedding: str = "fresh"
    data_seed: int = 1234
    model_seed: int = 1234

    def __post_init__(self) -> None:
        for name in ("d_model", "d_mlp", "batch", "num_sigmas", "repeats"):
            check_positive_int(getattr(self, name), name, minimum=2 if name == "num_sigmas" else 1)
        if not isinstance(self.layer_norm, bool):
            raise TypeError(f"layer_norm must be a bool, got {type(self.layer_norm).__name__}")
        sigma_grid(self.grid, self.num_sigmas)  # validates grid
        if self.embedding not in ("fresh", "rescaled"):
            raise ValueError(f"embedding must be 'fresh' or 'rescaled', got {self.embedding!r}")

    @property
    def sigmas(self) -> np.ndarray:
        return sigma_grid(self.grid, self.num_sigmas)

    def model(self) -> Transformer:
        a0, a1 = answer_positions(5)
        return Transformer(
            d_model=self.d_model,
            d_head=self.d_model,
            d_mlp=self.d_mlp,
            layer_norm=self.layer_norm,
            readout=(a0 - 1, a1 - 1),
        )

    def name(self) -> str:
        norm = "pre" if self.layer_norm else "none"
        return f"block_norm={norm}_d={self.d_model}_mlp={self.d_mlp}_batch={self.batch}_{self.grid}{self.num_sigmas}_rep={self.repeats}_{self.embedding}"


def _embed(params: dict[str, Tensor], sigma: float, seed: int, base: dict[str, Tensor] | None) -> dict[str, Tensor]:
    out = dict(params)
    if base is not None:  # rescaled: one unit draw per repeat
        for n in ("embed.W_E", "pos_embed.W_pos"):
            out[n] = sigma * base[n]
        return out
    gen = torch.Generator().manual_seed(seed)
    for n in ("embed.W_E", "pos_embed.W_pos"):
        out[n] = sigma * torch.randn(params[n].shape, generator=gen, dtype=params[n].dtype)
    return out


def _store_config(config: BlockConfig) -> dict:
    groups = ",".join(block_groups(config.model()))
    return {"kind": "hessian_block_curvature", "groups": groups, **dataclasses.asdict(config)}


def run_block_curvature(config: BlockConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Group norm maps at initialisation and along the sigma grid, to HDF5 point by point (resumable).

    Store (``particles.io.ResultStore``): key ``init_rep={r}`` and ``sigma={k}_rep={r}`` with dataset
    ``maps`` (3, G, G) (H, H_o, H_f), attrs ``sigma`` (NaN at init) and ``seconds``; the config (with the
    comma-separated ``groups``) under ``/parameters``.
    A finished key is skipped on rerun.

    Returns:
        The HDF5 path.
    """
    from tqdm.auto import tqdm

    from particles.io import ResultStore

    if not isinstance(config, BlockConfig):
        raise TypeError(f"config must be a BlockConfig, got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = config.model()
    groups = block_groups(model)
    store = ResultStore(path, _store_config(config))
    tokens, target, loss = addition_problem(model, config.batch, seed=config.data_seed)
    work = [(None, r) for r in range(config.repeats)] + [
        (k, r) for r in range(config.repeats) for k in range(config.num_sigmas)
    ]
    for k, r in tqdm(work, desc="block curvature", disable=not progress):
        key = f"init_rep={r}" if k is None else f"sigma={k:02d}_rep={r}"
        if store.done(key):
            continue
        t0 = time.perf_counter()
        params = model.init(seed=config.model_seed + r)
        sigma = float("nan")
        if k is not None:
            sigma = float(config.sigmas[k])
            base = None
            if config.embedding == "rescaled":
                base = _embed(params, 1.0, 10_000 + r, None)
            params = _embed(params, sigma, 1_000_003 * (r + 1) + k, base)
        split, _ = block_hessian(model, params, tokens, target, loss)
        store.save(key, maps=split_maps(split, groups), sigma=sigma, seconds=time.perf_counter() - t0)
    return path


@dataclass(frozen=True)
class BlockResults:
    """A block-curvature file in memory.

    Attributes:
        config: the BlockConfig; groups: group names (G,); sigmas: (S,).
        init: (R, 3, G, G) maps at initialisation; maps: (S, R, 3, G, G) along the grid (NaN if missing).
        seconds: total compute seconds.
    """

    config: BlockConfig
    groups: tuple[str, ...]
    sigmas: np.ndarray
    init: np.ndarray
    maps: np.ndarray
    seconds: float

    def diagonal(self) -> np.ndarray:
        """(S, R, 3, G) Frobenius norms of the diagonal group blocks."""
        return np.diagonal(self.maps, axis1=-2, axis2=-1)


def read_store_config(path: Path, cls: type, kind: str) -> dict:
    """The dataclass fields of ``cls`` stored in the ``/parameters`` attributes of a ResultStore file of ``kind``."""
    import h5py

    with h5py.File(path, "r") as f:
        attrs = dict(f["parameters"].attrs) if "parameters" in f else {}
    if attrs.get("kind") != kind:
        raise ValueError(f"{path} is not a {kind} file (kind={attrs.get('kind')!r})")
    out = {}
    for field in dataclasses.fields(cls):
        if field.name in attrs:
            v = attrs[field.name]
            v = v.item() if isinstance(v, np.generic) else v
            out[field.name] = type(field.default)(v) if isinstance(field.default, (bool, int, float, str)) else v
    return out


def load_block_curvature(path: str | Path) -> BlockResults:
    """Read a block-curvature file (missing points are NaN)."""
    from particles.io import ResultStore

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    config = BlockConfig(**read_store_config(path, BlockConfig, "hessian_block_curvature"))
    store = ResultStore(path, _store_config(config))
    groups = tuple(block_groups(config.model()))
    S, R, G = config.num_sigmas, config.repeats, len(groups)
    init, maps = np.full((R, 3, G, G), np.nan), np.full((S, R, 3, G, G), np.nan)
    seconds = 0.0
    done = set(store.keys())
    for r in range(R):
        if f"init_rep={r}" in done:
            v = store.load(f"init_rep={r}")
            init[r], seconds = v["maps"], seconds + float(v["seconds"])
        for k in range(S):
            if f"sigma={k:02d}_rep={r}" in done:
                v = store.load(f"sigma={k:02d}_rep={r}")
                maps[k, r], seconds = v["maps"], seconds + float(v["seconds"])
    return BlockResults(config, groups, config.sigmas, init, maps, seconds)


def large_sigma_exponent(group: str, kind: str, layer_norm: bool = True) -> float | None:
    """Predicted log-log slope of a diagonal group block of the pre-LN block for large sigma (ours, theory note §2.9).

    Once the raw residual stream (scale sigma) dominates, every LayerNorm input inside the block is
    normalised (attention and FFN see sigma-independent inputs) and only ln_final sees the scale: its Jacobian
    is ~ 1/sigma and its Hessian ~ 1/sigma^2, the logit gradient stays O(1). So H_o ~ sigma^-2 for every group;
    H_f ~ sigma^-1 where the block output is curved in the group (softmax: Q, K and LN1, whose gain and bias
    move the attention input), and ~ sigma^-2 where it is linear or piecewise linear (V, O, LN2 through a ReLU
    FFN, W1, b1, W2, b2), since then only ln_final's Hessian contributes; H follows its slower part. Without
    LayerNorm there is no prediction (None).
    """
    if not layer_norm:
        return None
    curved = group in ("Q", "K", "LN1")
    if kind == "H_o":
        return -2.0
    return -1.0 if curved else -2.0


def _fit(sigmas: np.ndarray, values: np.ndarray, keep: np.ndarray):
    return fit_power_law(sigmas[keep], values[keep]) if keep.sum() >= 3 else fit_power_law(sigmas[:0], values[:0])


def growth_table(results: BlockResults, *, sigma_small: float = 0.1, sigma_large: float = 1.0) -> list[dict]:
    """Fitted log-log slopes of every diagonal group block against sigma (repeat means), small and large sigma.

    Args:
        results: ``load_block_curvature`` output.
        sigma_small: fit ``sigma <= sigma_small`` (predicted slope 0 under pre-LN: LN(sX) = LN(X) and the
            block outputs dominate the stream).
        sigma_large: fit ``sigma >= sigma_large`` (predicted ``large_sigma_exponent``).

    Returns:
        One dict per (group, kind): group, kind, slope_small, ci_small, slope_large, ci_large, theory_large,
        zero (the block is round-off: <= ZERO_RTOL of the group's H block), norm_min, norm_max (ci: half-width
        of the 95% interval).
    """
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(results.diagonal(), axis=1)  # (S, 3, G)
    s = results.sigmas
    tol = 1 + 1e-12
    rows = []
    for g, group in enumerate(results.groups):
        scale = float(np.nanmax(mean[:, 0, g])) if np.isfinite(mean[:, 0, g]).any() else 0.0
        for q, kind in enumerate(KINDS):
            v = mean[:, q, g]
            # H_f = H - H_o of a block on which it vanishes (piecewise-linear path) is float64 round-off, not a trend
            zero = bool(np.nanmax(v) <= ZERO_RTOL * scale) if np.isfinite(v).any() else True
            ok = np.isfinite(v) & (v > 0)
            small = _fit(s, v, ok & (s <= sigma_small * tol))
            large = _fit(s, v, ok & (s * tol >= sigma_large))
            rows.append(
                dict(
                    group=group,
                    kind=kind,
                    slope_small=small.slope,
                    ci_small=small.ci,
                    slope_large=large.slope,
                    ci_large=large.ci,
                    theory_large=large_sigma_exponent(group, kind, results.config.layer_norm),
                    zero=zero,
                    norm_min=float(np.min(v[ok])) if ok.any() else 0.0,
                    norm_max=float(np.max(v[ok])) if ok.any() else 0.0,
                )
            )
    return rows


def format_growth_table(rows: list[dict], sigma_small: float = 0.1, sigma_large: float = 1.0) -> str:
    """Plain-text table of ``growth_table`` rows (slopes with 95% intervals; '0 (round-off)' for vanishing blocks)."""
    head = f"{'group':6s} {'kind':4s} {'slope sigma<=' + format(sigma_small, 'g'):>18s} {'slope sigma>=' + format(sigma_large, 'g'):>18s} {'theory':>7s}  ||.||_F range"
    lines = [head]
    for row in rows:
        if row["zero"] or not row["norm_max"] > 0:
            lines.append(
                f"{row['group']:6s} {row['kind']:4s} {'0 (round-off)':>18s} {'':>18s} {'':>7s}  <= {row['norm_max']:.1e}"
            )
            continue
        th = "-" if row["theory_large"] is None else f"{row['theory_large']:g}"
        lines.append(
            f"{row['group']:6s} {row['kind']:4s} {row['slope_small']:8.2f} +- {row['ci_small']:5.2f} {row['slope_large']:8.2f} +- {row['ci_large']:5.2f} "
            f"{th:>7s}  {row['norm_min']:.2e} .. {row['norm_max']:.2e}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# figures (drawn from the HDF5 file)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_block_map(path: str | Path, out: str | Path | None = None) -> Path:
    """Heatmaps of log10 ||H[g, g']||_F for H, H_o, H_f at initialisation (mean over repeats), numbers in the cells."""
    res = load_block_curvature(path)
    out = Path(path).with_name(Path(path).stem + "_map.png") if out is None else Path(out)
    plt = _pyplot()
    with np.errstate(invalid="ignore"):
        M = np.nanmean(res.init, axis=0)  # (3, G, G)
    M[2] = np.where(M[2] <= ZERO_RTOL * M[0], 0.0, M[2])  # round-off of H - H_o where H_f vanishes
    G = len(res.groups)
    logs = np.log10(np.where(M > 0, M, np.nan))
    finite = logs[np.isfinite(logs)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (-1, 1)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.8), layout="constrained")
    for ax, q in zip(axes, range(3)):
        im = ax.imshow(logs[q], cmap="viridis", vmin=vmin, vmax=vmax)
        for i in range(G):
            for j in range(G):
                v = M[q, i, j]
                text = "0" if v == 0 else f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e")
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if not np.isfinite(logs[q, i, j]) or logs[q, i, j] < (vmin + vmax) / 2 else "black",
                )
        ax.set_xticks(range(G), res.groups)
        ax.set_yticks(range(G), res.groups)
        ax.set_title(f"{KINDS[q]}: $\\|H[g, g']\\|_F$ (log10 colour)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="log10 Frobenius norm")
    c = res.config
    fig.suptitle(
        f"pre-LN block at initialisation: d_model {c.d_model}, d_mlp {c.d_mlp}, batch {c.batch}, mean of {c.repeats} seeds (0: H_f <= 1e-10 of H, round-off)",
        fontsize=9,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_block_growth(path: str | Path, out: str | Path | None = None) -> Path:
    """Diagonal group blocks of H, H_o, H_f against sigma (log-log, mean over repeats), one curve per group."""
    res = load_block_curvature(path)
    out = Path(path).with_name(Path(path).stem + "_growth.png") if out is None else Path(out)
    plt = _pyplot()
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(res.diagonal(), axis=1)
    mean[:, 2] = np.where(mean[:, 2] <= ZERO_RTOL * mean[:, 0], np.nan, mean[:, 2])  # vanishing H_f: not drawn
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), sharey=True)
    colors = plt.cm.tab10(np.arange(len(res.groups)) % 10)
    for q, ax in enumerate(axes):
        for g, group in enumerate(res.groups):
            v = mean[:, q, g]
            if np.any(v > 0):
                ax.plot(res.sigmas, np.where(v > 0, v, np.nan), marker="o", ms=3, color=colors[g], label=group)
        if res.config.layer_norm:  # derived large-sigma slopes (large_sigma_exponent), anchored at the last point
            big = res.sigmas >= 1
            top = np.nanmax(mean[-1, q])
            for p, style in ((-1.0, ":"), (-2.0, "--")):
                ax.plot(
                    res.sigmas[big],
                    2 * top * (res.sigmas[big] / res.sigmas[-1]) ** p,
                    style,
                    color="k",
                    lw=1,
                    label=f"$\\sigma^{{{p:g}}}$ (derived)",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("embedding std $\\sigma$")
        ax.set_title(f"diagonal blocks of {KINDS[q]}")
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("$\\|H[g, g]\\|_F$")
    fig.suptitle(res.config.name().replace("_", " "), fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
