"""Large synthetic batches to Parquet: deterministic, sharded, atomic and restartable.

Three steps, each callable on its own so an orchestrator can spread the middle one::

    plan = plan_batch(synth_dir, n_rows, seed, BatchTarget(out_root, "credit"))   # once
    results = [generate_shard(None, plan, i) for i in range(len(plan.shards))]  # anywhere
    manifest = publish_batch(plan, results)                            # once

or all at once with a local pool: ``generate_batch(synth, n_rows, seed, BatchTarget(out_root,
"credit"), run=RunOptions(workers=4))``; ``BatchLayout`` sets blocks, files and row groups.

Published layout::

    <out_root>/dataset=<name>/run_date=YYYY-MM-DD/batch=<id>/part-00000.parquet ...
                                                           /_manifest.json   (written last)
    <out_root>/_staging/<name>/<run_date>/<id>/...   (work in progress, never read)

Readers should point at ``<out_root>/dataset=<name>`` (pyarrow.dataset, Spark) or glob
``<out_root>/dataset=<name>/**/*.parquet`` (DuckDB, Polars): ``_manifest.json`` sits beside the
data, and Polars' plain directory read rejects non-Parquet files.
"""

from pfcore.generate.batch import RunOptions, generate_batch, plan_batch
from pfcore.generate.plan import (
    BLOCK_ROWS,
    DEFAULT_ROW_GROUP_ROWS,
    DEFAULT_ROWS_PER_SHARD,
    BatchLayout,
    BatchPlan,
    BatchTarget,
    ShardSpec,
    block_seeds,
    fingerprint_directory,
)
from pfcore.generate.progress import GenerationProgress
from pfcore.generate.publish import (
    MANIFEST_NAME,
    BatchManifest,
    publish_batch,
    published_manifest,
    read_manifest,
    verify_batch,
)
from pfcore.generate.shard import METADATA_PREFIX, ShardResult, generate_shard, load_synthesizer

__all__ = [
    "BLOCK_ROWS",
    "DEFAULT_ROWS_PER_SHARD",
    "DEFAULT_ROW_GROUP_ROWS",
    "MANIFEST_NAME",
    "METADATA_PREFIX",
    "BatchLayout",
    "BatchManifest",
    "BatchPlan",
    "BatchTarget",
    "GenerationProgress",
    "RunOptions",
    "ShardResult",
    "ShardSpec",
    "block_seeds",
    "fingerprint_directory",
    "generate_batch",
    "generate_shard",
    "load_synthesizer",
    "plan_batch",
    "publish_batch",
    "published_manifest",
    "read_manifest",
    "verify_batch",
]
