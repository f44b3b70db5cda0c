"""Where pushforward keeps its project data: datasets, runs, the embedded MLflow store, caches.

Why one function: every module that writes state (ingest, training runs, the MLflow store, the
model cache) must agree on the folder, or a CLI started from a sub-directory would quietly open a
second, empty registry. Resolution order:

1. ``$PUSHFORWARD_HOME`` when set (CI, tests, deployments set it explicitly);
2. ``<repository root>/.pushforward`` when the working directory is inside a git checkout, so
   running from ``flows/`` or ``tests/`` finds the same store as running from the root;
3. ``<cwd>/.pushforward`` otherwise.

Nothing is created here; callers ``mkdir`` what they write into.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["pushforward_home", "HOME_ENV"]

HOME_ENV = "PUSHFORWARD_HOME"
_DIRNAME = ".pushforward"


def _repo_root(start: Path) -> Path | None:
    """The nearest ancestor of ``start`` (inclusive) holding a ``.git`` entry, if any."""
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def pushforward_home() -> Path:
    """The project data folder as an absolute path (see the module docstring for the order)."""
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    return (_repo_root(cwd) or cwd) / _DIRNAME
