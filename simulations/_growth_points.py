"""The growth study's config, its reference problem and the block norms at one (sigma, repeat) point.

For repeat r a fresh model is drawn (seed ``model_seed + r``); at each sigma of the grid the token and position
embeddings are redrawn ~ N(0, sigma^2) (fresh draws, the authors' protocol; ``embedding="rescaled"`` multiplies
one unit draw by sigma instead) and the Frobenius norms of the diagonal blocks of H, H_o and H_f are measured
for every layer: exactly where the block allows it (``hessian.block_norms``), by Hutch++ elsewhere.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hessian import CurvatureProblem
from hessian.addition import addition_data, answer_positions
from hessian.block_norms import SplitNorms, hutchpp_split_norms, mlp_layer_norms, transformer_last_layer_norms
from hessian.losses import CrossEntropyLoss, MSELoss
from hessian.models import LinearMLP, Transformer

from ._sigma_grids import GRIDS, sigma_grid
from .common.naming import config_digest


class ModelKind(str, enum.Enum):
    TRANSFORMER = "transformer"
    MLP = "mlp"


class Method(str, enum.Enum):
    """How block norms are computed."""

    #: exact Kronecker-sum path where the block allows it (last attention layer, every MLP layer), Hutch++ elsewhere
    AUTO = "auto"
    #: Hutch++ everywhere (``sketch`` + ``probes``)
    HUTCHPP = "hutchpp"
    #: plain Hutchinson with ``probes`` Gaussian probes (the reference protocol, with our products)
    HUTCHINSON = "hutchinson"


@dataclass(frozen=True, kw_only=True)
class GrowthConfig:
    """One growth experiment.

    Attributes:
        model: "transformer" or "mlp" (embedding + linear layers, no activation).
        n_layers: depth, 1..5 in the paper.
        d_model: width (d_head = d_model, one head).
        d_mlp: transformer MLP width.
        layer_norm: pre-LayerNorm (ln1, ln2, ln_final) or none.
        attention: "softmax" or "linear" (pattern = masked scores).
        residual_scaling: r in ``resid_mid = r * resid_pre + attn_out``.
        loss: "ce" (answer digits, next token) or "mse" (summed, one-hot of the tokens at 11..16).
        grid: sigma grid name (``sigma_grid``); num_sigmas: its number of points.
        repeats: fresh model seeds ``model_seed + r``.
        batch: sequences in the one data batch (seed ``data_seed``).
        embedding: "fresh" (redraw at every sigma) or "rescaled" (sigma times one draw per repeat).
        method: "auto", "hutchpp" or "hutchinson" (see ``Method``).
        probes, sketch: Hutch++ / Hutchinson budget for blocks without the exact path.
        dtype: "float64" (default) or "float32".
    """

    model: str = "transformer"
    n_layers: int = 1
    d_model: int = 128
    d_mlp: int = 512
    layer_norm: bool = False
    attention: str = "softmax"
    residual_scaling: float = 1.0
    loss: str = "ce"
    grid: str = "log"
    num_sigmas: int = 20
    repeats: int = 20
    batch: int = 64
    data_seed: int = 1234
    model_seed: int = 1234
    embedding: str = "fresh"
    method: str = "auto"
    probes: int = 16
    sketch: int = 8
    dtype: str = "float64"

    def __post_init__(self) -> None:
        for name, minimum in (
            ("n_layers", 1),
            ("d_model", 1),
            ("d_mlp", 1),
            ("num_sigmas", 2),
            ("repeats", 1),
            ("batch", 1),
            ("probes", 2),
            ("sketch", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        choices = {
            "model": [m.value for m in ModelKind],
            "attention": ["softmax", "linear"],
            "loss": ["ce", "mse"],
            "grid": list(GRIDS),
            "embedding": ["fresh", "rescaled"],
            "method": [m.value for m in Method],
            "dtype": ["float64", "float32"],
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.layer_norm, bool):
            raise TypeError(f"layer_norm must be a bool, got {type(self.layer_norm).__name__}")
        if not (isinstance(self.residual_scaling, (int, float)) and math.isfinite(self.residual_scaling)):
            raise ValueError(f"residual_scaling must be a finite float, got {self.residual_scaling!r}")
        for name in ("data_seed", "model_seed"):
            if (
                isinstance(getattr(self, name), bool)
                or not isinstance(getattr(self, name), int)
                or getattr(self, name) < 0
            ):
                raise ValueError(f"{name} must be an int >= 0, got {getattr(self, name)!r}")

    @property
    def sigmas(self) -> np.ndarray:
        """(num_sigmas,) grid."""
        return sigma_grid(self.grid, self.num_sigmas)

    @property
    def blocks(self) -> tuple[str, ...]:
        """Measured blocks per layer: ("Q", "V") for the transformer, ("W",) for the MLP."""
        return ("Q", "V") if self.model == ModelKind.TRANSFORMER else ("W",)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def label(self) -> str:
        """Readable head of the file name: the fields the authors put in their file names, plus sizes."""
        if self.model == ModelKind.MLP:
            head = f"mlp_layers={self.n_layers}_loss={self.loss}"
        else:
            head = (
                f"norm={'pre' if self.layer_norm else 'none'}_layers={self.n_layers}_attention={self.attention}"
                f"_residual={self.residual_scaling:g}_loss={self.loss}"
            )
        return f"{head}_scale={self.grid}_d={self.d_model}_repeats={self.repeats}_{self.embedding}"

    def name(self) -> str:
        """File stem: the label and the digest of every field, so two configs never share a file."""
        return f"{self.label()}_{config_digest(self)}"


@dataclass(frozen=True)
class Setup:
    """Model, data and loss of a config (everything but the weights)."""

    model: Transformer | LinearMLP
    tokens: Tensor
    target: Tensor
    loss: Callable[[Tensor, Tensor], Tensor]


def build(config: GrowthConfig) -> Setup:
    """Model with read-out of the scored positions, the data batch and the loss on the read-out logits."""
    tokens = addition_data(config.batch, seed=config.data_seed)[0]
    n_digits = 5
    a0, a1 = answer_positions(n_digits)
    # CE: logits at 11..16 against the next tokens 12..17; MSE: against the one-hot of the tokens at 11..16
    rows = (a0 - 1, a1 - 1)
    if config.loss == "ce":
        loss, target = CrossEntropyLoss(), tokens[:, a0:a1]
    else:
        loss, target = MSELoss(reduction="sum"), tokens[:, rows[0] : rows[1]]
    if config.model == ModelKind.MLP:
        # per-token network: only the scored positions matter
        model = LinearMLP(n_layers=config.n_layers, d_model=config.d_model)
        return Setup(model, tokens[:, rows[0] : rows[1]], target, loss)
    model = Transformer(
        n_layers=config.n_layers,
        d_model=config.d_model,
        d_head=config.d_model,
        d_mlp=config.d_mlp,
        layer_norm=config.layer_norm,
        attention=config.attention,
        residual_scaling=float(config.residual_scaling),
        readout=rows,
    )
    return Setup(model, tokens, target, loss)


def _embedding_generator(config: GrowthConfig, repeat: int, index: int) -> torch.Generator:
    # an independent stream per (repeat, sigma) so that any point can be recomputed alone (resume)
    key = [config.model_seed, repeat] if config.embedding == "rescaled" else [config.model_seed, repeat, index]
    seed = int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def point_params(config: GrowthConfig, setup: Setup, repeat: int, index: int) -> dict[str, Tensor]:
    """Parameters at grid point ``index`` of repeat ``repeat``: model weights + embeddings of std sigma."""
    # drawn in float64 and cast, so float32 and float64 runs measure the same points
    params = setup.model.init(seed=config.model_seed + repeat, dtype=torch.float64)
    sigma = float(config.sigmas[index])
    gen = _embedding_generator(config, repeat, index)
    names = ("embed.W_E",) if config.model == ModelKind.MLP else ("embed.W_E", "pos_embed.W_pos")
    for name in names:
        params[name] = sigma * torch.randn(params[name].shape, generator=gen, dtype=torch.float64)
    return {name: value.to(config.torch_dtype) for name, value in params.items()}


def _param_name(config: GrowthConfig, layer: int, block: str) -> str:
    return f"layers.{layer}.W" if block == "W" else f"blocks.{layer}.attn.W_{block}"


def measure_point(
    config: GrowthConfig, setup: Setup, params: dict[str, Tensor], *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """Norms of every measured block at one parameter point.

    Returns:
        (norms (n_layers, n_blocks, 3), stderr (same), curvature products used); the last axis is (H, H_o, H_f).
    """
    L, B = config.n_layers, len(config.blocks)
    norms, stderr = np.full((L, B, 3), np.nan), np.full((L, B, 3), np.nan)
    used = 0
    loss_fn = lambda out: setup.loss(out, setup.target)  # noqa: E731
    exact: dict[tuple[int, int], SplitNorms] = {}
    if config.method == Method.AUTO:
        if config.model == ModelKind.MLP:
            for l, res in enumerate(mlp_layer_norms(setup.model, params, setup.tokens, loss_fn)):
                exact[(l, 0)] = res
        else:
            res = transformer_last_layer_norms(setup.model, params, setup.tokens, loss_fn)
            for b, block in enumerate(config.blocks):
                exact[(L - 1, b)] = res[block]
    for l in range(L):
        for b, block in enumerate(config.blocks):
            if (l, b) in exact:
                res = exact[(l, b)]
            else:
                name = [_param_name(config, l, block)]
                problem = CurvatureProblem(
                    setup.model, setup.loss, params, setup.tokens, setup.target, name, dtype=config.torch_dtype
                )
                hvp, ggnvp = (_row_products(problem.curvature(kind)) for kind in ("H", "H_o"))
                sketch = 0 if config.method == Method.HUTCHINSON else config.sketch
                res = hutchpp_split_norms(
                    hvp,
                    ggnvp,
                    problem.dim,
                    sketch=sketch,
                    probes=config.probes,
                    seed=seed + 7919 * l + b,
                    dtype=config.torch_dtype,
                )
            norms[l, b], stderr[l, b] = res.value, res.stderr
            used += res.num_products
    return norms, stderr, used


def _row_products(curvature):
    """``V -> M V`` on a (P,) vector or on k vectors as the rows of a (k, P) tensor."""
    return lambda V: curvature.matvec(V) if V.ndim == 1 else curvature.matmat(V.T).T
