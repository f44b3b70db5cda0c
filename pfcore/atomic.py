"""The one atomic file writer: readers see the old file or the new one, never half of either.

Why one: several modules had their own temp-then-rename helper, some with ``fsync`` and some
without, so whether a crash could leave an empty ``schema.json`` depended on which file it was.
Every small artifact (JSON, safetensors, sidecars, manifests) goes through :func:`atomic_write`:
a uniquely named temp file in the target's folder (so the rename never crosses file systems and
two writers never share a temp file), flushed to disk, then ``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write"]


def atomic_write(
    path: str | os.PathLike[str], content: bytes | str | Callable[[Path], Any]
) -> Path:
    """Write ``content`` (bytes, UTF-8 text, or a function that writes a given temp path) to
    ``path`` atomically and durably; creates the parent folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(name)
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600: published files must stay readable
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
