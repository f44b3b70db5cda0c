"""The model interface every push-forward family implements, and what they share.

A model here is a map ``G: z ~ N(0, I) -> encoded row``. Training differs per family, but
sampling, snapping one-hot blocks, device handling and the saved form are the same, so they live
once in :class:`GenerativeModel` (template method: families implement ``_fit``, ``_push_raw``,
``_networks`` and ``_build_networks``).

Saved form (never pickle)::

    model.json          family, config, latent_dim, n_features, blocks, package version, summary
    model.safetensors   the state dicts of the networks ``push`` needs (flat, prefixed keys)
"""

from __future__ import annotations

import dataclasses
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from pfcore import __version__
from pfcore.atomic import atomic_write
from pfcore.errors import InputError, ModelError
from pfcore.models.progress import Progress, ProgressCallback

__all__ = [
    "FORMAT_VERSION",
    "BlockSpec",
    "GenerativeModel",
    "ModelConfig",
    "Progress",
    "ProgressCallback",
    "normalize_blocks",
    "row_pieces",
    "snap_onehot",
]

FORMAT_VERSION = 1
MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.safetensors"
#: Per-slot one-hot offsets (calibration.py), stored beside the network weights.
BIAS_KEY = "calibration.onehot_bias"


@dataclass(frozen=True)
class BlockSpec:
    """The fields of ``pfcore.transforms.Block`` the models rely on.

    Models depend on the Block *contract* (column, kind, start, width), not on the class, so any
    object with these attributes (or a dict with these keys) is accepted.
    """

    column: str
    kind: str
    start: int
    width: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def normalize_blocks(blocks: Sequence[Any], n_features: int) -> tuple[BlockSpec, ...]:
    """Validate blocks against the contract: ordered, contiguous, covering ``[0, n_features)``."""
    out: list[BlockSpec] = []
    pos = 0
    for b in blocks:
        get = b.get if isinstance(b, Mapping) else lambda k, _b=b: getattr(_b, k, None)
        spec = BlockSpec(str(get("column")), str(get("kind")), int(get("start")), int(get("width")))
        if spec.kind not in ("numeric", "onehot"):
            raise InputError(
                f"block kind must be 'numeric' or 'onehot', got {spec.kind!r}", column=spec.column
            )
        if spec.start != pos:
            raise InputError(
                f"blocks must be contiguous: expected start {pos}, got {spec.start}",
                column=spec.column,
            )
        if spec.kind == "numeric" and spec.width != 1:
            raise InputError(
                f"numeric block must have width 1, got {spec.width}", column=spec.column
            )
        if spec.kind == "onehot" and spec.width < 2:
            raise InputError(
                f"onehot block must have width >= 2, got {spec.width}", column=spec.column
            )
        pos += spec.width
        out.append(spec)
    if pos != n_features:
        raise InputError(f"blocks cover {pos} features but the matrix has {n_features} columns")
    return tuple(out)


class OneHotIndex:
    """Precomputed index tensors to treat all one-hot blocks at once (no per-row Python).

    Blocks are grouped by width so each group is one ``(rows, n_blocks, width)`` view; a table
    with many categorical columns of a few distinct widths costs a handful of kernels.
    """

    def __init__(self, blocks: Sequence[BlockSpec]) -> None:
        groups: dict[int, list[int]] = {}
        for b in blocks:
            if b.kind == "onehot":
                groups.setdefault(b.width, []).append(b.start)
        # (width, column index matrix of shape (n_blocks, width))
        self.groups: list[tuple[int, torch.Tensor]] = [
            (w, torch.tensor([[s + j for j in range(w)] for s in starts], dtype=torch.long))
            for w, starts in sorted(groups.items())
        ]
        self.numeric = torch.tensor(
            [b.start for b in blocks if b.kind == "numeric"], dtype=torch.long
        )
        self.onehot_cols = torch.tensor(
            sorted(b.start + j for b in blocks if b.kind == "onehot" for j in range(b.width)),
            dtype=torch.long,
        )

    def to(self, device: torch.device) -> OneHotIndex:
        self.groups = [(w, idx.to(device)) for w, idx in self.groups]
        self.numeric = self.numeric.to(device)
        self.onehot_cols = self.onehot_cols.to(device)
        return self

    @property
    def has_onehot(self) -> bool:
        return bool(self.groups)


def snap_onehot(x: torch.Tensor, index: OneHotIndex) -> torch.Tensor:
    """Replace every one-hot block by its argmax as exact ±1 (in place on ``x``; returns it)."""
    for _w, idx in index.groups:
        vals = x[:, idx]  # (n, blocks, w)
        hot = vals.argmax(dim=2, keepdim=True)
        snapped = torch.full_like(vals, -1.0).scatter_(2, hot, 1.0)
        x[:, idx] = snapped
    return x


C = TypeVar("C", bound="ModelConfig")

#: On a CPU, :meth:`GenerativeModel.push` runs a batch through the networks this many rows at a
#: time, always from the batch's first row (so a canonical block's rows never depend on how
#: the work is split): the activations of 8,192 rows stay in the cache, where a whole
#: 65,536-row block streams every layer's activations through memory. Measured on the 2-core
#: machine with a fit running on the other core: the hybrid's discrete network sampled 100k
#: rows in 0.29 s instead of 0.59 s (adult's 9 columns) and 0.50 s instead of 0.86 s
#: (nyc_flights' 10), a 256x3 student in 0.27 s instead of 0.71 s; 16,384 rows were slower,
#: 2,048 and 4,096 within 5% of 8,192. A GPU takes the whole batch.
CPU_PUSH_ROWS = 8192


def row_pieces(n: int, device: torch.device) -> list[slice]:
    """The row slices a batch of ``n`` rows runs in on ``device``: ``CPU_PUSH_ROWS`` at a time
    from the first row on a CPU, the whole batch elsewhere."""
    if device.type != "cpu" or n <= CPU_PUSH_ROWS:
        return [slice(0, n)]
    return [slice(lo, min(lo + CPU_PUSH_ROWS, n)) for lo in range(0, n, CPU_PUSH_ROWS)]


@dataclass
class ModelConfig:
    """Training settings shared by every family; validated at construction (``ModelError``).

    Budgets: training stops at the first of ``max_steps`` (after scaling by data size, see
    ``epochs``), ``max_minutes`` of wall time, or early stopping (``patience`` evaluations of the
    held-out proxy without improvement). Steps keep runs deterministic; minutes keep scheduled
    runs bounded on a busy machine.
    """

    seed: int = 0
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:N"
    amp: bool = True  # bf16 autocast for training: CUDA, or a CPU with bf16 matrix units (AMX)
    threads: int | None = None  # torch CPU threads during fit; None = cores available to us
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # Polyak average of the weights (0 = off): evaluated, kept and saved in place of the raw
    # weights; the per-step decay ramps as min(ema_decay, (1 + step) / (10 + step)). At equal
    # steps (3000 teacher, 6000 distillation; benchmarks/results/ema_sweep.json) 0.999 lowered
    # the flow teacher's detection AUC on every table tried (diamonds 0.773 -> 0.710,
    # california_housing 0.712 -> 0.689, credit_default 0.847 -> 0.753) and the one-step
    # student's on two of three (0.809 -> 0.759, 0.901 -> 0.862; california 0.755 -> 0.761).
    ema_decay: float = 0.999
    warmup_steps: int = 100
    max_steps: int = 8000
    min_steps: int = 500
    epochs: float | None = None  # cap on passes over the data (scales steps with n); None = off
    max_minutes: float = 3.0
    eval_every: int = 250
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    n_eval: int = 2048
    log_every: int = 50
    checkpoint_every: int = 500
    calibrate: bool = True  # fit per-slot offsets so category frequencies match (calibration.py)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ModelError`` naming the field and what to change."""
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise ModelError(
                f"config.device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}"
            )
        positive_ints = [
            "batch_size",
            "max_steps",
            "eval_every",
            "n_eval",
            "log_every",
            "checkpoint_every",
        ]
        self._check_ints(positive_ints, 1)
        self._check_ints(["min_steps", "warmup_steps", "patience", "seed"], 0)
        if not self.lr > 0:
            raise ModelError(f"config.lr must be > 0, got {self.lr!r}")
        if not self.max_minutes > 0:
            raise ModelError(f"config.max_minutes must be > 0, got {self.max_minutes!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ModelError("config.weight_decay and config.grad_clip must be >= 0")
        if not 0 <= self.ema_decay < 1:
            raise ModelError(f"config.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.epochs is not None and not self.epochs > 0:
            raise ModelError(f"config.epochs must be > 0 or None, got {self.epochs!r}")
        self._check_int("threads", self.threads, 1, optional=True)

    @staticmethod
    def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
        """The one integer-field check of every family's config (a bool is not an integer:
        ``True`` would silently mean 1 step or 1 layer)."""
        if optional and value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            alt = " or None" if optional else ""
            raise ModelError(f"config.{name} must be an integer >= {minimum}{alt}, got {value!r}")

    def _check_ints(self, names: Sequence[str], minimum: int) -> None:
        for name in names:
            self._check_int(name, getattr(self, name), minimum)

    @classmethod
    def _check_width_depth(cls, width: int, depth: int, prefix: str = "") -> None:
        cls._check_int(f"{prefix}width", width, 1)
        cls._check_int(f"{prefix}depth", depth, 1)

    # ------------------------------------------------------------------ (de)serialisation
    #: For fields added after models were first saved: the value a saved config that lacks the
    #: key had in effect. ``from_saved`` fills these (not today's defaults), so changing a
    #: default never changes what an existing model file means.
    SAVED_BEFORE: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_saved(cls: type[C], data: Mapping[str, Any] | None) -> C:
        """The config of a saved model (``model.json``); see ``SAVED_BEFORE``."""
        return cls.from_dict({**cls.SAVED_BEFORE, **dict(data or {})})

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None) -> C:
        """Build from a dict, rejecting unknown keys (a typo must not be silently ignored)."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(
                f"unknown config key(s) {unknown} for {cls.__name__}; valid keys: {sorted(known)}"
            )
        try:
            return cls(**data)
        except TypeError as exc:  # pragma: no cover - defensive: wrong value types
            raise ModelError(f"invalid config for {cls.__name__}: {exc}") from exc

    def steps_for(self, n_rows: int) -> int:
        """``max_steps`` capped by ``epochs`` passes over ``n_rows`` (never below ``min_steps``)."""
        steps = self.max_steps
        if self.epochs is not None:
            per_epoch = max(1, -(-n_rows // min(self.batch_size, n_rows)))
            steps = min(steps, max(self.min_steps, int(self.epochs * per_epoch)))
        return max(1, steps)


class GenerativeModel(ABC):
    """A push-forward generative model of an encoded table.

    Subclasses set ``family`` and ``config_class`` and implement the private steps. After
    ``fit`` (or ``load``), ``push`` is a deterministic function of ``z``.
    """

    family: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    #: True where ``_push_raw`` already writes every one-hot block as exact ±1 (drawn classes,
    #: not a network's soft output), so :meth:`push` need not snap them: snapping costs about
    #: 16% of the hybrid's sampling time on nyc_flights' 238 one-hot dims.
    exact_onehots: ClassVar[bool] = False
    #: True where the family draws its discrete columns one at a time and so can keep banned
    #: class pairs (``fit``'s ``bans``) off every row; other families refuse them.
    masks_classes: ClassVar[bool] = False

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None) -> None:
        if config is None or isinstance(config, Mapping):
            config = self.config_class.from_dict(config)
        if not isinstance(config, self.config_class):
            raise ModelError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.latent_dim: int = 0
        self.n_features: int = 0
        self.blocks: tuple[BlockSpec, ...] = ()
        self.fit_summary: dict[str, Any] = {}
        self._device = torch.device("cpu")
        self._index: OneHotIndex | None = None
        self._detector_view: Callable[[np.ndarray, np.ndarray], tuple] | None = None
        self._onehot_bias: torch.Tensor | None = None
        self._bans = torch.zeros(0, 2, dtype=torch.long)
        #: ``fit``'s ``class_keys`` while fitting (a family that maps label columns reads it
        #: when it builds its networks); None otherwise
        self._class_key_hint: dict[str, list[str]] | None = None
        self._fitted = False

    # ------------------------------------------------------------------ family hooks
    @abstractmethod
    def _build_networks(self) -> None:
        """Create untrained networks for ``self.n_features`` / ``self.latent_dim`` on CPU."""

    @abstractmethod
    def _networks(self) -> dict[str, nn.Module]:
        """The networks ``push`` needs, by name (their state is what is saved)."""

    @abstractmethod
    def _fit(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None,
        callbacks: Sequence[ProgressCallback],
        checkpoint_dir: Path | None,
    ) -> dict[str, Any]:
        """Train on ``x`` (already on ``self.device``); return a JSON-able summary."""

    @abstractmethod
    def _push_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Network output for ``z`` before one-hot snapping (no grad, eval mode)."""

    def _latent_dim_for(self, n_features: int) -> int:
        return n_features

    # ------------------------------------------------------------------ public API
    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: str | torch.device) -> GenerativeModel:
        """Move the networks (and index tensors) to ``device``; returns self."""
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"device {dev} requested but CUDA is not available")
        for net in self._networks().values():
            net.to(dev)
        if self._index is not None:
            self._index.to(dev)
        if self._onehot_bias is not None:
            self._onehot_bias = self._onehot_bias.to(dev)
        self._device = dev
        return self

    def fit(
        self,
        x: np.ndarray,
        blocks: Sequence[Any],
        *,
        valid: np.ndarray | None = None,
        callbacks: Sequence[ProgressCallback] = (),
        checkpoint_dir: str | os.PathLike[str] | None = None,
        detector_view: Callable[[np.ndarray, np.ndarray], tuple] | None = None,
        bans: np.ndarray | None = None,
        class_keys: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        """Train on the encoded matrix ``x`` (n, n_features) described by ``blocks``.

        ``valid`` rows (same encoding) are never trained on; they drive early stopping. With
        ``checkpoint_dir``, training state is saved there periodically and a rerun with the same
        config and data resumes from it. ``detector_view`` shows encoded rows as a classifier
        should see them when a family chooses between its own variants by one
        (``map_space.DetectorView``; the synthesizer decodes them to the table's columns).
        ``bans``: ``(B, 2)`` feature indices of two one-hot slots (of different blocks) that no
        sampled row may hold together (``pfcore.rules.masks``); only a family that
        ``masks_classes`` takes them. ``class_keys``: integer columns whose values are labels
        of a key of discrete columns (``pfcore.labels``), numeric block name -> key block
        names; a family that maps them onto each class's values (the hybrid) records them in
        its config, the others ignore them.
        Returns a JSON-able summary (also kept as ``fit_summary`` and saved with the model).
        """
        from pfcore.models.training import resolve_device, thread_scope

        x_np = _check_matrix(x, "training matrix")
        if len(x_np) < 2:
            raise InputError(f"need at least 2 training rows, got {len(x_np)}")
        self.blocks = normalize_blocks(blocks, x_np.shape[1])
        self._bans = torch.as_tensor(
            np.zeros((0, 2)) if bans is None else np.asarray(bans), dtype=torch.long
        ).reshape(-1, 2)
        if len(self._bans) and not self.masks_classes:
            raise ModelError(
                f"family {self.family!r} draws its discrete columns in one map and cannot keep "
                "banned class pairs; use family 'hybrid'"
            )
        self.n_features = x_np.shape[1]
        self.latent_dim = self._latent_dim_for(self.n_features)
        valid_np = None
        if valid is not None and len(valid) > 0:
            valid_np = _check_matrix(valid, "validation matrix")
            if valid_np.shape[1] != self.n_features:
                raise InputError(
                    f"validation matrix has {valid_np.shape[1]} columns, "
                    f"training has {self.n_features}"
                )
        device = resolve_device(self.config.device)
        with thread_scope(self.config.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self._index = OneHotIndex(self.blocks)
            self._class_key_hint = {k: list(v) for k, v in (class_keys or {}).items()}
            try:
                self._build_networks()
            finally:
                self._class_key_hint = None
            self.to(device)
            xt = torch.from_numpy(x_np).to(device)
            vt = None if valid_np is None else torch.from_numpy(valid_np).to(device)
            ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
            self._detector_view = detector_view
            try:
                summary = self._fit(xt, vt, list(callbacks), ckpt)
            finally:
                self._detector_view = None
            for net in self._networks().values():
                net.eval()
            self._onehot_bias = None
            if self.config.calibrate and self._index.has_onehot:
                summary["calibration"] = self._calibrate(xt)
        self._fitted = True
        summary = {
            "family": self.family,
            "device": str(device),
            "n_rows": int(len(x_np)),
            "n_features": self.n_features,
            **summary,
        }
        self.fit_summary = summary
        return summary

    def _calibrate(self, x: torch.Tensor) -> dict[str, Any]:
        from pfcore.models.calibration import fit_onehot_bias

        assert self._index is not None
        with torch.inference_mode():
            bias, summary = fit_onehot_bias(
                self._push_raw,
                x,
                self._index.groups,
                latent_dim=self.latent_dim,
                seed=self.config.seed,
                device=self._device,
            )
        self._onehot_bias = bias.to(self._device)
        return summary

    @torch.no_grad()
    def push(self, z: torch.Tensor) -> torch.Tensor:
        """Deterministic map ``(n, latent_dim) -> (n, n_features)``; one-hot blocks snapped.

        No gradients, eval mode; one-hot blocks come out as exact ±1 (argmax).
        """
        self._require_fitted()
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InputError(f"z must have shape (n, {self.latent_dim}), got {tuple(z.shape)}")
        with torch.inference_mode():
            z = z.to(self._device, torch.float32)
            pieces = row_pieces(len(z), z.device)
            if len(pieces) == 1:
                return self._push_piece(z)
            out = z.new_empty(len(z), self.n_features)
            for s in pieces:
                self._push_piece(z[s], out[s])
            return out

    def _push_piece(self, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """One piece of :meth:`push`, written into ``out`` (a row slice of the batch's output)
        when given."""
        x = self._push_raw(z).float()
        if self._onehot_bias is not None:
            x += self._onehot_bias
        if self._onehot_bias is not None or not self.exact_onehots:
            assert self._index is not None
            x = snap_onehot(x, self._index)
        return x if out is None else out.copy_(x)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` encoded rows from the canonical blocks of ``pfcore.sampling``.

        The same latent noise, block by block, as ``Synthesizer.sample(n, seed)``, so encoded
        rows scored here are the rows that get decoded and published.
        """
        from pfcore import sampling

        self._require_fitted()
        if n < 0:
            raise ModelError(f"number of rows must be >= 0, got {n}")
        out = np.empty((n, self.n_features), dtype=np.float32)
        for block in sampling.blocks(n, seed):
            z = sampling.latent(block, self.latent_dim)
            out[block.row_offset : block.row_offset + block.rows] = self.push(z).cpu().numpy()
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model.json`` + ``model.safetensors`` into ``directory`` (atomically per file)."""
        from safetensors.torch import save_file

        self._require_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for name, net in self._networks().items():
            for key, val in net.state_dict().items():
                tensors[f"{name}.{key}"] = val.detach().to("cpu", torch.float32).contiguous()
        if self._onehot_bias is not None:
            tensors[BIAS_KEY] = self._onehot_bias.detach().to("cpu", torch.float32).contiguous()
        meta = {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "family": self.family,
            "config": self.config.to_dict(),
            "latent_dim": self.latent_dim,
            "n_features": self.n_features,
            "blocks": [b.to_dict() for b in self.blocks],
            "fit_summary": _jsonable(self.fit_summary),
        }
        atomic_write(path / MODEL_WEIGHTS, lambda p: save_file(tensors, str(p)))
        atomic_write(
            path / MODEL_JSON,
            lambda p: Path(p).write_text(json.dumps(meta, indent=2, sort_keys=True)),
        )
        return path

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> GenerativeModel:
        """Load a saved model onto ``device`` (weights are read as tensors only: no code runs)."""
        from safetensors.torch import load_file

        path = Path(directory)
        meta = read_model_json(path)
        if meta["family"] != cls.family:
            raise ModelError(f"{path}: saved family is {meta['family']!r}, not {cls.family!r}")
        model = cls(cls.config_class.from_saved(meta["config"]))
        model.n_features = int(meta["n_features"])
        model.latent_dim = int(meta["latent_dim"])
        model.blocks = normalize_blocks(meta["blocks"], model.n_features)
        model.fit_summary = dict(meta.get("fit_summary") or {})
        model._index = OneHotIndex(model.blocks)
        with torch.random.fork_rng(devices=[]):
            model._build_networks()
        try:
            tensors = load_file(str(path / MODEL_WEIGHTS), device="cpu")
        except Exception as exc:  # safetensors raises its own types
            raise ModelError(f"{path / MODEL_WEIGHTS}: cannot read weights: {exc}") from exc
        for name, net in model._networks().items():
            prefix = f"{name}."
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ModelError(f"{path}: weights do not match the saved config: {exc}") from exc
            net.eval()
        model._onehot_bias = tensors.get(BIAS_KEY)
        model._fitted = True
        model.to(device)
        return model

    # ------------------------------------------------------------------ helpers
    def _require_fitted(self) -> None:
        if not self._fitted:
            raise ModelError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def __repr__(self) -> str:
        state = f"n_features={self.n_features}" if self._fitted else "unfitted"
        return f"{type(self).__name__}({state}, device={self._device})"


def read_model_json(directory: Path) -> dict[str, Any]:
    """Parse and sanity-check ``model.json`` (format version, required keys)."""
    file = directory / MODEL_JSON
    if not file.exists():
        raise ModelError(f"{file}: no saved model here (model.json missing)")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{file}: not valid JSON: {exc}") from exc
    missing = [
        k for k in ("family", "config", "latent_dim", "n_features", "blocks") if k not in meta
    ]
    if missing:
        raise ModelError(f"{file}: missing keys {missing}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"{file}: saved with model format {meta['format_version']} by pushforward "
            f"{meta.get('package_version')}; this is format {FORMAT_VERSION} ({__version__}): "
            "upgrade pushforward"
        )
    return meta


def _check_matrix(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InputError(f"{what} must be 2-D with at least one column, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(f"{what} has a non-finite value at row {bad[0]}, column {bad[1]}")
    return arr


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so numpy scalars and tuples never break ``model.json``."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
