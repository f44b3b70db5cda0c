"""Reversible transforms between an Arrow table and a float32 matrix for the models.

``TableTransformer`` is the only entry point most code needs; the per-column transforms live in
``numeric`` (quantile-to-normal for continuous, integer and datetime columns), ``categorical``
(one-hot with rare-category pooling, booleans) and ``regenerated`` (constant and id columns,
which are not modelled but rebuilt on decode).
"""

from pfcore.transforms.base import Block
from pfcore.transforms.table import TableTransformer

__all__ = ["Block", "TableTransformer"]
