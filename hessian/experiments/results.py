"""HDF5 files of the Hessian experiments: the only module here that imports h5py.

Growth file layout (schema 1):

* root attrs: ``schema`` = 1, ``kind`` = "hessian_growth", ``config`` (JSON of ``GrowthConfig``), ``kinds``,
  ``blocks``; dataset ``sigmas`` (S,);
* one group per finished point, ``sigma_{k:02d}/repeat_{r:02d}``, with datasets ``norms`` and ``stderr``
  (n_layers, n_blocks, 3) (last axis H, H_o, H_f) and attrs ``sigma``, ``seconds``, ``num_products``.

A point is written in one go and flushed, so an interrupted run resumes at the first missing point.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .block_norms import KINDS
from .growth import GrowthConfig

SCHEMA = 1


def _group(k: int, r: int) -> str:
    return f"sigma_{k:02d}/repeat_{r:02d}"


class GrowthWriter:
    """Append-only writer of a growth file; refuses a file written for another config."""

    def __init__(self, path: str | Path, config: GrowthConfig):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.config = config
        text = json.dumps(dataclasses.asdict(config), sort_keys=True)
        with h5py.File(self.path, "a") as f:
            if "config" in f.attrs:
                if f.attrs["config"] != text:
                    raise ValueError(
                        f"path {self.path} holds results of another config ({f.attrs['config']}), expected {text}; "
                        "choose another output path or delete the file"
                    )
            else:
                f.attrs.update(
                    schema=SCHEMA, kind="hessian_growth", config=text, kinds=list(KINDS), blocks=list(config.blocks)
                )
                f.create_dataset("sigmas", data=config.sigmas)
            self._done = {name for name in self._points(f)}

    @staticmethod
    def _points(f: h5py.File) -> list[str]:
        return [f"{s}/{r}" for s in f if s.startswith("sigma_") for r in f[s]]

    def has(self, k: int, r: int) -> bool:
        return _group(k, r) in self._done

    def write(
        self, k: int, r: int, norms: np.ndarray, stderr: np.ndarray, *, seconds: float, num_products: int
    ) -> None:
        with h5py.File(self.path, "a") as f:
            g = f.create_group(_group(k, r))
            g.create_dataset("norms", data=norms)
            g.create_dataset("stderr", data=stderr)
            g.attrs.update(sigma=float(self.config.sigmas[k]), seconds=float(seconds), num_products=int(num_products))
        self._done.add(_group(k, r))


@dataclass(frozen=True)
class GrowthResults:
    """A growth file in memory.

    Attributes:
        config: the GrowthConfig it was written with.
        sigmas: (S,) grid.
        norms, stderr: (S, R, n_layers, n_blocks, 3), NaN where a point is missing.
        seconds: (S, R) compute time per point (NaN if missing).
        num_products: (S, R) curvature products per point (-1 if missing).
    """

    config: GrowthConfig
    sigmas: np.ndarray
    norms: np.ndarray
    stderr: np.ndarray
    seconds: np.ndarray
    num_products: np.ndarray

    def mean(self) -> np.ndarray:
        """(S, n_layers, n_blocks, 3) mean over the finished repeats."""
        with np.errstate(invalid="ignore"):
            return np.nanmean(self.norms, axis=1)

    def sem(self) -> np.ndarray:
        """(S, n_layers, n_blocks, 3) standard error of the mean over repeats (scipy.stats.sem, ddof 1)."""
        n = np.sum(np.isfinite(self.norms), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanstd(self.norms, axis=1, ddof=1) / np.sqrt(n)

    @property
    def complete(self) -> bool:
        return bool(np.isfinite(self.seconds).all())


def load_growth(path: str | Path) -> GrowthResults:
    """Read a growth file (missing points are NaN)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "hessian_growth":
            raise ValueError(f"{path} is not a hessian_growth file (kind={f.attrs.get('kind')!r})")
        config = GrowthConfig(**json.loads(f.attrs["config"]))
        sigmas = f["sigmas"][()]
        S, R, L, B = len(sigmas), config.repeats, config.n_layers, len(config.blocks)
        norms, stderr = np.full((S, R, L, B, 3), np.nan), np.full((S, R, L, B, 3), np.nan)
        seconds, products = np.full((S, R), np.nan), np.full((S, R), -1, dtype=np.int64)
        for k in range(S):
            for r in range(R):
                name = _group(k, r)
                if name in f:
                    g = f[name]
                    norms[k, r], stderr[k, r] = g["norms"][()], g["stderr"][()]
                    seconds[k, r], products[k, r] = g.attrs["seconds"], g.attrs["num_products"]
    return GrowthResults(config, sigmas, norms, stderr, seconds, products)


# ---------------------------------------------------------------------------------------------------------
# heterogeneity file: root attrs kind, schema, config; datasets hessian (P, P) float32, names, boundaries;
# group blocks/{softmax,linear}/{Q,V} (p, p) float64


def _config_text(config) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def has_heterogeneity(path: str | Path, config) -> bool:
    """Whether ``path`` holds complete heterogeneity results for ``config``."""
    path = Path(path)
    if not path.is_file():
        return False
    with h5py.File(path, "r") as f:
        return (
            f.attrs.get("kind") == "hessian_heterogeneity"
            and f.attrs.get("config") == _config_text(config)
            and bool(f.attrs.get("complete", False))
        )


def save_heterogeneity(path: str | Path, config, data: dict) -> None:
    """Write the output of ``heterogeneity.heterogeneity`` (the full Hessian in float32: it is only displayed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs.update(schema=SCHEMA, kind="hessian_heterogeneity", config=_config_text(config), complete=False)
        f.create_dataset(
            "hessian", data=data["hessian"].numpy().astype(np.float32), compression="gzip", compression_opts=1
        )
        f.create_dataset("names", data=np.array(data["names"], dtype="S"))
        f.create_dataset("boundaries", data=np.asarray(data["boundaries"], dtype=np.int64))
        for attention, blocks in data["blocks"].items():
            for block, M in blocks.items():
                f.create_dataset(f"blocks/{attention}/{block}", data=M.numpy())
        f.attrs["complete"] = True


def load_heterogeneity(path: str | Path) -> dict:
    """Read a heterogeneity file into numpy arrays (same keys as ``heterogeneity.heterogeneity``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "hessian_heterogeneity" or not f.attrs.get("complete", False):
            raise ValueError(f"{path} is not a complete hessian_heterogeneity file")
        return dict(
            config=json.loads(f.attrs["config"]),
            hessian=f["hessian"][()].astype(np.float64),
            names=[n.decode() for n in f["names"][()]],
            boundaries=f["boundaries"][()],
            blocks={a: {b: f[f"blocks/{a}/{b}"][()] for b in f[f"blocks/{a}"]} for a in f["blocks"]},
        )
