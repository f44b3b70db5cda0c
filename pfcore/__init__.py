"""pushforward core library: data layer, push-forward models, fidelity, registry, generation.

Pure Python + torch; nothing here imports Prefect, so the library runs anywhere (notebooks,
Spark executors, tests) and the orchestration layer stays a thin shell over it.
"""

__version__ = "0.1.0"
