"""Figures of the Hessian experiments, drawn from their HDF5 files (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .block_norms import KINDS

PANEL_KINDS = ("H_o", "H_f", "H")  # column order of the paper's growth figures
LABELS = {"H": "H", "H_o": "H_o (outer product)", "H_f": "H_f (functional)"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_growth(path: str | Path, out: str | Path | None = None) -> Path:
    """Growth figure: rows = blocks (V above Q, or W), columns = H_o, H_f, H; mean +- sem over repeats per layer.

    Dashed guide lines ``c sigma^p`` with the theory exponent p (``growth.theory_exponent``), anchored at the
    smallest sigma of the first layer that has one; under pre-LN (no theory exponent) p is the whole-grid
    least-squares slope rounded to 0.1, as in the authors' notebook.

    Args:
        path: growth HDF5 file.
        out: PNG path (default: next to the data, same stem).

    Returns:
        The PNG path.
    """
    from .growth import fit_slope, theory_exponent
    from .results import load_growth

    res = load_growth(path)
    cfg = res.config
    out = Path(path).with_suffix(".png") if out is None else Path(out)
    plt = _pyplot()
    blocks = list(cfg.blocks)[::-1]  # V on top, as in the paper
    fig, axes = plt.subplots(len(blocks), 3, figsize=(13, 3.6 * len(blocks)), squeeze=False)
    mean, sem = res.mean(), res.sem()
    s = res.sigmas
    log_x = cfg.grid.startswith("log")
    colors = plt.cm.viridis(np.linspace(0, 0.85, cfg.n_layers))
    for i, block in enumerate(blocks):
        b = cfg.blocks.index(block)
        for j, kind in enumerate(PANEL_KINDS):
            ax = axes[i, j]
            q = KINDS.index(kind)
            guide_done = set()
            for l in range(cfg.n_layers):
                m, e = mean[:, l, b, q], sem[:, l, b, q]
                if not np.any(np.isfinite(m) & (m > 0)):
                    continue
                ax.errorbar(s, m, yerr=e, color=colors[l], marker="o", ms=3, lw=1.2, capsize=2, label=f"layer {l}")
                p = theory_exponent(cfg, l, block, kind)
                ok = np.isfinite(m) & (m > 0)
                fitted = False
                if p is None and cfg.layer_norm and ok.sum() >= 3:
                    # pre-LN has no theory exponent: the authors draw the whole-grid regression slope, rounded to 0.1
                    p, fitted = round(fit_slope(s, m).slope, 1), True
                if p is not None and p not in guide_done:
                    k0 = int(np.argmax(ok))
                    for offset in (1.0, 1e-2, 1e2):
                        ax.plot(s, offset * m[k0] * (s / s[k0]) ** p, "--", color="gray", lw=0.8, alpha=0.7)
                    ax.plot(
                        [], [], "--", color="gray", label=f"$\\sigma^{{{p:g}}}$ ({'fitted' if fitted else 'theory'})"
                    )
                    guide_done.add(p)
            ax.set_yscale("log")
            if log_x:
                ax.set_xscale("log")
            finite = mean[:, :, b, q][np.isfinite(mean[:, :, b, q]) & (mean[:, :, b, q] > 0)]
            if finite.size:
                ax.set_ylim(finite.min() / 10, finite.max() * 10)
            ax.set_title(f"W_{block}: {LABELS[kind]}" if block != "W" else f"W: {LABELS[kind]}")
            ax.set_xlabel("embedding std $\\sigma$")
            ax.set_ylabel("$\\|\\cdot\\|_F$")
            if ax.has_data():
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "identically 0", ha="center", va="center", transform=ax.transAxes)
    title = cfg.name().replace("_", " ")
    fig.suptitle(f"{title}\n(mean $\\pm$ s.e.m. over {cfg.repeats} repeats)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_heatmap(path: str | Path, out: str | Path | None = None) -> Path:
    """Heatmap of log10(|H| + 1e-6) of the whole model and of the attention weights, with block boundaries.

    Smoothed for display with a 5x5 box filter (the authors' cv.GaussianBlur with sigma 100 is nearly a box).

    Args:
        path: heterogeneity HDF5 file.
        out: PNG path (default: ``<stem>_heatmap.png`` next to the data).
    """
    from scipy.ndimage import uniform_filter

    from .results import load_heterogeneity

    res = load_heterogeneity(path)
    out = Path(path).with_name(Path(path).stem + "_heatmap.png") if out is None else Path(out)
    plt = _pyplot()
    H = res["hessian"]
    names, bounds = res["names"], res["boundaries"]
    attn = [i for i, n in enumerate(names) if ".attn.W_" in n]
    lo, hi = bounds[attn[0]], bounds[attn[-1] + 1]
    panels = [
        (H, names, bounds, "whole model"),
        (H[lo:hi, lo:hi], [names[i] for i in attn], bounds[attn[0] : attn[-1] + 2] - lo, "W_Q, W_K, W_V, W_O"),
    ]
    imgs = [uniform_filter(np.log10(np.abs(M) + 1e-6), size=5, mode="nearest") for M, *_ in panels]
    vmin, vmax = min(i.min() for i in imgs), max(i.max() for i in imgs)
    fig, axes = plt.subplots(1, 2, figsize=(15, 7))
    for ax, img, (_, nm, bd, title) in zip(axes, imgs, panels):
        im = ax.imshow(img, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        for x in bd[1:-1]:
            ax.axhline(x - 0.5, color="white", ls="--", lw=0.6)
            ax.axvline(x - 0.5, color="white", ls="--", lw=0.6)
        centres = (np.asarray(bd[:-1]) + np.asarray(bd[1:])) / 2
        short = [n.split(".")[-1] for n in nm]
        ax.set_xticks(centres, short, rotation=90, fontsize=7)
        ax.set_yticks(centres, short, fontsize=7)
        ax.set_title(f"log10 |H|: {title}")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _log_bins(values: np.ndarray, num: int) -> np.ndarray:
    v = np.abs(values[np.isfinite(values)])
    lo = max(1e-8, v[v > 0].min()) if np.any(v > 0) else 1e-8
    return np.logspace(np.log10(lo), np.log10(max(v.max(), lo * 10)), num + 1)


def plot_histograms(path: str | Path, out: str | Path | None = None) -> Path:
    """Histograms of |entries| of the W_Q and W_V blocks of H: softmax (left) and linear over softmax (right).

    Args:
        path: heterogeneity HDF5 file (with ``blocks/softmax`` and ``blocks/linear``).
        out: PNG path (default: ``<stem>_histograms.png``).
    """
    from .results import load_heterogeneity

    res = load_heterogeneity(path)
    out = Path(path).with_name(Path(path).stem + "_histograms.png") if out is None else Path(out)
    plt = _pyplot()
    soft, lin = res["blocks"]["softmax"], res["blocks"]["linear"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7))
    for i, (block, bins) in enumerate((("V", 50), ("Q", 30))):
        ax = axes[i, 0]
        vals = np.abs(soft[block]).ravel()
        ax.hist(vals, bins=_log_bins(vals, bins), color="C0")
        ax.set_title(f"softmax attention: |H(W_{block}, W_{block})| entries, median {np.median(vals):.1e}")
        ax = axes[i, 1]
        lv = np.abs(lin[block]).ravel()
        edges = _log_bins(np.concatenate([vals, lv]), 50)
        ax.hist(vals, bins=edges, color="C0", alpha=0.35, label="softmax")
        ax.hist(lv, bins=edges, color="C3", alpha=0.9, label="linear attention")
        ax.set_title(f"linear attention: |H(W_{block}, W_{block})|, median {np.median(lv):.1e}")
        ax.legend(fontsize=8)
        for ax in axes[i]:
            ax.set_xscale("log")
            ax.set_xlabel("|entry|")
            ax.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
