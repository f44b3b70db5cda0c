"""Prefect flows over the tasks, their typed parameters and the command line."""
