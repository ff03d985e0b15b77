r"""Curvature of the attention layer of a particle flow, frame by frame: the bridge from ``particles`` to ``hessian``.

The only module of ``hessian`` that uses ``particles`` (through its public API: ``particles.Trajectory``,
``particles.load``, ``particles.count_clusters`` and ``particles.io``). At every chosen frame X(t) of a
trajectory it evaluates the exact Q/K/V Hessian of the flow's own attention layer, ``F = A(X) X V^T`` with the
run's beta and dynamics, with the kernels of :mod:`hessian.flow_blocks` (the layer, the parameter order
and the three losses are defined there), vmapped over all (frame, system) pairs of a chunk.

Storage: ``along_trajectory(path)`` writes one H5MD observable per field, ``/observables/curvature.<loss>.<field>``
(``particles.io.write_observable`` takes no nested names), with the settings as attributes; ``read_curvature``
reads them back. Frames that were not computed (``every`` > 1) hold NaN (-1 for cluster counts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import uuid
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor
from torch.func import vmap
from tqdm.auto import tqdm

import particles

from .checks import check_int
from .flow_blocks import BLOCKS, assemble_batched, block_summary
from .kinds import KINDS, check_kind

__all__ = [
    "along_trajectory",
    "read_curvature",
    "FlowCurvature",
    "random_target",
    "LOSSES",
]

LOSSES = ("target", "next", "energy")
#: refuse P = 3 d^2 above this (dense (P, P) matrices per configuration); 4096 as in ``hessian.dense``
MAX_PARAMS = 4096
#: refuse to store dense matrices above this many bytes (both H and H_o over all frames and systems)
MAX_DENSE_BYTES = 1 << 30
# (P, P) float64 matrices alive per configuration in the kernel (blocks, H_o, H_f, H, eigen work space)
_MATRICES_PER_CONFIG = 8
_CHUNK_BYTES = 1 << 27
_PREFIX = "curvature"


def random_target(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The fixed target of the "target" loss: i.i.d. N(0, 1) of ``shape`` ([batch,] n, d), float64."""
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------- driver: frames, chunks, HDF5


@dataclasses.dataclass(frozen=True, eq=False)
class FlowCurvature:
    """Curvature of the flow's attention layer at the chosen frames of a trajectory.

    Shapes: F chosen frames, B systems (no B axis for an unbatched trajectory), P = 3 d^2.

    Attributes:
        ts: (F,) times of the frames.
        frames: (F,) int64 indices of the frames in the trajectory.
        norms: (F, [B,] 3, 3, 3) Frobenius norms: ``norms[..., k, r, c]`` is block (r, c) of
            kind k, kinds ``KINDS = ("H", "H_o", "H_f")``, blocks ``BLOCKS = ("Q", "K", "V")``.
        trace: (F, [B,] 3) traces of H, H_o, H_f.
        top_eigenvalue: (F, [B,]) largest eigenvalue of H (exact: LAPACK ``dsyevr`` for that one eigenvalue),
            or None.
        H, H_o: (F, [B,] P, P) dense matrices (``dense=True``) or None; H_f = H - H_o.
        sigma_eigenvalues: (F, [B,] d) eigenvalues of Sigma_xx = X^T X / n, decreasing (squared singular
            values of X / sqrt(n): accurate far below the 1e-16 floor of ``particles.token_covariance``).
        cluster_count: (F, [B,]) single-linkage clusters at <x_i, x_j> > 1 - 1e-3.
        loss: "target", "next" or "energy".
        settings: dict of the settings (the HDF5 attributes).
    """

    ts: np.ndarray
    frames: np.ndarray
    norms: np.ndarray
    trace: np.ndarray
    top_eigenvalue: Any
    H: Any
    H_o: Any
    sigma_eigenvalues: np.ndarray
    cluster_count: np.ndarray
    loss: str
    settings: dict

    def block_norm(self, kind: str, row: str, col: str | None = None) -> np.ndarray:
        """(F, [B,]) Frobenius norm of block (row, col) (default (row, row)) of ``kind`` in KINDS."""
        check_kind("kind", kind)
        for name, value in (("row", row), ("col", row if col is None else col)):
            if value not in BLOCKS:
                raise ValueError(f"{name} must be one of {BLOCKS}, got {value!r}")
        col = row if col is None else col
        return self.norms[..., KINDS.index(kind), BLOCKS.index(row), BLOCKS.index(col)]


def along_trajectory(
    traj,
    *,
    loss: str = "target",
    every: int = 1,
    dense: bool = False,
    eigenvalues: bool = True,
    target_seed: int = 0,
    write: bool | None = None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    progress: bool = False,
    threads: int | None = 1,
    max_params: int = MAX_PARAMS,
    max_dense_bytes: int = MAX_DENSE_BYTES,
) -> FlowCurvature:
    r"""Hessian of the flow's own attention layer w.r.t. (Q, K, V) at every ``every``-th frame.

    At frame X(t) (each system of a batch with its own Q, K, V) the differentiated function is
    ``l(Q, K, V) = loss(F)``, ``F = A(X) X V^T`` the unprojected velocity of the run's dynamics (SA or USA)
    with the run's beta (see the module docstring for the exact definition and the three losses). Exact
    closed forms, vmapped over all (frame, system) pairs of a chunk.

    Main arguments:
        traj: a ``particles.Trajectory`` or the path of a stored run (``particles.load``).
        loss: "target" (MSE to a fixed N(0, 1) target), "next" (MSE of one step to the next frame) or
            "energy" (interaction energy of the output).
        every: use frames 0, every, 2 every, ... and the last one ("next": all but the last frame).

    Other arguments:
        dense: also return (and store) the dense H and H_o per frame and system; refused above
            ``max_dense_bytes``.
        eigenvalues: compute the top eigenvalue of H (exact, LAPACK ``dsyevr`` restricted to the largest
            eigenvalue, single-threaded through threadpoolctl when installed, else ``torch.linalg.eigvalsh``:
            the same number to rounding). About half of the run time at d = 8.
        target_seed: seed of the fixed target of "target" (``random_target``).
        write: store the result in the trajectory file under ``/observables/curvature.<loss>.<field>``; None
            (default) writes when ``traj`` is a path.
        overwrite: replace stored results of the same loss.
        chunk_size: configurations (frames x systems) per vmapped call; None: ~128 MiB of work space.
        progress: show a progress bar counting frames (all systems of a frame at once).
        threads: torch intra-op threads during the call (restored afterwards); None keeps the current
            setting. 1 by default: the matrices of one configuration are small, and on shared cores threaded
            LAPACK (eigvalsh) was measured 10-300x slower than one thread. Results do not depend on it.
        max_params: refuse P = 3 d^2 above this.
        max_dense_bytes: refuse ``dense`` output above this many bytes.

    Returns:
        ``FlowCurvature``.

    Raises:
        TypeError, ValueError: bad arguments, naming the argument.
        FileExistsError: results of this loss are stored and ``overwrite`` is False.
        RuntimeError: a non-finite curvature (USA weights overflow), with the frame and time.

    Example:
        >>> traj = particles.simulate(particles.sample_sphere(16, 3, seed=0), beta=1.0, t_max=10.0, dt=0.1)
        >>> curv = along_trajectory(traj)
        >>> curv.block_norm("H_o", "Q").shape
        (101,)
    """
    path = None
    if isinstance(traj, (str, os.PathLike)):
        path = traj
        traj = particles.load(traj)
    elif not isinstance(traj, particles.Trajectory):
        raise TypeError(f"traj must be a particles.Trajectory or the path of a stored run, got {type(traj).__name__}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    every = _check_int("every", every, 1)
    target_seed = _check_int("target_seed", target_seed, 0)
    max_params = _check_int("max_params", max_params, 1)
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    max_dense_bytes = _check_int("max_dense_bytes", max_dense_bytes, 0)
    for name, value in (
        ("dense", dense),
        ("eigenvalues", eigenvalues),
        ("overwrite", overwrite),
        ("progress", progress),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    if write is None:
        write = path is not None
    elif not isinstance(write, bool):
        raise TypeError(f"write must be a bool or None, got {type(write).__name__} {write!r}")
    if write and path is None:
        path = getattr(traj.xs, "path", None)
        if path is None:
            raise ValueError(
                "write=True needs a stored run: pass its path (or a Trajectory from particles.load), "
                "got an in-memory Trajectory; save it first with particles.io.save"
            )

    params = traj.params
    shape = tuple(traj.xs.shape)
    batched = len(shape) == 4
    B = shape[1] if batched else 1
    n, d = shape[-2:]
    P = 3 * d * d
    if P > max_params:
        raise ValueError(
            f"the (Q, K, V) Hessian has P = 3 d^2 = {P} parameters for d = {d}, above max_params = "
            f"{max_params}; raise max_params (each configuration needs several {P}x{P} matrices)"
        )
    m = len(traj.ts)
    frames = np.unique(np.r_[np.arange(0, m, every), m - 1])
    if loss == "next":
        if m < 2:
            raise ValueError(f"loss='next' needs at least 2 frames, the trajectory has {m}")
        frames = frames[frames < m - 1]
    F = len(frames)
    stored_bytes = 2 * m * B * P * P * 8
    if dense and stored_bytes > max_dense_bytes:
        raise ValueError(
            f"dense=True would store H and H_o for {m} frames x {B} systems at P = {P}: "
            f"{stored_bytes / 2**20:.0f} MiB, above max_dense_bytes = {max_dense_bytes / 2**20:.0f} MiB; "
            f"use every > 1 with fewer frames, raise max_dense_bytes, or dense=False"
        )
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_BYTES // (_MATRICES_PER_CONFIG * P * P * 8))
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    frames_per_chunk = max(1, chunk_size // B)

    work = _Work(
        traj=traj,
        batched=batched,
        ts=np.asarray(traj.ts, dtype=np.float64),
        shape=(B, n, d),
        loss=loss,
        target=torch.from_numpy(random_target((B, n, d), target_seed)) if loss == "target" else None,
        weights=tuple(_weights(getattr(params, name), B, d) for name in BLOCKS),
        kernel=vmap(
            functools.partial(block_summary, beta=float(params.beta), dynamics=params.dynamics, loss=loss, dense=dense)
        ),
        eigenvalues=eigenvalues,
        dense=dense,
    )
    ts = work.ts
    out = {field: [] for field in _FIELDS}
    chunks = [frames[k : k + frames_per_chunk] for k in range(0, F, frames_per_chunk)]
    with _torch_threads(threads):
        with tqdm(total=F, desc=f"curvature ({loss}, {B} systems)", unit="frame", disable=not progress) as bar:
            for idx in chunks:
                for field, value in _chunk(work, idx).items():
                    out[field].append(value)
                bar.update(len(idx))

    def cat(parts):
        if not parts:
            return None
        a = np.concatenate(parts)
        return a if batched else a[:, 0]

    settings = dict(
        loss=loss,
        dynamics=params.dynamics,
        beta=float(params.beta),
        every=every,
        frames=frames.astype(np.int64),
        target_seed=target_seed,
        n=n,
        d=d,
        systems=B,
        function=(
            "l(Q, K, V) = loss(F), F = A X V^T, A_ij = exp(beta <Q x_i, K x_j>) / Z_i (SA: softmax, USA: n); "
            "unprojected velocity, no residual"
        ),
        parameters="[vec_r Q, vec_r K, vec_r V] (row-major)",
        kinds=",".join(KINDS),
        blocks=",".join(BLOCKS),
        loss_definition=_LOSS_DOC[loss],
        eigenvalues="largest eigenvalue of H (dsyevr)" if eigenvalues else "not computed",
        # ties the fields of one call together: a rewrite without dense=True leaves older dense fields behind
        call_id=uuid.uuid4().hex,
    )
    result = FlowCurvature(
        ts=ts[frames],
        frames=frames.astype(np.int64),
        **{field: cat(out[field]) for field in _FIELDS},
        loss=loss,
        settings=settings,
    )
    if write:
        _write(path, result, m, overwrite)
    return result


_LOSS_DOC = {
    "target": "||F - Y||_F^2 / (n d), Y ~ N(0, 1) (n, d) per system from target_seed, fixed over frames",
    "next": "||F - (X(t_k+1) - X(t_k)) / (t_k+1 - t_k)||_F^2 / (n d): "
    "one explicit step against the next frame, / step^2",
    "energy": "E_beta(F) - 1/(2 beta) = sum_ij (exp(beta <f_i, f_j>) - 1) / (2 beta n^2) "
    "(beta = 0: |sum f_i|^2 / (2 n^2))",
}
_FIELDS = ("norms", "trace", "top_eigenvalue", "H", "H_o", "sigma_eigenvalues", "cluster_count")


def _write(path, result: FlowCurvature, m: int, overwrite: bool) -> None:
    """One observable per field, ``curvature.<loss>.<field>``, (m, ...) with NaN (-1 for counts) at frames
    that were not computed; the settings (with a ``call_id``) are the attributes of every one of them."""
    names = {f: f"{_PREFIX}.{result.loss}.{f}" for f in _FIELDS}
    if not overwrite:
        have = particles.io.info(path)["observables"]
        clash = [nm for nm in names.values() if nm in have]
        if clash:
            raise FileExistsError(f"{path} already holds {clash}; pass overwrite=True to replace them")
    for field in _FIELDS:
        value = getattr(result, field)
        if value is None:
            continue
        full = np.full(
            (m,) + value.shape[1:],
            -1 if field == "cluster_count" else np.nan,
            dtype=np.int64 if field == "cluster_count" else np.float64,
        )
        full[result.frames] = value
        particles.io.write_observable(path, names[field], full, attrs=result.settings, overwrite=True)


def read_curvature(path, loss: str = "target") -> FlowCurvature:
    """Read back what ``along_trajectory(path, loss=loss)`` stored in a trajectory file.

    Args:
        path: the trajectory file.
        loss: which stored loss.

    Returns:
        ``FlowCurvature`` at the stored frames (``particles.load(path)`` gives the trajectory itself).

    Raises:
        KeyError: no curvature of that loss in the file (the message lists the stored observables).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    have = particles.io.info(path)["observables"]
    name = f"{_PREFIX}.{loss}.norms"
    if name not in have:
        raise KeyError(f"no curvature for loss {loss!r} in {path}; stored observables: {have}")
    first = particles.io.read_observable(path, name)
    settings = dict(first.attrs)
    frames = np.asarray(settings["frames"], dtype=np.int64)
    settings["frames"] = frames
    fields = {}
    for field in _FIELDS:
        nm = f"{_PREFIX}.{loss}.{field}"
        obs = first if nm == name else particles.io.read_observable(path, nm) if nm in have else None
        # fields left over from an earlier call (other call_id) are not part of this result
        fields[field] = (
            obs.value[frames] if obs is not None and obs.attrs.get("call_id") == settings["call_id"] else None
        )
    return FlowCurvature(ts=first.time[frames], frames=frames, loss=loss, settings=settings, **fields)


def _top_eigenvalues(H: Tensor) -> np.ndarray:
    """Largest eigenvalue of each (P, P) matrix of the (C, P, P) stack, exactly.

    LAPACK dsyevr for the one eigenvalue (index P) needs the tridiagonal reduction but no full spectrum:
    measured 2x faster than ``torch.linalg.eigvalsh`` at P = 192. scipy's OpenBLAS must run on one thread
    (threaded, it was measured 10x slower on shared cores), which only threadpoolctl can impose at run time;
    without it, torch's eigvalsh.
    """
    try:  # an optional dependency, looked up at each call: without it, the fallback
        from threadpoolctl import threadpool_limits
    except ImportError:
        return torch.linalg.eigvalsh(H)[:, -1].numpy()
    P = H.shape[-1]
    with threadpool_limits(1, user_api="blas"):
        return np.array(
            [
                scipy.linalg.eigh(
                    a, eigvals_only=True, subset_by_index=[P - 1, P - 1], driver="evr", check_finite=False
                )[0]
                for a in H.numpy()
            ]
        )


@dataclasses.dataclass(frozen=True, eq=False)
class _Work:
    """What every chunk of one ``along_trajectory`` call shares.

    Attributes:
        traj: the trajectory; batched: whether it has a system axis; ts: (m,) its times.
        shape: (B, n, d) systems, tokens, dimension.
        loss: the loss name; target: (B, n, d) target of "target" (else None).
        weights: Q, K, V, each (B, d, d).
        kernel: ``block_summary`` vmapped over configurations, with beta, dynamics, loss and dense bound.
        eigenvalues, dense: what to compute besides norms and traces.
    """

    traj: Any
    batched: bool
    ts: np.ndarray
    shape: tuple[int, int, int]
    loss: str
    target: Tensor | None
    weights: tuple[Tensor, Tensor, Tensor]
    kernel: Any
    eigenvalues: bool
    dense: bool


def _chunk(work: _Work, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Curvature at frames ``idx`` of every system: the fields of ``FlowCurvature``, each (len(idx), B, ...)
    (``top_eigenvalue``, ``H``, ``H_o`` only when asked for)."""
    B, n, d = work.shape
    f = len(idx)
    xs = _frames(work.traj.xs, idx, work.batched)  # (f, B, n, d) float64
    out = {
        # squared singular values of X / sqrt(n): the eigenvalues of Sigma_xx with absolute error ~1e-16
        # sigma_1 on sigma_k, not on lambda_k, so a cluster of spread 1e-10 still has its lambda_2 ~ 1e-20
        # resolved
        "sigma_eigenvalues": (np.linalg.svd(xs, compute_uv=False) ** 2 / n).reshape(f, B, d),
        "cluster_count": particles.count_clusters(xs).reshape(f, B),
    }
    X = torch.from_numpy(xs).reshape(-1, n, d)
    if work.loss == "target":
        Y = work.target.expand(f, B, n, d).reshape(-1, n, d)
    elif work.loss == "next":
        step = (work.ts[idx + 1] - work.ts[idx])[:, None, None, None]
        Y = torch.from_numpy((_frames(work.traj.xs, idx + 1, work.batched) - xs) / step).reshape(-1, n, d)
    else:
        Y = torch.zeros_like(X)
    Q, K, V = (M.expand(f, B, d, d).reshape(-1, d, d) for M in work.weights)
    res = work.kernel(X, Q, K, V, Y)
    if not all(bool(torch.isfinite(r).all()) for r in res[:2]):
        bad = int(np.flatnonzero(~np.isfinite(res[0].reshape(f, -1).numpy()).all(1))[0])
        params = work.traj.params
        raise RuntimeError(
            f"non-finite curvature at frame {idx[bad]} (t = {work.ts[idx[bad]]:g}) with beta = "
            f"{params.beta:g}, dynamics = {params.dynamics!r} (USA weights e^(beta <Qx, Kx>) "
            f"overflow at large beta)"
        )
    out["norms"] = res[0].reshape(f, B, 3, 3, 3).numpy()
    out["trace"] = res[1].reshape(f, B, 3).numpy()
    H = assemble_batched(res[2]) if work.eigenvalues or work.dense else None
    if work.eigenvalues:
        out["top_eigenvalue"] = _top_eigenvalues(H).reshape(f, B)
    if work.dense:
        P = 3 * d * d
        out["H"] = H.reshape(f, B, P, P).numpy()
        out["H_o"] = assemble_batched(res[3]).reshape(f, B, P, P).numpy()
    return out


@contextlib.contextmanager
def _torch_threads(threads):
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_int(name, value, low):
    # NumPy integers too (frame indices and the like); the shared check takes Python ints.
    return check_int(name, int(value) if isinstance(value, np.integer) else value, low=low)


def _weights(M, B, d) -> Tensor:
    """Q, K or V of the run as (B, d, d) float64 (None = identity, (d, d) = shared)."""
    if M is None:
        return torch.eye(d, dtype=torch.float64).expand(B, d, d)
    M = torch.as_tensor(np.asarray(M, dtype=np.float64))
    return M.expand(B, d, d) if M.ndim == 2 else M


def _frames(xs, idx, batched) -> np.ndarray:
    """Frames ``idx`` of a (possibly lazy) trajectory as (f, B, n, d) float64."""
    x = np.asarray(xs[np.asarray(idx)], dtype=np.float64)
    return x if batched else x[:, None]
