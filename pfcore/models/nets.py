"""Networks: a plain SiLU MLP, and the time-conditioned velocity fields built on it.

Kept deliberately plain: on 2 CPU cores the sampler's cost is its matrix work (about
2 x params FLOP per row: a 4x512 one-step sampler ran at 34-48k rows/s on 2 cores), so width
and depth are the only knobs that matter for throughput, and they are config fields.

The flow teacher's velocity network has two optional alternatives (``FlowConfig.net`` and
``FlowConfig.num_embedding``), kept for comparison by ``benchmarks/design_sweep.py``:

- ``"resmlp"``: pre-LayerNorm residual blocks whose normalisation is scaled and shifted by an
  embedding of ``t`` in every block (adaptive LayerNorm, as in DiT and the TabSyn/TabDDPM
  denoisers), instead of ``t`` entering once, at the input.
- ``"periodic"`` numeric embedding: each numeric column also enters as
  ``ReLU(W_j [sin(2 pi c_j x_j), cos(2 pi c_j x_j)] + b_j)`` with learned frequencies ``c_j``
  (the PLR embedding of Gorishniy et al. 2022), which lets an MLP represent sharp functions of one
  column with few units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "PeriodicEmbedding",
    "ResVelocityNet",
    "TimeFeatures",
    "VelocityNet",
    "build_velocity_net",
    "count_parameters",
    "mlp_on_signed_onehots",
]

#: The velocity network designs ``build_velocity_net`` knows (``FlowConfig.net``).
VELOCITY_NETS = ("mlp", "resmlp")
#: The numeric input embeddings it knows (``FlowConfig.num_embedding``).
NUM_EMBEDDINGS = ("none", "periodic")


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` with SiLU, then a linear head.

    Shapes: ``(n, in_dim) -> (n, out_dim)``. The head starts at small weights so an untrained
    generator outputs near zero (near the data mean after encoding) instead of large values.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.SiLU()]
            d = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, out_dim)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def mlp_on_signed_onehots(
    mlp: MLP,
    dense: torch.Tensor,
    dims: torch.Tensor,
    after: torch.Tensor | None = None,
    after_inputs: tuple[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``mlp(cat([dense, 2 onehot - 1, after]))`` where the one-hots are given by their hot
    dims ``dims`` ``(n, K)`` (indices into the one-hot part), without building them.
    ``after_inputs``: ``(inputs after the one-hots, the indices among them that after's columns
    are)``, when ``after`` holds only some of them (the others are zero in every row).

    Why: the first layer is linear, so the one-hot part of its product is the sum of the hot
    dims' weight columns (times two, minus the sum of all of them for the -1s): ``K`` row
    lookups instead of a product over every one-hot dim. The hybrid's student reads 5 numbers
    and 104 one-hot dims on adult (238 on nyc_flights); this cut its forward by about 9% (10%)
    on one thread, the same numbers to float rounding (1e-6).
    """
    first = mlp.body[0]
    assert isinstance(first, nn.Linear)
    n_dense = dense.shape[1]
    n_after, cols = (0 if after is None else after.shape[1]), None
    if after_inputs is not None:
        n_after, cols = after_inputs
    end = first.in_features - n_after
    signed = first.weight[:, n_dense:end]
    table = (2 * signed).t().contiguous()
    weight = first.weight[:, :n_dense]
    if after is not None:
        dense = torch.cat([dense, after], dim=1)
        rest = first.weight[:, end:]
        weight = torch.cat([weight, rest if cols is None else rest[:, cols]], dim=1)
    h = torch.addmm(first.bias - signed.sum(dim=1), dense, weight.t())
    h += F.embedding_bag(dims, table, mode="sum")
    if torch.is_grad_enabled():
        return mlp.head(mlp.body[1:](h))
    # Sampling: activations in place (SiLU on 8192x256 floats: 1.40 ms, in place 0.85 ms on
    # one CPU thread; autograd would need the inputs they overwrite)
    for layer in mlp.body[1:]:
        h = F.silu(h, inplace=True) if isinstance(layer, nn.SiLU) else layer(h)
    return mlp.head(h)


class TimeFeatures(nn.Module):
    """``[t, sin(f t), cos(f t)]`` with fixed log-spaced frequencies ``f = pi 2^k``.

    Fourier features let a small network change its field sharply near ``t = 1`` where the
    data's fine structure appears. The frequencies are a non-persistent buffer, so they are not
    part of the saved state. Shapes: ``(n, 1) -> (n, 2 n_freqs + 1)``.
    """

    def __init__(self, n_freqs: int = 8) -> None:
        super().__init__()
        freqs = math.pi * (2.0 ** torch.arange(n_freqs, dtype=torch.float32))
        self.register_buffer("freqs", freqs, persistent=False)
        self.out_dim = 2 * n_freqs + 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        ang = t * self.freqs.to(t.dtype)
        return torch.cat([t, torch.sin(ang), torch.cos(ang)], dim=1)


class PeriodicEmbedding(nn.Module):
    """Appends a learned periodic embedding of every numeric input column to the input.

    Column ``j`` gets ``ReLU(W_j [sin(2 pi c_j x_j), cos(2 pi c_j x_j)] + b_j)`` with its own
    ``n_freqs`` frequencies ``c_j`` (initialised from N(0, sigma^2), then learned) and its own
    linear map to ``dim`` units; the raw input is kept beside it, so the network sees a superset
    of what the plain MLP sees. Numeric columns are quantile-normal (about N(0, 1)), and so is
    ``x_t`` at every ``t``, so one ``sigma`` suits every column. Shapes:
    ``(n, in_dim) -> (n, in_dim + len(numeric) * dim)``.
    """

    def __init__(
        self, in_dim: int, numeric: Sequence[int], n_freqs: int, dim: int, sigma: float
    ) -> None:
        super().__init__()
        m = len(numeric)
        self.register_buffer(
            "numeric", torch.tensor(list(numeric), dtype=torch.long), persistent=False
        )
        self.freqs = nn.Parameter(torch.randn(m, n_freqs) * sigma)
        bound = 1.0 / math.sqrt(2 * n_freqs)
        self.weight = nn.Parameter(torch.empty(m, 2 * n_freqs, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(m, dim).uniform_(-bound, bound))
        self.out_dim = in_dim + m * dim
        self.register_buffer("map_matrix", None, persistent=False)
        self.register_buffer("map_offset", None, persistent=False)

    @property
    def input_map(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(matrix, offset)`` set by :meth:`set_input_map`, or None."""
        if self.map_matrix is None:
            return None
        return self.map_matrix, self.map_offset

    def set_input_map(self, matrix: torch.Tensor, offset: torch.Tensor) -> None:
        """Embed the columns of ``x @ matrix + offset`` instead of ``x``'s own: a network that
        models decorrelated coordinates (``whiten.py``) still gets a periodic embedding of each
        source column, whose sharp one-column structure is what the embedding is for. Fixed,
        not saved (the owner sets it again after building the network)."""
        self.map_matrix = matrix.detach().clone()
        self.map_offset = offset.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.numeric.numel() == 0:
            return x
        return torch.cat([x, self.features(x)], dim=1)

    def features(self, x: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """The embedding of every embedded column ``(n, m * dim)``, or of the embedded columns
        ``cols`` (positions in ``numeric``) only, ``(n, len(cols) * dim)``."""
        src = x
        if self.map_matrix is not None:
            src = x @ self.map_matrix.to(x.dtype) + self.map_offset.to(x.dtype)
        numeric, freqs, weight, bias = self.numeric, self.freqs, self.weight, self.bias
        if cols is not None:
            numeric, freqs, weight, bias = numeric[cols], freqs[cols], weight[cols], bias[cols]
        xn = src[:, numeric].unsqueeze(2)  # (n, m, 1)
        ang = 2 * math.pi * xn * freqs.to(x.dtype)  # (n, m, k)
        feats = torch.cat([torch.sin(ang), torch.cos(ang)], dim=2)  # (n, m, 2k)
        return torch.relu(torch.einsum("nmk,mke->nme", feats, weight) + bias).flatten(1)


class _FieldInput(nn.Module):
    """What both velocity networks read: ``[x_t or its embedding, Fourier(t)[, c]]``.

    One place decides the input of a field (embedding, time features, where a condition goes),
    so the two designs cannot drift apart. Subclasses call :meth:`_init_input` and get the input
    width; the attributes it sets (``time``, ``embed``) keep their state-dict names.
    """

    def _init_input(
        self, dim: int, n_freqs: int, embed: PeriodicEmbedding | None, cond_dim: int
    ) -> int:
        self.time = TimeFeatures(n_freqs)
        self.dim = dim
        self.cond_dim = int(cond_dim)
        if embed is not None:
            self.embed = embed
        return (dim if embed is None else embed.out_dim) + self.time.out_dim + self.cond_dim

    def _input(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the concatenated input, the time features)."""
        h = self.embed(x) if hasattr(self, "embed") else x
        tf = self.time(t)
        parts = [h, tf]
        if self.cond_dim:
            if cond is None or cond.shape[-1] != self.cond_dim:
                raise ValueError(f"this velocity net needs a condition of width {self.cond_dim}")
            parts.append(cond.to(x.dtype))
        return torch.cat(parts, dim=1), tf


class VelocityNet(_FieldInput):
    """``v(x_t, t[, c])``: the MLP sees ``x_t`` concatenated with Fourier features of ``t``.

    With ``embed`` (a :class:`PeriodicEmbedding`), ``x_t`` is embedded first. With
    ``cond_dim > 0`` the field is conditional: a fixed ``c (n, cond_dim)`` (the hybrid family's
    discrete columns) is appended to the input; ``cond_dim = 0`` is the plain field with the same
    parameters as before. Shapes: ``x (n, d)``, ``t (n, 1)``.
    """

    def __init__(
        self,
        dim: int,
        width: int,
        depth: int,
        n_freqs: int = 8,
        embed: PeriodicEmbedding | None = None,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.net = MLP(self._init_input(dim, n_freqs, embed, cond_dim), dim, width, depth)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.net(self._input(x, t, cond)[0])


class _AdaBlock(nn.Module):
    """``h + W2 SiLU(W1 (LN(h) (1 + scale(c)) + shift(c)))``: a residual block modulated by ``c``.

    The modulation starts at zero (scale 0, shift 0), so an untrained block is a plain
    pre-LayerNorm residual block and ``t`` takes effect as it is learned.
    """

    def __init__(self, width: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mod = nn.Linear(cond_dim, 2 * width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        with torch.no_grad():
            self.mod.weight.zero_()
            self.mod.bias.zero_()

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.mod(c).chunk(2, dim=1)
        u = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(torch.nn.functional.silu(self.fc1(u)))


class ResVelocityNet(_FieldInput):
    """``v(x_t, t)`` from ``depth`` residual blocks of ``width``, each modulated by ``t``.

    The input layer sees ``[x_t (or its embedding), Fourier(t)[, c]]`` as in
    :class:`VelocityNet`; an embedding of ``t`` (``time_dim`` units) also scales and shifts the
    LayerNorm of every block, so the field can change its shape with ``t`` at every depth, not
    only through what survives from the input. Each block has two ``width x width`` layers:
    ``depth`` blocks cost about as much as a plain MLP of ``2 depth`` layers.
    """

    def __init__(
        self,
        dim: int,
        width: int,
        depth: int,
        n_freqs: int = 8,
        embed: PeriodicEmbedding | None = None,
        time_dim: int = 128,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.inp = nn.Linear(self._init_input(dim, n_freqs, embed, cond_dim), width)
        self.cond = nn.Sequential(
            nn.Linear(self.time.out_dim, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
            nn.SiLU(),
        )
        self.blocks = nn.ModuleList(_AdaBlock(width, time_dim) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, dim)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        inp, tf = self._input(x, t, cond)
        c = self.cond(tf)
        h = self.inp(inp)
        for block in self.blocks:
            h = block(h, c)
        return self.head(torch.nn.functional.silu(self.out_norm(h)))


def build_velocity_net(
    dim: int,
    numeric: Sequence[int],
    *,
    net: str = "mlp",
    width: int = 512,
    depth: int = 4,
    num_embedding: str = "none",
    embedding_freqs: int = 16,
    embedding_dim: int = 16,
    embedding_sigma: float = 1.0,
    cond_dim: int = 0,
) -> VelocityNet | ResVelocityNet:
    """The velocity network a flow config names; ``numeric``: positions of numeric columns;
    ``cond_dim``: width of a condition appended to the input (0: an unconditional field).

    ``net="mlp"`` with ``num_embedding="none"`` is the original network, with the original
    state-dict keys, so models saved before these options load unchanged.
    """
    if net not in VELOCITY_NETS:
        raise ValueError(f"unknown velocity net {net!r}; choose one of {VELOCITY_NETS}")
    if num_embedding not in NUM_EMBEDDINGS:
        raise ValueError(f"unknown numeric embedding {num_embedding!r}; choose {NUM_EMBEDDINGS}")
    embed = None
    if num_embedding == "periodic":
        embed = PeriodicEmbedding(dim, numeric, embedding_freqs, embedding_dim, embedding_sigma)
    if net == "resmlp":
        return ResVelocityNet(dim, width, depth, embed=embed, cond_dim=cond_dim)
    return VelocityNet(dim, width, depth, embed=embed, cond_dim=cond_dim)


def embed_given(
    embed: PeriodicEmbedding,
    known: torch.Tensor,
    mask: torch.Tensor,
    cols: torch.Tensor | None = None,
) -> torch.Tensor:
    """The periodic embedding of each given value of ``known`` ``(n, m)``, zero where ``mask``
    ``(n, m)`` does not give it: ``(n, m * dim)``, the extra input of the networks that take
    given numbers (``GivenNumbersField``, ``ConditionalStudent``). ``cols``: only those
    columns' embeddings ``(n, len(cols) * dim)`` (a request gives the others in no row)."""
    units = embed.weight.shape[-1]
    if cols is None:
        return embed.features(known) * mask.repeat_interleave(units, dim=1)
    return embed.features(known, cols) * mask[:, cols].repeat_interleave(units, dim=1)


class GivenNumbersField(nn.Module):
    """``v(x_t, t | d, given numbers)``: a velocity net whose condition ``[d, known * m, m]``
    (``n_num`` given-number slots after ``d``) also reaches it through a periodic embedding of
    each given number (zero where not given), appended to the condition.

    Why: the unconditional teacher owes its sharp one-column structure to the periodic
    embedding of its inputs; a given number that enters only as a raw input is a smooth
    signal, and a condition such as a longitude pins the latitude to a few narrow bands.
    ``embed`` starts as a copy of the teacher's own embedding (same features for the same
    column values), without its input map: given numbers are source columns already.
    """

    def __init__(self, net: nn.Module, embed: PeriodicEmbedding | None, n_num: int) -> None:
        super().__init__()
        self.net = net
        self.n_num = int(n_num)
        self.dim = net.dim
        self.embed = embed
        self.cond_dim = net.cond_dim - (0 if embed is None else embed.out_dim - self.n_num)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.embed is None:
            return self.net(x, t, cond)
        n = self.n_num
        emb = embed_given(self.embed, cond[:, -2 * n : -n], cond[:, -n:])
        return self.net(x, t, torch.cat([cond, emb], dim=1))


def copy_with_more_inputs(target: nn.Module, source: nn.Module) -> None:
    """Load ``source``'s weights into ``target``, the same network with extra inputs appended
    at the end of its first layer's input (a velocity net with a wider condition): the old
    input columns are copied and the new ones start at zero weight, so until trained
    ``target`` computes what ``source`` does whatever the new inputs hold."""
    own = target.state_dict()
    for key, value in source.state_dict().items():
        if own[key].shape == value.shape:
            own[key] = value.clone()
        elif own[key].ndim == 2 and own[key].shape[0] == value.shape[0]:
            widened = torch.zeros_like(own[key])
            widened[:, : value.shape[1]] = value
            own[key] = widened
        else:
            raise ValueError(f"{key}: cannot widen {tuple(value.shape)} to {tuple(own[key].shape)}")
    target.load_state_dict(own)


def count_parameters(module: nn.Module) -> int:
    """Trainable and frozen parameters of ``module`` (sampling cost is about twice this per row)."""
    return sum(p.numel() for p in module.parameters())
