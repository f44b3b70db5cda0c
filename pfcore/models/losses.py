"""Block-aware regression losses shared by the flow and the distilled student.

Why weighting matters: with plain per-dimension averaging, a one-hot block of width ``w`` counts
``w`` times as much as a numeric column, so on a table with wide categoricals (nyc_flights:
tailnum, dest, hour give ~200 of 252 encoded dimensions) almost all of the gradient goes to the
categoricals and the numeric columns, and their dependencies, learn slowly. ``"columns"`` gives
every source column (block) the same weight; ``"dims"`` is plain averaging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pfcore.models.base import OneHotIndex

if TYPE_CHECKING:
    from pfcore.models.onestep import OneStepConfig

__all__ = ["BlockLoss", "endpoint_loss"]


class BlockLoss:
    """``loss(pred, target, classes)``: MSE on numeric dims, CE (logits) or MSE on one-hot blocks.

    Arguments: ``index`` (the model's one-hot index), ``n_features``, ``weighting``
    (``"columns"`` or ``"dims"``), ``softmax`` (one-hot outputs are logits trained by
    cross-entropy on ``classes``; otherwise regressed like numeric dims) and
    ``categorical_weight`` (extra factor on the one-hot terms).
    """

    def __init__(
        self,
        index: OneHotIndex,
        n_features: int,
        *,
        weighting: str,
        softmax: bool,
        categorical_weight: float = 1.0,
    ) -> None:
        self.index = index
        self.softmax = softmax and index.has_onehot
        self.cat_w = categorical_weight
        n_num = len(index.numeric)
        group_blocks = [idx.shape[0] for _w, idx in index.groups]
        n_blocks = n_num + sum(group_blocks)
        d = n_features
        if weighting == "columns":
            self.num_w = n_num / n_blocks
            self.group_w = [b / n_blocks for b in group_blocks]
        else:
            self.num_w = n_num / d
            self.group_w = [idx.numel() / d for _w, idx in index.groups]
        # Per-dimension weights for the all-MSE form (mean over dims of w_j * err_j^2).
        dim_w = torch.ones(d)
        if weighting == "columns":
            dim_w[:] = d / n_blocks
            for w, idx in index.groups:
                dim_w[idx.reshape(-1).cpu()] = d / (n_blocks * w)
        dim_w[index.onehot_cols.cpu()] *= categorical_weight
        self.dim_w = dim_w.to(index.numeric.device)
        self.plain = weighting == "dims" and categorical_weight == 1.0

    def __call__(
        self, pred: torch.Tensor, target: torch.Tensor, classes: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``pred``/``target`` (n, d); ``classes`` one (n, blocks) tensor per one-hot group."""
        if not self.softmax:
            if self.plain:
                return F.mse_loss(pred, target)
            return (self.dim_w.to(pred.device) * (pred - target) ** 2).mean()
        num = self.index.numeric
        loss = pred.sum() * 0.0
        if len(num):
            loss = loss + F.mse_loss(pred[:, num], target[:, num]) * self.num_w
        assert classes is not None
        for (w, idx), cls, gw in zip(self.index.groups, classes, self.group_w, strict=True):
            ce = F.cross_entropy(pred[:, idx].reshape(-1, w), cls.reshape(-1))
            loss = loss + self.cat_w * ce * gw
        return loss


def endpoint_loss(
    cfg: OneStepConfig, index: OneHotIndex, x_all: torch.Tensor
) -> tuple[BlockLoss, list[torch.Tensor] | None]:
    """The loss of a student output against the teacher's endpoints ``x_all``, and its classes.

    With ``distill_loss="ce"`` one-hot blocks are trained by cross-entropy on the class the
    teacher chose (returned per group, indexed like ``x_all``); otherwise every dim by MSE and
    the classes are None. The unconditional and the conditional student share it, so both read
    the teacher's endpoints the same way.
    """
    use_ce = cfg.distill_loss == "ce" and index.has_onehot
    block_loss = BlockLoss(
        index,
        x_all.shape[1],
        weighting=cfg.loss_weighting,
        softmax=use_ce,
        categorical_weight=cfg.categorical_weight,
    )
    classes = [x_all[:, idx].argmax(dim=2) for _w, idx in index.groups] if use_ce else None
    return block_loss, classes
