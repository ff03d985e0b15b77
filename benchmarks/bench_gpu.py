"""The GPU backend (device="cuda", issue 19): every GPU check and the speed against torch on
the same GPU, printed as one table.

Checks (float64, against the CPU solver, which runs the same scheme):
    simulate through the one-block-per-system kernels (Euler, RK4; SA, USA) and the tiled
    kernels, to 1e-12; a phase diagram's statistics, counts equal.
Speed:
    the authors' full default phase diagram (d = 2, n = 32, 2048 systems, 90 betas in
    [0.1, 9], t_max = 30, dt = 0.1, 200 checkpoints, SA) with device="cuda" against a plain
    batched torch loop of the same Euler scheme and statistics on the same GPU (targets:
    under 1 s, at least 20x); one Euler step of n = 16384 tokens, d = 512 (tiled kernels)
    against the time torch takes for the same matrix products (x A^T, x V^T, x (A x)^T and
    W (V x)) on that GPU. Each time is the minimum over --repeats runs, after a warm-up.

    python benchmarks/bench_gpu.py [--betas 90] [--repeats 3]

Without a GPU it says so and exits with status 0 (NUMBA_ENABLE_CUDASIM=1 counts as none: the
simulator is for tests, not timings).
"""

import argparse
import time
import warnings

import numpy as np

import particles
from particles import ClusteringEnsemble, beta_generator
from particles.cuda import cuda_unavailable_reason, simulator_enabled

ROWS = []


def row(name, ours, baseline=None, target="", ok=None, unit="s"):
    ratio = "" if baseline is None or not ours else f"{baseline / ours:.2f}x"
    fmt = (lambda v: f"{v:.3g} {unit}") if unit else (lambda v: f"{v:.2e}")
    ROWS.append(
        (
            name,
            "" if ours is None else fmt(ours),
            "" if baseline is None else fmt(baseline),
            ratio,
            target,
            "" if ok is None else ("pass" if ok else "FAIL"),
        )
    )


def print_table():
    head = ("check", "cuda", "torch / cpu", "ratio", "target", "")
    widths = [max(len(str(r[k])) for r in ROWS + [head]) for k in range(len(head))]
    for r in [head] + ROWS:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def best_time(fn, repeats, sync):
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def _fail(t, step):
    raise RuntimeError(f"non-finite state at t = {t}, step {step}")


def checks(smoke=False):
    """The GPU kernels against the CPU solver, small sizes (tiny with ``smoke``)."""
    from particles._simulate import _interaction
    from particles.cuda import run

    rng = np.random.default_rng(0)
    n, batch = (5, 2) if smoke else (24, 8)
    x0 = particles.sample_sphere(n, 3, batch=batch, seed=1)
    Q, K, V = rng.standard_normal((3, 3, 3)) / 2
    for method in ("euler", "rk4"):
        for dynamics in ("SA", "USA"):
            kw = dict(beta=1.0, t_max=0.55, dt=0.05, save_every=4, Q=Q, K=K, V=V, method=method, dynamics=dynamics)
            kw["t_max"] = 0.1 if smoke else kw["t_max"]
            err = np.abs(particles.simulate(x0, device="cuda", **kw).xs - particles.simulate(x0, **kw).xs).max()
            row(f"simulate {method} {dynamics}: max |gpu - cpu|", err, target="<= 1e-12", ok=err <= 1e-12, unit="")
    n, d, tile = (6, 5, 4) if smoke else (100, 40, 16)
    x0 = particles.sample_sphere(n, d, batch=2, seed=2)
    A = rng.standard_normal((d, d)) / 8
    for method in ("euler", "rk4"):
        kw = dict(beta=2.0, t_max=0.1 if smoke else 0.3, dt=0.1, K=A, method=method)
        cpu = particles.simulate(x0, **kw)
        fail = lambda t, step: (_ for _ in ()).throw(RuntimeError(f"non-finite at step {step}"))  # noqa: E731
        tiled = np.stack(
            list(x for _, x in run(x0, _interaction(cpu.params), None, cpu.params, on_failure=fail, tile=tile))
        )
        err = np.abs(tiled - cpu.xs).max()
        row(f"tiled {method} n={n} d={d}: max |gpu - cpu|", err, target="<= 1e-12", ok=err <= 1e-12, unit="")
    settings = dict(batch=64, t_max=5.0, checkpoints=20)
    betas = [0.5, 2.0, 6.0]
    gpu, cpu = particles.phase_diagram(betas, device="cuda", **settings), particles.phase_diagram(betas, **settings)
    same = np.array_equal(gpu.clusters, cpu.clusters) and np.abs(gpu.density - cpu.density).max() <= 1e-12
    row(f"phase diagram 3 betas x {settings['batch']}: statistics gpu == cpu", None, target="equal", ok=same)


def torch_phase_diagram(betas, ensemble, device):
    """The same Euler scheme and statistics as a plain batched torch loop (identity Q, K, V):
    all systems of all betas in one batch, logits and weights as (systems, n, n) tensors,
    clusters by minimum-label propagation."""
    import torch

    n, d, batch = ensemble.n, ensemble.d, ensemble.batch
    starts = []
    for beta in betas:
        x0 = beta_generator(ensemble.seed, beta).standard_normal((batch, n, d))
        starts.append(x0 / np.linalg.norm(x0, axis=-1, keepdims=True))
    x = torch.from_numpy(np.concatenate(starts)).to(device)
    beta = torch.tensor(np.repeat(betas, batch), device=device)[:, None, None]
    h = ensemble.dt
    steps = np.ceil(ensemble.checkpoint_times() / h - 1e-9).astype(np.int64)
    close = torch.zeros((len(steps), len(x)), dtype=torch.int64, device=device)
    clusters = torch.zeros_like(close)
    index = torch.arange(n, device=device).expand(len(x), n)
    big = torch.full_like(index, n)

    def statistics(c):
        gram = x @ x.transpose(1, 2)
        close[c] = (gram > ensemble.density_threshold).sum((1, 2)) - (
            gram.diagonal(dim1=1, dim2=2) > ensemble.density_threshold
        ).sum(1)
        links = gram > 1.0 - ensemble.cluster_tol
        labels = index.clone()
        while True:
            new = torch.where(links, labels[:, None, :], big[:, None, :]).min(-1).values
            if torch.equal(new, labels):
                break
            labels = new
        clusters[c] = (labels == index).sum(1)

    c = 0
    for s in range(steps[-1] + 1):
        if s > 0:
            w = torch.softmax(beta * (x @ x.transpose(1, 2)), dim=-1)
            y = x + h * (w @ x)
            x = y / y.norm(dim=-1, keepdim=True)
        while c < len(steps) and steps[c] == s:
            statistics(c)
            c += 1
    pairs = n * (n - 1)
    close = close.cpu().numpy().reshape(len(steps), len(betas), batch)
    clusters = clusters.cpu().numpy().reshape(len(steps), len(betas), batch)
    return close.sum(2).T / (batch * pairs), np.median(clusters, axis=2).T


def speed_phase_diagram(n_betas, repeats, torch_device="cuda", **settings):
    """``settings``: ClusteringEnsemble fields replacing the authors' defaults (smoke runs)."""
    import torch

    betas = tuple(np.linspace(0.1, 9.0, n_betas))
    ensemble = ClusteringEnsemble(**settings)
    particles.phase_diagram(betas[:2], device="cuda", batch=2, checkpoints=3, t_max=0.2)  # compile / load caches
    result = None

    def ours():
        nonlocal result
        result = particles.phase_diagram(betas, device="cuda", **settings)

    t_ours = best_time(ours, repeats, lambda: None)
    reference = None

    def baseline():
        nonlocal reference
        reference = torch_phase_diagram(betas, ensemble, torch_device)

    sync = torch.cuda.synchronize if torch_device == "cuda" else lambda: None
    t_torch = best_time(baseline, max(1, repeats - 1), sync)
    steps = round(ensemble.t_max / ensemble.dt)
    row(
        f"{'full default ' if not settings else ''}phase diagram ({n_betas} betas x {ensemble.batch} x {steps} steps)",
        t_ours,
        t_torch,
        target="< 1 s, >= 20x",
        ok=t_ours < 1.0 and t_torch / t_ours >= 20,
    )
    same = np.abs(result.density - reference[0]).max() <= 1e-12 and np.array_equal(result.clusters, reference[1])
    row("  its statistics == the torch loop's", None, target="equal", ok=same)


def speed_large_step(repeats, n=16384, d=512, torch_device="cuda"):
    import torch
    from numba import cuda

    from particles.cuda._tiled import TiledStepper

    rng = np.random.default_rng(3)
    x = particles.sample_sphere(n, d, batch=1, seed=3)
    A = rng.standard_normal((d, d)) / np.sqrt(d)
    V = rng.standard_normal((d, d)) / np.sqrt(d)
    x_dev = cuda.to_device(x)
    BA, V_dev = cuda.to_device((1.0 * A)[None].copy()), cuda.to_device(V[None].copy())
    completed = cuda.to_device(np.ones(1, np.int64))
    stepper = TiledStepper(x_dev, BA, V_dev, False, "euler")
    stepper.advance(x_dev, 0.01, 1, completed)  # compile / load caches
    t_ours = best_time(lambda: stepper.advance(x_dev, 0.01, 1, completed), repeats, cuda.synchronize)
    xt, At, Vt = (torch.from_numpy(M).to(torch_device) for M in (x[0], A, V))

    def products():
        ax = xt @ At.T
        vx = xt @ Vt.T
        logits = xt @ ax.T
        return logits @ vx

    products()
    t_gemm = best_time(products, repeats, torch.cuda.synchronize if torch_device == "cuda" else lambda: None)
    row(f"one Euler step n={n} d={d} float64 (tiled) vs torch GEMMs", t_ours, t_gemm, target="report")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, torch on the CPU, the simulator allowed: checks that the script runs, times nothing real",
    )
    args = parser.parse_args()
    if args.smoke:
        return run_all(
            lambda: checks(smoke=True),
            lambda: speed_phase_diagram(2, 1, "cpu", n=5, batch=2, t_max=0.4, checkpoints=3),
            lambda: speed_large_step(1, n=9, d=5, torch_device="cpu"),
        )
    reason = "NUMBA_ENABLE_CUDASIM=1 is set (the simulator is not timed)" if simulator_enabled() else None
    reason = reason or cuda_unavailable_reason()
    if reason is None:
        import torch

        if not torch.cuda.is_available():
            reason = "torch has no CUDA device (the baselines run in torch on the same GPU)"
    if reason is not None:
        print(f"bench_gpu: no GPU available: {reason}. Nothing measured; run it on a machine with an NVIDIA GPU.")
        return 0
    import torch

    print(f"device: {torch.cuda.get_device_name()}")
    return run_all(
        checks, lambda: speed_phase_diagram(args.betas, args.repeats), lambda: speed_large_step(args.repeats)
    )


def run_all(*parts):
    """Run the parts, print the table; status 1 if any row failed."""
    warnings.simplefilter("ignore", particles.StepSizeWarning)
    for part in parts:
        try:
            part()
        except Exception as error:  # one failing part must not hide the others' rows
            row(f"raised {type(error).__name__}: {error}"[:110], None, ok=False)
    print_table()
    return 0 if all(r[-1] != "FAIL" for r in ROWS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
