"""Thin Prefect tasks over pfcore: retries, caching, logging and artifacts."""
