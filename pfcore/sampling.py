"""The one sampling path: canonical blocks from (model, seed, rows) to decoded Arrow tables.

Why one path: the fidelity gate, ``Synthesizer.sample``, the MLflow pyfunc and the batch
generator's shard writer must produce the same rows for the same seed, or the gate scores rows
that are never published and ``predict(n, seed)`` cannot reproduce a batch. Each of them asks
this module for its blocks and runs the same two steps on each: :func:`forward` (noise through
the model) and :func:`decode` (encoded rows to the source's columns).

Why canonical blocks: if rows were drawn per call, per shard or per worker, the data would change
with the parallelism. Instead the row space ``[0, N)`` is cut into fixed blocks of
``block_rows`` rows; block ``b`` gets its noise and decode randomness from
``SeedSequence([seed, b])`` and its ids from ``row_offset = b * block_rows``, and is pushed
through the model as exactly one batch, so a change of chunking cannot change the GEMM blocking
and hence the floating-point results. Rows then depend on (model, seed, N, block_rows, noise)
and never on how the work is split: ``Synthesizer.sample(N, seed)`` equals the published
``N``-row batch with ``seed`` for every shard layout and worker count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from pfcore.errors import InputError, ModelError

if TYPE_CHECKING:
    import pyarrow as pa
    import torch

    from pfcore.condition_plan import CompiledConditions

__all__ = [
    "BLOCK_ROWS",
    "NOISE_CHOICES",
    "Block",
    "BlockSampler",
    "block_seeds",
    "blocks",
    "condition_rows",
    "decode",
    "decode_backend",
    "forward",
    "iter_tables",
    "latent",
]

#: Rows per canonical block (65,536): large enough that the per-call overhead of a forward pass
#: and a decode is amortised, small enough that one block's encoded floats stay a few MB.
BLOCK_ROWS = 65_536

Noise = Literal["cpu", "device"]
#: "cpu": latent noise drawn on the CPU, the same on every device (a GPU batch differs from a
#: CPU one only by floating-point rounding). "device": drawn on the model's device, much faster
#: on a GPU, but then the rows also depend on the device kind.
NOISE_CHOICES: tuple[str, ...] = ("cpu", "device")


#: Which decode runs: None decides by the model's device (:func:`decode_backend`); "numpy"
#: or "torch" forces one (benchmarks measure both). Both give the same bytes.
DECODE: str | None = None
DECODE_CHOICES: tuple[str, ...] = ("numpy", "torch")


class BlockSampler(Protocol):
    """What the sampling path needs from a synthesizer (``pfcore.synthesizer.Synthesizer``)."""

    @property
    def latent_dim(self) -> int: ...

    def push(self, z: torch.Tensor) -> Any: ...

    def push_conditional(
        self,
        z: torch.Tensor,
        known: Any,
        mask: Any,
        seed: int,
        method: str,
        evidence: dict[int, torch.Tensor] | None = None,
    ) -> Any: ...

    @property
    def transformer(self) -> Any: ...


@dataclass(frozen=True)
class Block:
    """Canonical block ``index``: its row count, first row id and two independent seeds."""

    index: int
    rows: int
    row_offset: int
    noise_seed: int
    decode_seed: int


def block_seeds(seed: int, block: int) -> tuple[int, int]:
    """(noise seed, decode seed) of canonical block ``block``; both 63-bit non-negative ints.

    Both come from one ``SeedSequence([seed, block])`` so blocks are independent streams and a
    block's randomness does not depend on any other block being generated.
    """
    noise, decode_ = _seeds63([int(seed), int(block)], 2)
    return noise, decode_


def _check_counts(n_rows: int, seed: int, block_rows: int) -> None:
    if n_rows < 0:
        raise InputError(f"number of rows must be >= 0, got {n_rows}")
    if seed < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    if block_rows <= 0:
        raise InputError(f"block_rows must be > 0, got {block_rows}")


def blocks(
    n_rows: int,
    seed: int,
    *,
    block_rows: int = BLOCK_ROWS,
    first: int = 0,
    count: int | None = None,
) -> Iterator[Block]:
    """Blocks ``[first, first + count)`` of an ``n_rows``-row sample (all remaining by default).

    A shard asks for its own run of blocks; every other caller asks for all of them.
    """
    _check_counts(n_rows, seed, block_rows)
    n_blocks = -(-n_rows // block_rows)
    stop = n_blocks if count is None else min(n_blocks, first + count)
    for b in range(first, stop):
        noise_seed, decode_seed = block_seeds(seed, b)
        rows = min(block_rows, n_rows - b * block_rows)
        yield Block(b, rows, b * block_rows, noise_seed, decode_seed)


def _noise_device(synth: BlockSampler, noise: str) -> torch.device:
    import torch

    if noise not in NOISE_CHOICES:
        raise InputError(f"noise must be one of {list(NOISE_CHOICES)}, got {noise!r}")
    if noise == "device":
        device = getattr(getattr(synth, "model", None), "device", None)
        if device is not None:
            return torch.device(device)
    return torch.device("cpu")


def latent(block: Block, latent_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The block's latent noise ``z ~ N(0, I)``, drawn in one call from its noise seed."""
    import torch

    gen = torch.Generator(device=device).manual_seed(block.noise_seed)
    return torch.randn(block.rows, int(latent_dim), generator=gen, device=device)


def decode_backend(device: torch.device | str) -> str:
    """Which decode takes model output from ``device`` (``DECODE`` overrides).

    "torch" on an accelerator: the rows stay on the device until their final column buffers,
    copied to the host once. "numpy" on the CPU, where it is faster: on one core the torch
    decode ran at 0.5-0.8x NumPy's rate on decode alone and 0.93x end to end
    (``benchmarks/transforms_decode.py``, ``benchmarks/generate.py --decode numpy torch``):
    its binary search over ~2k knots per numeric column against NumPy's lookup table.
    """
    import torch

    if DECODE is not None:
        if DECODE not in DECODE_CHOICES:
            raise InputError(f"decode must be one of {list(DECODE_CHOICES)}, got {DECODE!r}")
        return DECODE
    return "numpy" if torch.device(device).type == "cpu" else "torch"


def forward(
    synth: BlockSampler,
    block: Block,
    *,
    noise: Noise | str = "cpu",
    condition: CompiledConditions | None = None,
) -> np.ndarray | torch.Tensor:
    """Push one whole block of latent noise through the model (one batch, never split here;
    on a CPU the model runs it in fixed pieces from its first row, ``base.CPU_PUSH_ROWS``).

    Returns the encoded rows where :func:`decode_backend` decodes them: a tensor on the
    model's device for the torch decode, else a NumPy array.
    With ``condition`` (``pfcore.condition_plan``), the model family's conditional sampler
    holds the block's given encoded values fixed and generates the rest from the same noise.
    """
    import torch

    z = latent(block, synth.latent_dim, _noise_device(synth, noise))
    with torch.inference_mode():
        if condition is None:
            x = synth.push(z)
        else:
            x = _push_conditional(synth, block, z, condition)
    if x.shape[0] != block.rows:
        raise ModelError(f"model returned {x.shape[0]} rows for a block of {block.rows}")
    if isinstance(x, torch.Tensor):
        x = x.float()
        if decode_backend(x.device) == "numpy":
            x = x.cpu().numpy()
    return x


def _push_conditional(
    synth: BlockSampler, block: Block, z: torch.Tensor, condition: CompiledConditions
) -> torch.Tensor:
    """The family's conditional rows of one block. With ranged numbers the model draws itself
    first (``CompiledConditions.own_ranges``): one draw with those numbers left free, then a
    second, with them given, of the rows whose own draw fell outside; each row is a function
    of the block alone, as without them."""
    import torch

    known, mask = condition.encoded(block)
    evidence = {a: torch.from_numpy(w) for a, w in condition.evidence(known).items()}
    kn, seed, method = torch.from_numpy(known), _renoise_seed(block), condition.method
    own = condition.own_mask()
    if own is None:
        return synth.push_conditional(z, kn, torch.from_numpy(mask), seed, method, evidence or None)
    x = synth.push_conditional(z, kn, torch.from_numpy(own), seed, method, evidence or None)
    redo = (~condition.inside(x)).nonzero().flatten()
    if len(redo):
        at = redo.cpu()
        part = {a: w[at] for a, w in evidence.items()}
        x[redo] = synth.push_conditional(
            z[redo.to(z.device)], kn[at], torch.from_numpy(mask), seed, method, part or None
        )
    return x


def _renoise_seed(block: Block) -> int:
    """Seed of the conditional sampler's re-noising draws: its own stream of the block seed."""
    return _seeds63([block.noise_seed, 0xC0DE], 1)[0]


def _seeds63(entropy: list[int], count: int) -> list[int]:
    """``count`` independent non-negative 63-bit seeds from one ``SeedSequence(entropy)``."""
    words = np.random.SeedSequence(entropy).generate_state(2 * count, dtype=np.uint32)
    return [((int(words[2 * i]) << 32) | int(words[2 * i + 1])) >> 1 for i in range(count)]


def decode(
    synth: BlockSampler,
    block: Block,
    x: np.ndarray | torch.Tensor,
    *,
    condition: CompiledConditions | None = None,
) -> pa.Table:
    """Encoded rows of ``block`` to the source's columns, with the block's own randomness.

    ``x`` as :func:`forward` returns it: a tensor decodes with the torch decode on its device,
    an array with NumPy (the same table either way). With ``condition``, the requested values
    are then written exactly (and verified).
    """
    at = {"seed": block.decode_seed, "row_offset": block.row_offset}
    if condition is None:
        return synth.transformer.decode(x, **at)
    # the request repairs orders itself once its given values are written (they never move)
    return condition.finish(block, synth.transformer.decode(x, **at, repair=False))


def iter_tables(
    synth: BlockSampler,
    n_rows: int,
    seed: int,
    *,
    block_rows: int = BLOCK_ROWS,
    noise: Noise | str = "cpu",
    condition: CompiledConditions | None = None,
) -> Iterator[pa.Table]:
    """Decoded tables of every block of an ``n_rows``-row sample, in row order."""
    for block in blocks(n_rows, seed, block_rows=block_rows):
        x = forward(synth, block, noise=noise, condition=condition)
        yield decode(synth, block, x, condition=condition)


def condition_rows(n_rows: int | None, condition: CompiledConditions | None) -> int:
    """Rows of a (conditional) sample: seed rows fix it (one output row per seed row)."""
    fixed = None if condition is None else condition.n_rows
    if fixed is None:
        if n_rows is None:
            raise InputError("number of rows is required (no seed rows were given)")
        return int(n_rows)
    if n_rows is not None and int(n_rows) != fixed:
        raise InputError(
            f"{n_rows} rows requested, but the seed rows hold {fixed}: one row is generated "
            "per seed row (leave the row count out, or make it match)"
        )
    return fixed
