"""The hybrid family's conditional sampler: any given columns in, the other columns drawn.

Why two networks and not rejection or inpainting: the hybrid draws a row in a fixed order
(discrete columns one after the other, then the numbers given all of them), so it can only
condition on a prefix of that order. A request gives an arbitrary subset of columns (a
category, a numeric range, half of a seed row), so the sampler needs each missing column's law
given *any* subset. Two mask-conditioned networks supply it, trained after the unconditional
parts on the data rows with random masks of whole source columns
(``cond_student.random_masks``: half the rows give one column, half give each column with a
probability drawn per row; for the any-order network the given numbers and the given classes
come from two such draws, :func:`_mask_sampler`):

1. :class:`AnyOrderDiscrete` gives the logits of every discrete column given the known
   discrete columns and the known numbers (its inputs are the values times the mask, and the
   mask). Trained by maximum likelihood on the missing columns only. Sampling draws the missing
   discrete columns one after the other in block order, each given everything known so far, by
   inverse CDF from that column's own latent coordinate (``u = Phi(z_c)``, as the unconditional
   sampler does): one forward per missing discrete column, never a retry, so a rare category
   costs what a frequent one does. In a row that gives no number it only draws the missing
   columns before the row's last given one: the later ones come from the unconditional
   network, whose draws after a given prefix of its order are its exact conditional law
   (``_unconditional_tail``). Both keep the class links of the unconditional network
   (``autoregressive.find_links``), whichever end of a link is drawn second. A latent cell
   some of whose numbers a request gives comes with evidence (each cell's law of those
   numbers, ``Cells.log_evidence``): the network draws it first, the evidence added to its
   logits (:meth:`AnyOrderDiscrete.sample`).
2. The numbers: when no numeric column is given, the unconditional student ``(z_num, d) ->
   x_num`` already is the law of the numbers given the (now complete) discrete row. When some
   are given, by default (``conditional_linear_move``) no network is trained for them: the
   row's own latent point is moved by two Newton steps along a least-squares line through the
   student (``latent_move.py``, :meth:`HybridModel.newton_point`) and the numbers are the
   student's there, the given ones then set as below; on the same saved fits that came closer
   than the mover described next (california_housing's seed rows 0.654 -> 0.604, nyc_flights'
   0.751 -> 0.742, the others level; ``benchmarks/results/conditional_newton.json``) at the
   cost of one more student pass. With ``conditional_linear_move=False`` (or
   ``conditional_teacher``) and ``conditional_mover`` a small network moves the row's latent point,
   ``z' = z_num + M(z_num, d, mask, known)``, and the numbers are the unconditional student's
   at ``z'`` (:meth:`HybridModel.cond_white`); the given ones are then set and the others
   follow the small rest along the data's linear relations (``given_numbers``). ``M`` is a
   :class:`~pfcore.models.cond_student.ConditionalStudent` whose output is read as the move
   (its head at zero: no move, the student's own rows, at step 0), trained by the energy score
   of the student's whole row at ``z'`` against the data row, given numbers included: its
   minimiser moves the point to where the student itself gives the requested numbers, so the
   numbers drawn beside them keep the student's own relations to them and to each other (a
   coastline of longitudes and latitudes), which a network drawing them itself had to learn
   again in the 13-20 s it gets. Why: on the fits of
   ``benchmarks/results/conditional_default_white.json`` the seed rows of california_housing
   scored 0.848 detection AUC against the model's own rows' 0.629, and the pairs that gave them
   away were drawn longitude against drawn latitude (0.752) and the given bedrooms against the
   drawn households (0.732: 1% of the real rows have households above 1.16 times the
   bedrooms, 16% of the drawn ones; the mover's 14%, a miss it leaves). The network drawing
   the numbers itself had learnt little beyond its starting point in those seconds (taken
   untrained, 0.869), most of the conditioning came from the linear move of
   ``given_numbers``, and that move smeared the coastline: without it the untrained network's
   longitude~latitude pair scored 0.693, with it 0.766. Refitted on those fits for the seconds
   each gave the network (``benchmarks/results/conditional_mover.json``,
   ``benchmarks/numbers_given_refit.py``; the mover 128 wide, in brackets 256): seed rows
   california_housing 0.848 -> 0.815 (0.811), nyc_flights 0.877 -> 0.835 (0.846), diamonds
   0.621 -> 0.608 (0.606), credit_default 0.798 -> 0.794 (0.801), adult 0.487 all three;
   numeric ranges nyc_flights 0.783 -> 0.770 (0.770), diamonds 0.754 -> 0.741 (0.749),
   california_housing 0.783 -> 0.788 (0.786). It costs a forward of the mover beside the
   student's: those requests sampled at 64-94% of the unconditional rows/s (before: 69-103%).
   Each part alone did not do it (california_housing, 256 wide, same seconds): the mover
   scored on the row after the given numbers are set 0.838, the network
   drawing the numbers itself scored on its whole row 0.845, at the mover's learning rate too;
   the rate matters for the mover (2e-3: 0.830, 6e-3: 0.805 and 0.804 over two seeds).
   Without ``conditional_mover`` a :class:`~pfcore.models.cond_student.ConditionalStudent`
   draws the numbers itself: over the numeric dims,
   its input ``[z_num, d]`` plus the numeric mask, the known numbers and a periodic embedding
   of each known number (``conditional_embed``; a raw number is too smooth a signal for a
   condition that pins another column to narrow bands), warm-started from that
   student (new inputs at zero weight), is trained with the energy score (a strictly proper
   scoring rule: its minimiser is the conditional law, for every mask at once; its distance
   taken in the whitened coordinates, ``conditional_white_score``) plus the distillation
   pairs as anchor. Skipping that network, the unconditional student's numbers
   moved to the given ones along the data's linear relations (:meth:`HybridModel.given_numbers`
   alone: Matheron's rule with the training rows' covariance) scored worse on all four requests
   of the benchmark below that give numbers, at the same fits: california_housing range 0.878
   against 0.873 and seed rows 0.875 against 0.863, diamonds 0.857 against 0.837 and 0.812
   against 0.759.

With ``conditional_teacher`` on, the numbers-given network learns from a teacher instead:
a copy of the flow teacher, its condition widened to the given numbers and mask (and a
periodic embedding of each given number, ``nets.GivenNumbersField``), is fine-tuned with
random masks (:func:`_fit_cond_teacher`), its endpoints for training rows with random given
numbers become pairs, and the network, which embeds the given numbers the same way (its
embedding starts as the teacher's), regresses onto them as the student does
(``_fit_numeric``). On a table whose numbers follow a curve the energy score alone leaves the
drawn number near its marginal after the same steps, and the distilled network follows the
curve (``tests/test_hybrid.py``). On the shared tables, at the 4-minute budget with
``conditional_share=0.6``: the numeric-range requests of california_housing / diamonds at
detection AUC 0.758 / 0.743 (energy-score network 0.858 / 0.821; the model's own unconditional
rows that meet the range 0.647 / 0.743), diamonds' seed rows 0.636 (0.739; own rows 0.671).
Without the embeddings the fine-tuned teacher's own ODE rows reached 0.802 / 0.778 and the
network 0.813 / 0.808: a given number entering as a raw input is too smooth a signal for a
condition that pins another column to narrow bands (the energy-score network now has that
embedding too, ``conditional_embed``; the teacher was not measured against it). It is off by
default because its time comes out of distillation
(``benchmarks/results/conditional_teacher.json``); at the default ``conditional_share`` it
gets 300-400 fine-tuning steps and the result was mixed (diamonds' range 0.833).

The "project" sampler (asked for by name, ``conditional_method="project"``) keeps the discrete
network and takes the numbers from the unconditional student at the row's latent point moved by
the least distance onto the given numbers (``latent_project.py``; the Gaussian latent's exact
conditional for a linear map): nothing is trained for it, so any saved hybrid runs it. On the
same four balanced 4-minute fits (``benchmarks/results/conditional_project.json``) it brought all
seven requests that give numbers closer to the real rows than the numbers-given network:
numeric ranges california_housing 0.852 -> 0.801, diamonds 0.839 -> 0.808, nyc_flights
0.900 -> 0.884; seed rows 0.859 -> 0.759, 0.779 -> 0.693, credit_default 0.837 -> 0.718,
nyc_flights 0.918 -> 0.894 (the model's own unconditional rows that meet those conditions: 0.710,
0.782, 0.842; 0.654, 0.694, 0.696, 0.850). What is left on the ranges is mostly the discrete
columns drawn given the number: the same move (started from a learnt guess) scored 0.754 and
0.770 on california_housing and diamonds with the real rows' discrete columns given beside the
range, against 0.787 and 0.811 with them drawn. Its cost is
``PROJECT_ITERS`` Gauss-Newton iterations (a forward pass and one backward pass per given
column each): 13-18% of the unconditional rows/s on a range, 6-11% on seed rows, so it is not
what "auto" runs.

Given values are written back exactly after the networks; rows stay one deterministic function
of ``(z, known, mask)``. With whitened numeric dims (``whiten.py``) the student's output mixes
the columns when decoded, so the numbers not given are first moved along the data's linear
relations to the given values (``HybridModel.given_numbers``), in training and in sampling: on
diamonds a range on carat then scored 0.837 instead of 0.881 and seed rows 0.765 instead of 0.814.

Measured (``benchmarks/conditional.py --quick --family hybrid --step-budget 3000 2000 2000``,
18 requests on the four shared tables: a frequent and a rare category, a numeric range, seed rows
with half of the columns removed, rebalancing): conditional detection AUC below the one-step
family's mask-conditioned student on 17, within 0.05 of the model's unconditional AUC on 13
(the student: 11), at 58-109% of the unconditional rows/s on a loaded machine. The numbers drawn
beside given ones go through a marginal map of their own (:func:`_fit_cond_marginal`); on the
requests that give numbers it was a wash in that benchmark (numeric range and seed rows within
0.016 either way of the same fits without it), so its case is the principle and the test that
a miscalibrated network is corrected. The any-order network is one hidden layer
(``conditional_width``, 256): at 2000 steps a 512-wide layer's held-out NLL of the missing
columns was within 0.002 (credit_default) and 0.01 nats (diamonds) of a 256x2 network's, with
the same conditional AUC, and one layer is what lets a drawn column update the first layer
instead of re-running it; at equal seconds 256 wide beat 512 wide
(``HybridConfig.conditional_width``). Its given numbers enter as raw inputs and through 8
equally likely bins each (``conditional_number_bins``, :meth:`AnyOrderDiscrete.number_inputs`):
a piecewise linear encoding, a few more inputs of the first layer, which lets one layer turn a
class on over a narrow stretch of a number. On King County, a table not tuned on, asked for
the 60th-90th percentile of the price, the classes drawn alone scored 0.625 detection AUC
against the model's own rows in the range 0.537 (zip code total variation 0.106 against
0.031): the classes, not the numbers beside them, were what fell short (the real classes of
those rows given with the range: 0.600 for the whole row, the drawn ones 0.649). Only this
network refitted on six saved 4-minute fits for the seconds they gave it
(``benchmarks/results/conditional_number_bins.json``): King County's range 0.657 -> 0.632 and
0.644 -> 0.632, its seed rows 0.645 -> 0.624 and 0.639 -> 0.612, the shared tables' eleven
requests that use the network within 0.01 either way; a step costs what it did (fresh
4-minute fits of the six: 7.8-21.5 ms a step with the bins, 8.4-21.7 ms in the fits before).
Fresh fits with the bins, against those fits: King County's range 0.620 and 0.617, seed rows
0.598 and 0.621, within 0.05 of the unconditional rows for the first time. A periodic embedding of
each given number instead (16 frequencies, 16 units per column, the flow's) brought
california_housing's and diamonds' ranges 0.016-0.054 closer but halved the steps, and
credit_default's and nyc_flights' requests came 0.01-0.07 further
(``benchmarks/results/conditional_embed_discrete.json``).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from pfcore.models.autoregressive import (
    banned_by,
    draw_linked,
    links_by_column,
    set_marginal_bias,
)
from pfcore.models.base import BlockSpec, OneHotIndex, row_pieces
from pfcore.models.cond_student import (
    ConditionalStudent,
    column_groups,
    energy_score,
    random_masks,
)
from pfcore.models.latent_project import project_latent
from pfcore.models.nets import (
    MLP,
    GivenNumbersField,
    PeriodicEmbedding,
    copy_with_more_inputs,
    mlp_on_signed_onehots,
)

if TYPE_CHECKING:  # type-only: hybrid.py imports this module
    from pfcore.models.hybrid import HybridConfig, HybridModel
    from pfcore.models.phase import PhaseData
    from pfcore.models.progress import ProgressCallback

__all__ = [
    "AnyOrderDiscrete",
    "distill_loss",
    "fit_conditional",
    "hybrid_conditional_push",
    "numeric_index",
]


def numeric_index(n_num: int) -> OneHotIndex:
    """The index of the continuous part's own layout: ``n_num`` numeric dims, no one-hot."""
    return OneHotIndex([BlockSpec(f"n{i}", "numeric", i, 1) for i in range(n_num)])


def distill_loss(huber: float, n_num: int, device: torch.device) -> Callable:
    """The student's loss against the flow's endpoints: Huber with threshold ``huber`` (in the
    whitened units the student outputs), or mean squared error when ``huber`` is 0.

    Why Huber: where the flow splits latent space between two modes the endpoints jump, and a
    small network cannot follow the jump. Squared error gives the pairs it cannot fit the
    largest gradients and averages across the jump; past the threshold Huber weighs them like
    absolute error (a median: one side of the jump). That is why it was tried; what decided is
    the measurement, with one fitted teacher per table (same 70 s of distillation, 256x3 student,
    seed 0, two runs): detection AUC california_housing 0.684 and 0.690 against 0.696 and 0.705,
    diamonds 0.694 and 0.697 against 0.701 and 0.711 (``benchmarks/student_lab.py``), although
    its squared error on the pairs is higher (diamonds 0.020 against 0.005).
    """
    from pfcore.models.losses import BlockLoss

    if not huber:
        return BlockLoss(numeric_index(n_num).to(device), n_num, weighting="dims", softmax=False)

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(pred, target, beta=huber)

    return loss


class AnyOrderDiscrete(nn.Module):
    """Logits of ``K`` one-hot columns (``widths``) given any subset of them and of ``n_num``
    numbers: an MLP on ``[d01 * m, m_col, x_num * m_num, m_num, bins(x_num) * m_num]``
    (``(n, D + K + (2 + bins) n_num)``; :meth:`number_inputs` for the numbers' part)."""

    def __init__(
        self, widths: Sequence[int], n_num: int, width: int, depth: int, bins: int = 0
    ) -> None:
        super().__init__()
        self.widths = [int(w) for w in widths]
        self.n_num = int(n_num)
        self.bins = int(bins)
        self.dim = sum(self.widths)
        self.starts = [sum(self.widths[:c]) for c in range(len(self.widths))]
        col = torch.tensor([c for c, w in enumerate(self.widths) for _ in range(w)])
        self.register_buffer("col_of_dim", col, persistent=False)
        lo, span = number_bins(self.bins)
        self.register_buffer("bin_lo", lo, persistent=False)
        self.register_buffer("bin_span", span, persistent=False)
        k = len(self.widths)
        self.mlp = MLP(self.dim + k + (2 + self.bins) * self.n_num, self.dim, width, depth)

    def number_inputs(self, x_num: torch.Tensor, mn: torch.Tensor) -> torch.Tensor:
        """The given numbers' inputs ``(n, (2 + bins) n_num)``: each number times its mask
        bit, the mask, then each number's piecewise linear encoding over ``bins`` bins
        (:func:`number_bins`: 0 below a bin, 1 above it, linear inside) times its mask bit.

        Why the bins: one hidden layer reads a raw number as one smooth signal, and the classes
        of a row often turn on narrow stretches of a number (King County's zip codes along its
        price). The bins give the first layer a weight per stretch at the cost of a few inputs
        per number, where a periodic embedding (a small layer per number) halved the steps the
        network makes in its seconds."""
        x = x_num.to(mn.dtype)
        parts = [x * mn, mn]
        if self.bins:
            enc = ((x.unsqueeze(2) - self.bin_lo) / self.bin_span).clamp(0.0, 1.0)
            parts.append((enc * mn.unsqueeze(2)).flatten(1))
        return torch.cat(parts, dim=1)

    def forward(
        self, d01: torch.Tensor, m_col: torch.Tensor, x_num: torch.Tensor, m_num: torch.Tensor
    ) -> torch.Tensor:
        mc = m_col.to(d01.dtype)
        mn = m_num.to(d01.dtype)
        parts = [d01 * mc[:, self.col_of_dim], mc, self.number_inputs(x_num, mn)]
        return self.mlp(torch.cat(parts, dim=1))

    def nll(
        self, d01: torch.Tensor, m_col: torch.Tensor, x_num: torch.Tensor, m_num: torch.Tensor
    ) -> torch.Tensor:
        """Mean ``-log p(x_c | known)`` over the missing (row, column) pairs.

        Every column's log-sum-exp at once, summed per column with ``index_add`` over the
        dims' column index, instead of one cross-entropy per column: the same loss (to float
        rounding) in fewer, larger kernels. In credit_default's 4-minute fit (10 discrete
        columns, bf16) the phase made 2,382 steps in 13 s where it made 1,253 in 12 s, and the
        category-given requests scored 0.02-0.03 lower detection AUC (one seed each,
        ``benchmarks/results/conditional_balanced.json``); nyc_flights' steps cost the same
        (its 4k-class output layer is the time)."""
        logits = self.forward(d01, m_col, x_num, m_num).float()
        n, k = logits.shape[0], len(self.widths)
        col = self.col_of_dim
        # each column's own maximum (a row-wide one could underflow a whole column's exp)
        top = logits.new_full((n, k), -torch.inf)
        top = top.scatter_reduce(1, col.expand(n, -1), logits.detach(), reduce="amax")
        sums = logits.new_zeros(n, k).index_add_(1, col, (logits - top[:, col]).exp())
        picked = logits.new_zeros(n, k).index_add_(1, col, logits * d01.float())
        ce = sums.log() + top - picked
        missing = (~m_col).float()
        return (ce * missing).sum() / missing.sum().clamp(min=1)

    @torch.no_grad()
    def sample(
        self,
        u: torch.Tensor,
        given: torch.Tensor,
        m_col: torch.Tensor,
        x_num: torch.Tensor,
        m_num: torch.Tensor,
        links: torch.Tensor | None = None,
        skip: torch.Tensor | None = None,
        bans: list[list[tuple[int, torch.Tensor]]] | None = None,
        evidence: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The one-hot dim (``starts[c]`` + class, ``(n, K)``, as ``DiscreteAR.draw`` returns)
        of every column: the given class where ``m_col``, else drawn in block order, each by
        inverse CDF at ``u[:, c]`` from its law given everything known so far. ``given``
        (``(n, K)``, the same layout) holds the given classes where ``m_col``. ``skip``
        ``(n, K)``: missing columns left at their first dim (another sampler draws them after
        these).

        ``links``: the unconditional network's class links (``find_links``, ``(L, 2)`` one-hot
        dims), enforced here too: a column drawn after its linked column (given or drawn) takes
        the linked class exactly when that column has its class. ``bans``: its banned class
        pairs, both ways (``DiscreteAR.ban_tables(both_ways=True)``), likewise: a column drawn
        second never takes a class the other's class rules out.

        ``evidence``: column -> ``(n, classes)`` log-weights added to that column's logits
        (a latent cell weighed by its law of the given numbers, ``Cells.log_evidence``); those
        columns are drawn first, so every other missing column is drawn given them. Why first:
        a cell sums up its numbers more sharply than the raw given numbers the network reads.
        On credit_default's seed rows (a saved fit whose network had 1,160 steps; three
        sampling seeds) the cells drawn last, as before, scored 0.739 detection AUC, drawn
        first 0.708, first with the evidence 0.690; california_housing and diamonds moved by
        at most 0.007, within their seeds' spread. Taking the given numbers out of the
        network's input for those columns, so they are not counted twice, scored the same
        (0.691).

        Rows go through in chunks of ``SAMPLE_CHUNK`` so that each column's activations stay in
        cache: the per-column work is a few passes over ``(rows, width)`` activations, which on
        a CPU costs memory traffic more than arithmetic.
        """
        first = self.mlp.body[0]
        assert isinstance(first, nn.Linear)
        device = given.device
        starts = torch.tensor(self.starts, device=device)
        dims = torch.where(m_col, given, starts)
        if links is None:
            links = torch.zeros(0, 2, dtype=torch.long, device=device)
        column_links = links_by_column(links.long(), self.widths, both_ways=True)
        tables = bans if bans is not None else [[] for _ in self.widths]
        lookups = self._drawn_tables(first.weight)
        table = torch.cat(lookups)
        offsets = torch.tensor(
            [0, *itertools.accumulate(w + 1 for w in self.widths)][:-1], device=device
        )
        # a given class's row of ``table`` is its dim plus ``shift``; ``zero`` is each column's
        # zero row
        shift = offsets - starts
        zero = offsets + torch.tensor(self.widths, device=device)
        todo = ~m_col if skip is None else ~m_col & ~skip
        for lo in range(0, u.shape[0], SAMPLE_CHUNK):
            sl = slice(lo, lo + SAMPLE_CHUNK)
            if not bool(todo[sl].any()):
                continue
            self._fill_rows(
                u[sl],
                dims[sl],
                m_col[sl],
                todo[sl],
                x_num[sl],
                m_num[sl],
                column_links,
                tables,
                (lookups, table, shift, zero),
                {c: w[sl] for c, w in (evidence or {}).items()},
            )
        return dims

    def _drawn_tables(self, weight: torch.Tensor) -> list[torch.Tensor]:
        """Per column, ``(classes + 1, width)``: what drawing each class adds to the first
        layer's pre-activation (its one-hot weight plus the column's mask bit), and a last row
        of zeros for rows that do not draw the column. One row lookup per drawn column: on one
        CPU thread 0.08-0.09 ms per 2,048 rows at 2-41 classes and 256 units, where the product
        with the one-hot took 0.11-0.50 ms and the lookup of the unfolded weights plus two
        additions 0.7 ms."""
        out = []
        for c, (s, w) in enumerate(zip(self.starts, self.widths, strict=True)):
            drawn = weight[:, s : s + w].t() + weight[:, self.dim + c]
            out.append(torch.cat([drawn, drawn.new_zeros(1, drawn.shape[1])]).contiguous())
        return out

    def _fill_rows(
        self,
        u: torch.Tensor,
        dims: torch.Tensor,
        m_col: torch.Tensor,
        todo: torch.Tensor,
        x_num: torch.Tensor,
        m_num: torch.Tensor,
        column_links: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        tables: list[list[tuple[int, torch.Tensor]]],
        lookups: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor],
        evidence: dict[int, torch.Tensor],
    ) -> None:
        """:meth:`sample` on one chunk, writing the drawn dims into ``dims`` (a view of
        :meth:`sample`'s own tensor). The first layer is linear in the inputs, so a given or
        drawn class of column ``c`` only adds its weights and the column's mask bit to the first
        layer's pre-activation (one row of ``lookups``, :meth:`_drawn_tables`): the given
        classes enter by one ``embedding_bag`` over the columns some row gives (the concatenated
        tables, a class's row at its dim plus ``shift``; a row that does not give a column reads
        its ``zero`` row), the
        given numbers by one product, and each drawn column then costs the deeper layers plus
        its own logits, not a full forward. No ``rows x one-hot dims`` input is built: on UCI
        Adult (355 one-hot dims) building it, twice masked, took 0.25 s of the 0.33 s that
        drawing one missing column cost per 100k rows.

        A column's logits are ``W_c h^T`` rather than ``h W_c^T`` (a product with few outputs
        runs faster with them as rows: credit_default's network, 18 columns, 512 wide, 2,048
        rows, one thread, 10.5 -> 8.0 ms for all 18 heads)."""
        per_column, table, shift, zero = lookups
        m_col = m_col.clone()
        first, rest, head = self.mlp.body[0], self.mlp.body[1:], self.mlp.head
        assert isinstance(first, nn.Linear)
        n, k = len(u), len(self.widths)
        if bool(m_num.any()):
            nums = self.number_inputs(x_num, m_num.to(first.weight.dtype))
            pre = torch.addmm(first.bias, nums, first.weight[:, self.dim + k :].t())
        else:
            pre = first.bias.expand(n, -1).clone()
        given = m_col.any(dim=0).nonzero().flatten()
        if len(given):
            slot = torch.where(m_col[:, given], dims[:, given] + shift[given], zero[given])
            pre.add_(F.embedding_bag(slot, table, mode="sum"))
        order = [*evidence, *(c for c in range(k) if c not in evidence)]
        for c in order:
            w = self.widths[c]
            need = todo[:, c]
            n_need = int(need.sum())
            if not n_need:
                continue
            s = self.starts[c]
            act = rest(pre)
            logits = torch.addmm(head.bias[s : s + w, None], head.weight[s : s + w], act.t()).t()
            if c in evidence:
                logits = logits + evidence[c]
            others, their_dim, mine = column_links[c]
            known = m_col[:, others]  # (n, links of column c): is the other end given or drawn
            had = known & (dims[:, others] == their_dim)
            banned = banned_by(
                tables[c], lambda o: dims[:, o] - self.starts[o], lambda o: m_col[:, o]
            )
            drawn = draw_linked(logits, u[:, c], mine, had, known & ~had, banned)
            if n_need < len(need):
                drawn = torch.where(need, drawn, w)  # the zero row: those rows keep their input
                dims[:, c] = torch.where(need, drawn + s, dims[:, c])
            else:
                dims[:, c] = drawn + s
            pre.add_(F.embedding(drawn, per_column[c]))
            m_col[:, c] |= need


def number_bins(bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower ends, widths) of ``bins`` bins of an encoded number, equally likely under a
    standard normal (the encoded numbers' scale), the outer two closed at -3 and 3; empty
    for 0 bins. Fixed, not fitted: a saved network rebuilds them from its bin count."""
    if bins <= 0:
        return torch.zeros(0), torch.zeros(0)
    inner = torch.special.ndtri(torch.arange(1, bins, dtype=torch.float64) / bins)
    edges = torch.cat([torch.tensor([-3.0], dtype=torch.float64), inner, torch.tensor([3.0])])
    return edges[:-1].float(), (edges[1:] - edges[:-1]).float()


#: Rows per pass of the any-order sampler (credit_default, 10 discrete columns, a 256x2
#: network on one thread: 17.7k rows/s in one 65,536-row pass, 30k in 2,048-row chunks).
SAMPLE_CHUNK = 2048


def _masks(model: HybridModel, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (discrete-column mask ``(n, K)``, numeric mask ``(n, n_num)``) of an encoded
    mask ``(d,)`` or ``(n, d)``."""
    index = model._index
    assert index is not None
    m = mask.to(torch.bool)
    if m.ndim == 1:
        m = m.unsqueeze(0).expand(n, -1)
    firsts = [b.start for b in model.blocks if b.kind == "onehot"]
    return m[:, firsts], m[:, index.numeric]


def _given_classes(
    known: torch.Tensor,
    m_col: torch.Tensor,
    onehots: Sequence[tuple[int, int]],
    starts: Sequence[int],
) -> torch.Tensor:
    """``(n, K)`` one-hot dims (``starts[c]`` + class, the discrete network's layout) of the
    classes ``known`` (encoded rows) gives where ``m_col``; the other entries are arbitrary.
    Only the columns some row gives are read: the rows' ``n x D`` one-hots are never copied
    (on UCI Adult, 355 one-hot dims, splitting them off and rescaling them to 0/1 took 0.1 s
    per 100k rows)."""
    out = torch.zeros(m_col.shape, dtype=torch.long, device=known.device)
    for c in m_col.any(dim=0).nonzero().flatten().tolist():
        s, w = onehots[c]
        out[:, c] = known[:, s : s + w].argmax(dim=1) + int(starts[c])
    return out


#: Gauss-Newton iterations of the "project" sampler. On the numeric-range and seed-row requests
#: of california_housing and diamonds (same fits) 4 scored 0.801 / 0.759 / 0.808 / 0.693
#: detection AUC, 8 within 0.004 of that, 3 within 0.007 and 2 up to 0.014 further.
PROJECT_ITERS = 4


def _unconditional_tail(m_col: torch.Tensor, m_num: torch.Tensor) -> torch.Tensor:
    """``(n, K)``: the discrete columns the unconditional network draws, those after a row's
    last given one in rows that give no number. Given a prefix of its order that network's
    draws are the exact conditional law it learnt, and it fits the data better than the
    any-order network, which only draws the missing columns before the last given one."""
    order = torch.arange(m_col.shape[1], device=m_col.device)
    last = torch.where(m_col, order, -1).amax(dim=1, keepdim=True)
    return (order > last) & ~m_num.any(dim=1, keepdim=True)


def hybrid_conditional_push(model: HybridModel, project: bool = False) -> Any:
    """The ``ConditionalPush`` of a hybrid model that carries its conditional networks; with
    ``project`` the numbers beside given ones come from the unconditional student at the latent
    point moved onto the given numbers (``latent_project.py``) instead of the numbers-given
    network."""
    k, _d, n_num = model._dims()
    ar = model.ar
    links = ar.links if ar is not None and ar.use_links else None
    assert model._index is not None
    numeric = model._index.numeric
    onehots = [(b.start, b.width) for b in model.blocks if b.kind == "onehot"]

    column_of = {start: c for c, (start, _w) in enumerate(onehots)}

    def push(
        z: torch.Tensor,
        known: torch.Tensor,
        mask: torch.Tensor,
        seed: int,
        evidence: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``seed`` is unused: the rows are a function of ``z`` alone, so the batch may run in
        pieces (``base.row_pieces``) like the unconditional sampler. ``evidence`` (see
        ``ConditionalPush``) weighs the classes of the discrete columns it names, which the
        any-order network then draws first (:meth:`AnyOrderDiscrete.sample`)."""
        dev = model.device
        z, known, mask = z.to(dev).float(), known.to(dev).float(), mask.to(dev)
        n = z.shape[0]
        known = known.unsqueeze(0).expand(n, -1) if known.ndim == 1 else known
        mask = mask.unsqueeze(0).expand(n, -1) if mask.ndim == 1 else mask
        ev = {column_of[a]: w.to(dev).float() for a, w in (evidence or {}).items()}
        with torch.inference_mode():
            return torch.cat(
                [
                    piece(z[s], known[s], mask[s], {c: w[s] for c, w in ev.items()})
                    for s in row_pieces(n, z.device)
                ]
            )

    def piece(
        z: torch.Tensor,
        known: torch.Tensor,
        mask: torch.Tensor,
        evidence: dict[int, torch.Tensor],
    ) -> torch.Tensor:
        n = z.shape[0]
        m_col, m_num = _masks(model, mask, n)
        num_known = known.index_select(1, numeric)
        if k:
            assert model.cond_discrete is not None and ar is not None
            u = torch.special.ndtr(z[:, :k])
            tail = _unconditional_tail(m_col, m_num)
            hot = model.cond_discrete.sample(
                u,
                _given_classes(known, m_col, onehots, model.cond_discrete.starts),
                m_col,
                num_known,
                m_num,
                links,
                skip=tail,
                bans=ar.ban_tables(both_ways=True),
                evidence=evidence,
            )
            rows = tail.any(dim=1).nonzero().flatten()
            if len(rows):
                hot[rows] = ar.draw(u[rows], (hot[rows], ~tail[rows]))
        else:
            hot = None
        x_num = numbers(z[:, k:], hot, m_num, num_known) if n_num else None
        if x_num is not None:  # the given classes are in ``hot`` already
            x_num = model.class_mapped(x_num, hot)
            x_num = torch.where(m_num, num_known, x_num)
        return model.assemble_dims(hot, x_num, None)

    def numbers(
        z_num: torch.Tensor,
        hot: torch.Tensor | None,
        m_num: torch.Tensor,
        num_known: torch.Tensor,
    ) -> torch.Tensor:
        """The numbers of rows whose discrete columns have the hot dims ``hot`` (None when the
        table has no discrete column), given ``num_known`` where ``m_num``."""
        student = model.student
        assert student is not None
        assert model.numbers_sampler is not None

        def unconditional() -> torch.Tensor:  # the unconditional sampler's own numbers
            if hot is None:
                return model.student_numbers(student(z_num))
            return model.student_numbers(mlp_on_signed_onehots(student, z_num, hot))

        rows = m_num.any(dim=1)  # rows that give a number need the conditional student
        if not bool(rows.any()):
            return unconditional()
        if bool(m_num.all()):  # every number given: each sampler's output is written over
            return num_known
        if project:  # rows that give nothing keep their latent point: the student's own rows
            # the one-hots themselves: the lookup would save the (inference-mode) hot dims
            # for the backward passes of the projection
            d = z_num.new_zeros(len(z_num), 0) if hot is None else model.signed_onehots(hot)

            def f(q: torch.Tensor) -> torch.Tensor:
                return model.student_numbers(student(torch.cat([q, d], dim=1)))

            x = project_latent(f, z_num, num_known, m_num, iters=PROJECT_ITERS)[1]
            return model.given_numbers(x, num_known, m_num)
        given = model.cond_numbers(z_num, m_num, num_known, hot)
        x_num = given if bool(rows.all()) else torch.where(rows[:, None], given, unconditional())
        if model.cond_marginal is not None:
            free = rows.unsqueeze(1) & ~m_num  # the numbers drawn beside given ones
            x_num = torch.where(free, model.cond_marginal(x_num), x_num)
        return x_num

    return push


# ----------------------------------------------------------------------------- training
def fit_conditional(
    model: HybridModel,
    data: PhaseData,
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    callbacks: Sequence[ProgressCallback],
    *,
    budget_s: float,
) -> dict[str, Any]:
    """Train the conditional networks the model has: with Newton steps the line they move
    along (and the marginal map of their numbers) first, then the any-order network in what is
    left of ``budget_s``; else the any-order network in half of it and the numbers-given
    network in the rest. ``pairs`` are the distillation pairs (None without numeric dims).

    Why all of it with Newton steps: the line they move along and the map of their numbers
    take 1.5-4 s (california_housing / credit_default, one thread, beside another process),
    and the any-order network is short of steps on wide tables (credit_default's 560
    and nyc_flights' 654 of a 3,000-step cap in their half). Refitted with twice those seconds
    on four saved 4-minute fits (one per table, the same fits), credit_default's seed rows
    scored 0.741 detection AUC against 0.767, its rare ``EDUCATION=5`` 0.592 against 0.642,
    nyc_flights' seed rows 0.740 against 0.755, diamonds' rare ``clarity=I1`` 0.593 against
    0.625, california_housing's seed rows 0.576 against 0.590; the other requests moved by at
    most 0.012 either way."""
    import time

    t0 = time.perf_counter()
    summary: dict[str, Any] = {}
    if model.latent_move is not None:  # Newton steps: the line (seconds), no network for them
        assert pairs is not None
        summary["linear_move"] = _fit_linear_move(model, pairs[0], pairs[1])
        if model.cond_marginal is not None and model.config.calibrate:
            summary["cond_marginals"] = _fit_cond_marginal(model, data)
    if model.cond_discrete is not None:
        share = 0.5 if model.cond_numeric is not None else 1.0
        left = max(budget_s - (time.perf_counter() - t0), 1.0)
        summary["cond_discrete"] = _fit_discrete(model, data, callbacks, left * share)
    if model.cond_numeric is not None:  # never beside ``latent_move`` (numbers_by_newton)
        assert pairs is not None
        left = max(budget_s - (time.perf_counter() - t0), 1.0)
        masked = None
        if model.config.conditional_teacher and model.teacher is not None:
            t1 = time.perf_counter()
            field, summary["cond_teacher"] = _fit_cond_teacher(
                model, data, callbacks, left * COND_TEACHER_SHARE
            )
            t2 = time.perf_counter()
            masked = model.make_masked_pairs(field, data.x, budget_s=left * MASKED_PAIRS_SHARE)
            summary["masked_pairs"] = {
                "n": len(masked[0]),
                "asked": model.config.conditional_pairs,
                "seconds": round(time.perf_counter() - t2, 3),
            }
            known_embed = getattr(field.net, "embed", None)
            if model.cond_numeric.embed is not None and known_embed is not None:
                model.cond_numeric.embed.load_state_dict(known_embed.state_dict())
            left = max(left - (time.perf_counter() - t1), 1.0)
        summary["cond_numeric"] = _fit_numeric(model, data, pairs, callbacks, left, masked)
        if model.cond_marginal is not None and model.config.calibrate:
            summary["cond_marginals"] = _fit_cond_marginal(model, data)
    return summary


@torch.no_grad()
def _fit_cond_marginal(model: HybridModel, data: PhaseData) -> dict[str, Any]:
    """Fit ``model.cond_marginal``: the numbers the conditional student draws beside given
    ones, mapped to the data's marginals (``marginal.py``).

    Why this target: over training rows with random masks (as in training) and the masked
    numbers given, the drawn numbers of a perfect conditional network follow each column's
    data marginal, whatever the masks. So per column the map is fitted on the rows where that
    column is drawn, against the same rows' real values.
    """
    from pfcore.models.calibration import CALIBRATION_ROWS
    from pfcore.models.training import batch_index, seeded_generator

    cfg = model.config
    assert model.cond_marginal is not None
    x = data.x
    device = x.device
    d_all, num_all = model._split(x)
    n_num = num_all.shape[1]
    gen = seeded_generator(cfg.seed, device, salt=17)
    n = CALIBRATION_ROWS
    b = batch_index(len(x), n, gen, device)
    mask = random_masks(n, torch.arange(n_num, device=device), n_num, gen, device)
    z = torch.randn(n, n_num, generator=gen, device=device)
    d, known = d_all[b], num_all[b]
    out = torch.empty_like(known)
    with torch.inference_mode():
        for lo in range(0, n, 8192):
            sl = slice(lo, lo + 8192)
            out[sl] = model.cond_numbers(torch.cat([z[sl], d[sl]], dim=1), mask[sl], known[sl])
    return {"rows": n, **model.cond_marginal.fit(out, known, use=~mask)}


def _mask_sampler(model: HybridModel, device: torch.device) -> Any:
    """The any-order network's training masks: ``(n, K)`` discrete columns and ``(n, n_num)``
    numbers given, each from its own draw of :func:`random_masks`.

    Why two draws: the network draws the missing discrete columns before any missing number
    (the numbers-given network fills those afterwards), so at sampling the numbers it reads are
    the request's alone while the discrete columns it reads grow to all of them. One draw for
    both gave a row many numbers whenever it gave many discrete columns, so "every discrete
    column but one, one number" was rarely trained. On nyc_flights' 4-minute fit, asked for
    ``0 <= dep_delay <= 49``, the network's held-out NLL of ``hour`` given the real columns
    before it and the delay was 3.18 nats, worse than the column's marginal (the unconditional
    network: 2.47), and the drawn hours bunched at midday (total variation 0.35 from the real
    rows'); refitted for the same 12.8 s with two draws: 2.47 and 0.04."""
    groups, n_groups = column_groups(model.blocks)
    groups = groups.to(device)

    def draw(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        m_col = _masks(model, random_masks(n, groups, n_groups, gen, device), n)[0]
        m_num = _masks(model, random_masks(n, groups, n_groups, gen, device), n)[1]
        return m_col, m_num

    return draw


def _fit_discrete(
    model: HybridModel, data: PhaseData, callbacks: Sequence[ProgressCallback], budget_s: float
) -> dict[str, Any]:
    from pfcore.models.phase import Phase, run_scored_phase
    from pfcore.models.training import amp_enabled, autocast, batch_index, seeded_generator

    cfg = model.config
    net = model.cond_discrete
    assert net is not None
    x = data.x
    device = x.device
    d_all, num_all = model._split(x)
    d_all = (d_all + 1) / 2
    draw = _mask_sampler(model, device)
    gen = seeded_generator(cfg.seed, device, salt=12)
    set_marginal_bias(net.mlp.head.bias, d_all, net.widths)  # see DiscreteAR.init_marginals
    ref = data.valid if data.valid is not None and len(data.valid) >= 64 else x
    d_ev, num_ev = model._split(ref[: cfg.n_eval])
    d_ev = (d_ev + 1) / 2
    m_ev = draw(len(d_ev), seeded_generator(cfg.seed, device, salt=13))
    batch = min(cfg.batch_size, len(x))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.conditional_discrete_lr)
    use_amp = amp_enabled(cfg.amp, device)

    def step_fn(step: int) -> torch.Tensor:
        b = batch_index(len(x), batch, gen, device)
        m_col, m_num = draw(batch, gen)
        with autocast(device, use_amp):
            return net.nll(d_all[b], m_col, num_all[b], m_num).float()

    def eval_fn() -> float:
        with torch.no_grad():
            return float(net.nll(d_ev, m_ev[0], num_ev, m_ev[1]))

    phase = Phase(
        name="cond_discrete",
        max_steps=cfg.conditional_max_steps,
        budget_s=budget_s,
        lr=cfg.conditional_discrete_lr,
        network=("cond_discrete", net),
        push_fn=model._push_raw,
        step_fn=step_fn,
        optimizer=opt,
        generator=gen,
        eval_fn=eval_fn,
    )
    return run_scored_phase(model, data, phase, callbacks, "valid_nll_missing")


#: Shares of the numbers-given network's time for fine-tuning the conditional teacher and for
#: its pairs; distillation gets the rest.
COND_TEACHER_SHARE = 0.6
MASKED_PAIRS_SHARE = 0.2


def _fit_cond_teacher(
    model: HybridModel, data: PhaseData, callbacks: Sequence[ProgressCallback], budget_s: float
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune a copy of the flow teacher to take given numbers: its condition widened to
    ``[d, known * mask, mask]`` (``HybridModel.masked_cond``; the new inputs start at zero, so
    at step 0 it is the teacher), flow matching on training rows that each give a random
    non-empty set of numeric columns (``random_masks``). Returns its field and the summary.

    Why a copy and not one teacher trained with masks from the start: a teacher that spent 30%
    of its rows on given numbers lost its unconditional fidelity on california_housing
    (detection AUC of its own rows 0.555 -> 0.675, same 5-minute fit), which every request
    without given numbers pays for."""
    from pfcore.models.flow import VelocityField, train_field, velocity_net_for
    from pfcore.models.training import seeded_generator

    cfg = model.config
    assert model.teacher is not None
    x = data.x
    device = x.device
    d_all, num_all = model._split(x)
    n_num = num_all.shape[1]
    teacher_embed = getattr(model.teacher, "embed", None)
    known_embed = None
    cond_dim = d_all.shape[1] + 2 * n_num
    if teacher_embed is not None:
        known_embed = copy.deepcopy(teacher_embed)
        known_embed.map_matrix = known_embed.map_offset = None
        cond_dim += known_embed.out_dim - n_num
    with torch.random.fork_rng(devices=[]):
        base = velocity_net_for(cfg, n_num, range(n_num), cond_dim=cond_dim)
    copy_with_more_inputs(base, model.teacher)
    embed = getattr(base, "embed", None)
    if model.whitener is not None and embed is not None:
        embed.set_input_map(model.whitener.inverse_matrix, model.whitener.mean)
    net = GivenNumbersField(base, known_embed, n_num).to(device)
    field = VelocityField(net, numeric_index(n_num), cfg)
    groups = torch.arange(n_num, device=device)
    white = model.to_white(num_all)

    def cond_fn(b: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        m = random_masks(len(b), groups, n_num, gen, device)
        return model.masked_cond(d_all[b], num_all[b], m)

    ref = data.valid if data.valid is not None and len(data.valid) >= 64 else x
    d_ev, num_ev = model._split(ref[: cfg.n_eval])
    g_ev = seeded_generator(cfg.seed, device, salt=19)
    c_ev = model.masked_cond(d_ev, num_ev, random_masks(len(d_ev), groups, n_num, g_ev, device))
    w_ev = model.to_white(num_ev)

    def eval_fn() -> float:  # held-out flow-matching loss, the same noise and times every time
        with torch.no_grad():
            return float(field.loss(w_ev, seeded_generator(cfg.seed, device, salt=20), c_ev))

    summary = train_field(
        model,
        field,
        white,
        data,
        callbacks,
        budget_s=budget_s,
        phase="cond_teacher",
        push_fn=model._push_raw,
        cond_fn=cond_fn,
        max_steps=cfg.conditional_max_steps,
        eval_fn=eval_fn,
    )
    net.eval()
    model.cond_teacher = net
    return field, summary


def _fit_numeric(
    model: HybridModel,
    data: PhaseData,
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    callbacks: Sequence[ProgressCallback],
    budget_s: float,
    masked: tuple[torch.Tensor, ...] | None = None,
) -> dict[str, Any]:
    """Train the numbers-given network: the unconditional pairs as anchor, plus either the
    conditional teacher's endpoints ``masked`` (``HybridModel.make_masked_pairs``,
    regressed with the distillation loss) or, without them, the energy score on data rows."""
    from pfcore.models.losses import BlockLoss
    from pfcore.models.phase import Phase, run_scored_phase
    from pfcore.models.training import amp_enabled, autocast, batch_index, seeded_generator

    cfg = model.config
    net = model.cond_numeric
    assert net is not None and model.student is not None
    mover = cfg.conditional_mover
    if not mover:
        net.warm_start(model.student)
    x = data.x
    device = x.device
    d_all, num_all = model._split(x)
    n_num = num_all.shape[1]
    groups = torch.arange(n_num, device=device)
    z_p, d_p, x_p = pairs
    anchor_loss = BlockLoss(numeric_index(n_num).to(device), n_num, weighting="dims", softmax=False)
    gen = seeded_generator(cfg.seed, device, salt=14)
    batch = max(2, min(cfg.distill_batch_size, len(x)) // 2)
    n_anchor = max(2, batch // 2)
    empty = torch.zeros(n_num, dtype=torch.bool, device=device)
    zeros = torch.zeros(1, n_num, device=device)
    ref = data.valid if data.valid is not None and len(data.valid) >= 64 else x
    d_ev, num_ev = model._split(ref[: cfg.n_eval])
    g_ev = seeded_generator(cfg.seed, device, salt=15)
    m_ev = random_masks(len(d_ev), groups, n_num, g_ev, device)
    z_ev = torch.randn(2 * len(d_ev), n_num, generator=g_ev, device=device)
    lr = cfg.conditional_mover_lr if mover else cfg.conditional_lr
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    use_amp = amp_enabled(cfg.amp, device)
    if masked is not None:
        pair_loss = distill_loss(cfg.distill_huber, n_num, device)

    def score(z: torch.Tensor, d: torch.Tensor, num: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Mean energy score of two draws per row given ``(d, known numbers)``, in the whitened
        coordinates with ``conditional_white_score`` (see :class:`HybridConfig`). The mover's
        is the score of the student's whole row at the moved point, the given numbers too:
        its minimiser moves the point to where the student itself gives them, so the
        student's own relations carry them to the numbers it draws beside them."""
        n = len(num)
        mm, known = torch.cat([m, m]), torch.cat([num, num])
        zd = torch.cat([z, torch.cat([d, d])], dim=1)
        if mover:
            y = model.cond_white(zd, mm, known)
            return energy_score(y[:n], y[n:], model.to_white(num)).mean()
        y = model.cond_numbers(zd, mm, known)
        if cfg.conditional_white_score:
            y, num = model.to_white(y), model.to_white(num)
        return energy_score(y[:n], y[n:], num).mean()

    def anchored(a: torch.Tensor) -> torch.Tensor:
        """The anchor term: nothing given, the network's rows against the distillation pairs
        ``a`` (the unconditional student's own endpoints)."""
        out = model.cond_white(torch.cat([z_p[a], d_p[a]], dim=1), empty, zeros.expand(len(a), -1))
        return anchor_loss(out.float(), x_p[a])

    def distill_step() -> torch.Tensor:
        assert masked is not None
        a = batch_index(len(z_p), n_anchor, gen, device)
        c = batch_index(len(masked[0]), batch, gen, device)
        zc, dc, kc, mc, wc = (t[c] for t in masked)
        with autocast(device, use_amp):
            anchor = anchored(a)
            pred = model.cond_white(torch.cat([zc, dc], dim=1), mc, kc)
        return anchor + pair_loss(pred.float(), wc)

    def step_fn(step: int) -> torch.Tensor:
        if masked is not None:
            return distill_step()
        a = batch_index(len(z_p), n_anchor, gen, device)
        b = batch_index(len(x), batch, gen, device)
        m = random_masks(batch, groups, n_num, gen, device)
        z = torch.randn(2 * batch, n_num, generator=gen, device=device)
        with autocast(device, use_amp):
            anchor = anchored(a)
            es = score(z, d_all[b], num_all[b], m)
        return anchor + cfg.conditional_weight * es

    def eval_fn() -> float:
        with torch.no_grad():
            return float(score(z_ev, d_ev, num_ev, m_ev))

    phase = Phase(
        name="cond_numeric",
        max_steps=cfg.conditional_max_steps,
        budget_s=budget_s,
        lr=lr,
        network=("cond_numeric", net),
        push_fn=model._push_raw,
        step_fn=step_fn,
        optimizer=opt,
        generator=gen,
        eval_fn=eval_fn,
    )
    # the mover trains through the student, which stays as distilled: no gradients for it
    frozen = [p for p in model.student.parameters() if p.requires_grad] if mover else []
    for p in frozen:
        p.requires_grad_(False)
    try:
        return run_scored_phase(model, data, phase, callbacks, "valid_energy_score")
    finally:
        for p in frozen:
            p.requires_grad_(True)


@torch.no_grad()
def _fit_linear_move(model: HybridModel, z: torch.Tensor, d: torch.Tensor) -> dict[str, float]:
    """Fit ``model.latent_move`` on the unconditional student's own encoded numbers at the
    pairs' inputs ``(z, d)`` (the map the Newton steps move along, not the teacher's)."""
    from pfcore.models.latent_move import FIT_ROWS

    assert model.latent_move is not None
    n = min(len(z), FIT_ROWS)
    zn, dn = z[:n], d[:n]
    w = torch.cat(
        [model._student_at(zn[s : s + 8192], dn[s : s + 8192], None) for s in range(0, n, 8192)]
    )
    return model.latent_move.fit(zn, dn, model.from_white(w.float()))


#: Hidden layers of the latent mover (``conditional_mover``, ``conditional_mover_width`` wide).
MOVER_DEPTH = 2


def numbers_by_newton(cfg: HybridConfig) -> bool:
    """Whether a model of ``cfg`` draws the numbers beside given ones by Newton steps along a
    line through its student (``HybridModel.newton_point``) rather than by a numbers-given
    network: ``conditional_linear_move``, unless ``conditional_teacher`` asks for that
    network."""
    return bool(
        cfg.conditional_max_steps and cfg.conditional_linear_move and not cfg.conditional_teacher
    )


def build_networks(model: HybridModel) -> tuple[AnyOrderDiscrete | None, ConditionalStudent | None]:
    """The conditional networks a hybrid model's config and layout call for."""
    cfg = model.config
    if not cfg.conditional_max_steps:
        return None, None
    k, d, n_num = model._dims()
    widths = [b.width for b in model.blocks if b.kind == "onehot"]
    disc = (
        AnyOrderDiscrete(
            widths,
            n_num,
            cfg.conditional_width,
            cfg.conditional_depth,
            bins=cfg.conditional_number_bins,
        )
        if k
        else None
    )
    embed = None
    periodic_teacher = cfg.conditional_teacher and cfg.num_embedding == "periodic"
    if n_num and (cfg.conditional_embed or periodic_teacher):
        embed = PeriodicEmbedding(
            n_num, range(n_num), cfg.embedding_freqs, cfg.embedding_dim, cfg.embedding_sigma
        )
    if not n_num or numbers_by_newton(cfg):
        return disc, None
    if not cfg.conditional_mover:
        return disc, ConditionalStudent(
            n_num + d, n_num, cfg.student_width, cfg.student_depth, embed=embed
        )
    width = cfg.conditional_mover_width
    mover = ConditionalStudent(n_num + d, n_num, width, MOVER_DEPTH, embed=embed)
    with torch.no_grad():  # no move at step 0: the unconditional student's own rows
        mover.mlp.head.weight.zero_()
        mover.mlp.head.bias.zero_()
    return disc, mover
