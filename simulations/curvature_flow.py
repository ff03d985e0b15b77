"""Curvature of the attention layer along its own particle flow: Q/K curvature collapses as tokens cluster.

Simulates self-attention dynamics (or reads a stored run), computes at every frame the exact Hessian of the
flow's layer F = A(X) X V^T with respect to (Q, K, V) (``hessian.along_trajectory``), stores it in the run's
HDF5 file, then draws from that file, next to it:

* against log t: cluster count, eigenvalues of Sigma_xx = X^T X / n, and the Frobenius norms of the Q, K, V
  blocks of H, H_o and H_f (median over systems, band: min-max);
* block norms against lambda_2(Sigma_xx), the largest non-leading eigenvalue, with the fitted power law and
  the exponents of the Hessian note (``hessian.flow.CLUSTER_EXPONENTS``); the fits go to ``*_slopes.txt``.

    python -m simulations.curvature_flow                         # n 32, d 8, 16 systems, SA, beta 1
    python -m simulations.curvature_flow --loss energy
    python -m simulations.curvature_flow --from run.h5 --every 5  # a stored run (particles.simulate(store=))

Outputs: results/curvature_flow/<name>.h5 (run + observables ``curvature.<loss>.*``), <name>_<loss>.png,
<name>_<loss>_slopes.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

import particles
from hessian.flow import CLUSTER_EXPONENTS, LOSSES, along_trajectory, cluster_power_law, read_curvature


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--from", dest="source", type=Path, default=None, help="stored run to analyse instead of simulating")
    p.add_argument("--n", type=int, default=32, help="tokens")
    p.add_argument("--d", type=int, default=8, help="dimension")
    p.add_argument("--systems", type=int, default=16)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA")
    p.add_argument("--t-max", type=float, default=30.0)
    p.add_argument("--dt", type=float, default=0.1)
    p.add_argument("--method", choices=("euler", "rk4"), default="euler")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial tokens (system s uses seed + s)")
    p.add_argument("--loss", choices=LOSSES, default="target")
    p.add_argument("--every", type=int, default=1, help="use every k-th frame")
    p.add_argument("--dense", action="store_true", help="also store the dense H and H_o")
    p.add_argument("--out", type=Path, default=Path("results/curvature_flow"))
    p.add_argument("--overwrite", action="store_true", help="recompute stored curvature")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def run_file(args: argparse.Namespace) -> Path:
    """The HDF5 file of the run: --from, or a simulation named by a hash of its settings (reused if complete)."""
    if args.source is not None:
        return args.source
    config = dict(
        n=args.n,
        d=args.d,
        systems=args.systems,
        beta=args.beta,
        dynamics=args.dynamics,
        t_max=args.t_max,
        dt=args.dt,
        method=args.method,
        seed=args.seed,
    )
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    path = args.out / f"{args.dynamics}_n{args.n}_d{args.d}_beta{args.beta:g}_{digest}.h5"
    args.out.mkdir(parents=True, exist_ok=True)
    if path.exists() and particles.io.info(path)["complete"]:
        return path
    x0 = np.stack([particles.sample_sphere(args.n, args.d, seed=args.seed + s) for s in range(args.systems)])
    particles.simulate(
        x0,
        beta=args.beta,
        t_max=args.t_max,
        dt=args.dt,
        dynamics=args.dynamics,
        method=args.method,
        store=particles.io.RunFile(path, resume=path.exists()),
        progress=not args.no_progress,
    )
    return path


def main(argv=None) -> Path:
    args = parse_args(argv)
    path = run_file(args)
    stored = f"curvature.{args.loss}.norms" in particles.io.info(path)["observables"]
    if args.overwrite or not stored:
        along_trajectory(
            path, loss=args.loss, every=args.every, dense=args.dense, overwrite=stored, progress=not args.no_progress
        )
    curv = read_curvature(path, args.loss)
    rows = cluster_power_law(curv)
    stem = path.with_name(f"{path.stem}_{args.loss}")
    png = plot(curv, rows, stem.with_suffix(".png"))
    table = format_slopes(curv, rows)
    stem.with_name(stem.name + "_slopes.txt").write_text(table)
    print(table)
    print(f"saved {path}, {png} and {stem.name}_slopes.txt")
    return path


def format_slopes(curv, rows) -> str:
    s = curv.settings
    lines = [
        f"loss {curv.loss} ({s['loss_definition']}); {s['dynamics']}, beta = {s['beta']:g}, n = {s['n']}, "
        f"d = {s['d']}, {s['systems']} systems, {len(curv.frames)} frames",
        "block norm ~ lambda_2(Sigma_xx)^p at one cluster (fit over 1e-26 < lambda_2 < 1e-4, pooled systems):",
        f"{'kind':5s} {'block':5s} {'fitted p':>9s} {'theory':>7s} {'points':>7s}",
    ]
    lines += [f"{r['kind']:5s} {r['block']:5s} {r['slope']:9.3f} {r['theory']:7.2f} {r['points']:7d}" for r in rows]
    counts = np.atleast_2d(curv.cluster_count.T).T
    med = lambda kind, b: np.median(np.atleast_2d(curv.block_norm(kind, b).T).T, axis=1)  # noqa: E731
    lines.append("\nmedian over systems:  t, clusters, |H_o(Q,Q)|, |H_o(K,K)|, |H_o(V,V)|, |H(Q,Q)|, lambda_2")
    lam2 = np.median(np.atleast_2d(curv.sigma_eigenvalues[..., 1].T).T, axis=1)
    columns = [med("H_o", "Q"), med("H_o", "K"), med("H_o", "V"), med("H", "Q"), lam2]
    for k in np.unique(np.geomspace(1, len(curv.ts) - 1, 12).astype(int)):
        lines.append(
            f"  t = {curv.ts[k]:7.2f}  {np.median(counts[k]):5.1f}  " + "  ".join(f"{c[k]:.3e}" for c in columns)
        )
    return "\n".join(lines) + "\n"


def plot(curv, rows, png: Path) -> Path:
    """Figure from the stored curvature (read_curvature)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = curv.ts > 0  # log t
    t = curv.ts[keep]

    def per_system(a):  # (F, [B,] ...) -> (F, B, ...)
        a = np.asarray(a)[keep]
        return a if curv.norms.ndim == 5 else a[:, None]

    fig, axes = plt.subplots(2, 3, figsize=(14, 8), constrained_layout=True)
    ax = axes[0, 0]
    counts = per_system(curv.cluster_count)
    ax.plot(t, np.median(counts, axis=1), "k-", label="median")
    ax.fill_between(t, counts.min(axis=1), counts.max(axis=1), color="0.8", label="min-max over systems")
    ax.set(xscale="log", xlabel="t", ylabel="clusters (<x_i, x_j> > 1 - 1e-3)", title="cluster count")
    ax.legend()
    ax = axes[0, 1]
    lam = per_system(curv.sigma_eigenvalues)
    for k in range(lam.shape[-1]):
        ax.plot(t, np.median(lam[..., k], axis=1), label=f"lambda_{k + 1}" if k < 3 else None)
    ax.set(xscale="log", yscale="log", xlabel="t", ylabel="eigenvalue", title="Sigma_xx = X^T X / n (median)")
    ax.legend(fontsize=8)
    colors = {"Q": "tab:blue", "K": "tab:orange", "V": "tab:green"}
    for j, kind in enumerate(("H", "H_o", "H_f")):
        ax = axes[0, 2] if j == 0 else axes[1, j - 1]
        for b in "QKV":
            norm = per_system(curv.block_norm(kind, b))
            if not np.any(norm > 0):
                continue
            ax.plot(t, np.median(norm, axis=1), color=colors[b], label=f"{kind}({b},{b})")
            ax.fill_between(t, norm.min(axis=1), norm.max(axis=1), color=colors[b], alpha=0.2, lw=0)
        ax.set(
            xscale="log", yscale="log", xlabel="t", ylabel="Frobenius norm", title=f"{kind} blocks, loss {curv.loss}"
        )
        ax.set_ylim(bottom=max(1e-40, ax.get_ylim()[0]))
        ax.legend(fontsize=8)
    ax = axes[1, 2]
    lam2 = np.asarray(curv.sigma_eigenvalues[..., 1]).reshape(-1)
    one = np.asarray(curv.cluster_count).reshape(-1) == 1
    slopes = {(r["kind"], r["block"]): r["slope"] for r in rows}
    for kind, b, style in (("H_o", "Q", "o"), ("H_f", "Q", "s"), ("H_o", "K", "^"), ("H_o", "V", "d")):
        norm = np.asarray(curv.block_norm(kind, b)).reshape(-1)
        ok = one & (lam2 > 1e-26) & (norm > 0)
        p, theory = slopes[(kind, b + b)], CLUSTER_EXPONENTS[kind][(b, b)]
        ax.loglog(
            lam2[ok],
            norm[ok],
            style,
            ms=3,
            alpha=0.5,
            color=colors[b] if kind == "H_o" else "tab:red",
            label=f"{kind}({b},{b}): fit p = {p:.2f}, note {theory:g}",
        )
        if ok.sum() >= 3 and theory > 0:
            x = np.geomspace(lam2[ok].min(), lam2[ok].max(), 10)
            c = np.median(norm[ok] / lam2[ok] ** theory)
            ax.loglog(x, c * x**theory, "k--", lw=0.8)
    ax.set(
        xlabel="lambda_2(Sigma_xx) (largest non-leading)", ylabel="block norm", title="one cluster: norm ~ lambda_2^p"
    )
    ax.legend(fontsize=7)
    fig.suptitle(
        f"curvature along the flow: {curv.settings['dynamics']}, beta = {curv.settings['beta']:g}, "
        f"n = {curv.settings['n']}, d = {curv.settings['d']}, {curv.settings['systems']} systems"
    )
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


if __name__ == "__main__":
    main()
