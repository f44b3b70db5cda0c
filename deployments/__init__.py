"""Prefect deployments: work-pool definitions (prefect.yaml) and a single-machine server."""
