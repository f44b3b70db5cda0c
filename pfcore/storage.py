"""Locations: a local path or an object-store URI, resolved to (file system, path) in one place.

Why one module: the ingest source, the dataset store, the synthetic output root and the run
artifacts may each live on another machine's disk or in a bucket (``s3://``, ``gs://``,
``abfs://``). Every entry point asks :func:`resolve` and never parses a scheme itself, so a
location means the same thing to every command, task and worker.

Credentials and endpoints come only from each store's standard environment and config files
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_*``...); nothing here reads or stores a
secret. Remote stores go through fsspec (``s3fs``, ``gcsfs``, ``adlfs``: the optional extra
``pushforward[s3]`` installs the S3 one); :func:`arrow_filesystem` wraps the same file system
for pyarrow. Local paths keep their ordinary behaviour (``pathlib``/``os``) everywhere.

Bounded failure: an S3 endpoint that does not answer fails after 3 attempts with 5 s connect
timeouts (about 15-20 s), as a :class:`~pfcore.errors.StorageError` naming the location.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pfcore.errors import InputError, StorageError, StorageUnreachable

__all__ = [
    "REMOTE_SCHEMES",
    "check_usable",
    "listing_key",
    "Location",
    "arrow_filesystem",
    "is_remote",
    "join",
    "local_copy",
    "normalise",
    "resolve",
    "scheme_of",
]

#: scheme -> (fsspec protocol, package that implements it)
REMOTE_SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("s3", "s3fs"),
    "s3a": ("s3", "s3fs"),
    "gs": ("gcs", "gcsfs"),
    "gcs": ("gcs", "gcsfs"),
    "abfs": ("abfs", "adlfs"),
    "abfss": ("abfs", "adlfs"),
    "az": ("abfs", "adlfs"),
}
_CONNECT_TIMEOUT_S = 5
_ATTEMPTS = 3


def scheme_of(location: str | os.PathLike[str]) -> str | None:
    """The URI scheme (lower case), or None for a plain local path.

    A single letter before ``:`` is a Windows drive, not a scheme.
    """
    text = os.fspath(location)
    if "://" not in text:
        return None
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        return None
    if scheme not in REMOTE_SCHEMES:
        known = ", ".join(sorted({*REMOTE_SCHEMES, "file"}))
        raise InputError(f"unknown storage scheme {scheme!r} (known: {known})", path=text)
    return scheme


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True for an object-store URI, False for a local path (or ``file://``)."""
    return scheme_of(location) is not None


def normalise(location: str | os.PathLike[str]) -> str:
    """Canonical text of a location: an absolute local path, or ``scheme://bucket/key``.

    Local paths are expanded and made absolute (as every module did before URIs existed);
    URIs lose trailing slashes and repeated separators, and ``s3a://`` reads as ``s3://``.
    """
    text = os.fspath(location)
    scheme = scheme_of(text)
    if scheme is None:
        if text.lower().startswith("file://"):
            text = text[len("file://") :]
        return str(Path(text).expanduser().resolve())
    rest = text.split("://", 1)[1]
    parts = [p for p in rest.split("/") if p]
    if not parts:
        raise InputError("a storage URI needs a bucket or container", path=text)
    if scheme == "s3a":
        scheme = "s3"
    return f"{scheme}://" + "/".join(parts)


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``base`` joined with ``parts`` ('/'-separated for URIs, ``os.path`` for local paths)."""
    text = os.fspath(base)
    if is_remote(text):
        return posixpath.join(text.rstrip("/"), *parts)
    return os.path.join(text, *parts)


def _storage_options(protocol: str) -> dict[str, Any]:
    """Options that bound retries and keep listings fresh; never credentials."""
    if protocol == "s3":
        return {
            # another process (a second run, a Dask worker) may have written meanwhile
            "use_listings_cache": False,
            "config_kwargs": {
                "connect_timeout": _CONNECT_TIMEOUT_S,
                "read_timeout": 60,
                "retries": {"max_attempts": _ATTEMPTS, "mode": "standard"},
            },
        }
    return {"use_listings_cache": False} if protocol in {"gcs", "abfs"} else {}


_FS_CACHE: dict[tuple[str, str], Any] = {}
_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")


def _filesystem(scheme: str) -> Any:
    protocol, package = REMOTE_SCHEMES[scheme]
    # one client per store configuration: a changed endpoint or profile in the environment
    # (a test's server, a second account) must not reuse a client made for the old one
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES))
    key = (protocol, hashlib.sha256(repr(env).encode()).hexdigest())
    fs = _FS_CACHE.get(key)
    if fs is not None:
        return fs
    try:
        import fsspec

        fs = fsspec.filesystem(protocol, skip_instance_cache=True, **_storage_options(protocol))
        _FS_CACHE[key] = fs
        return fs
    except ImportError as exc:
        raise StorageError(
            f"{scheme}:// locations need the {package!r} package "
            f"(pip install {package}; for S3: pip install 'pushforward[s3]')"
        ) from exc


@dataclass(frozen=True)
class Location:
    """A resolved location: its canonical text, the fsspec file system and the path within it."""

    uri: str
    fs: Any
    path: str

    @property
    def remote(self) -> bool:
        return "://" in self.uri

    def child(self, *parts: str) -> Location:
        return resolve(join(self.uri, *parts))

    def __str__(self) -> str:
        return self.uri

    # ---------------------------------------------------------------- reading
    def exists(self) -> bool:
        return bool(self._call("check", self.fs.exists, self.path))

    def is_dir(self) -> bool:
        return bool(self._call("check", self.fs.isdir, self.path))

    def size(self) -> int:
        return int(self._call("read", self.fs.size, self.path))

    def read_bytes(self) -> bytes:
        return bytes(self._call("read", self.fs.cat_file, self.path))

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def files(self) -> list[str]:
        """Every file under this prefix, as paths relative to it (sorted)."""
        if not self.is_dir():
            return []
        found = self._call("list", self.fs.find, self.path)
        root = self.path.rstrip("/") + "/"
        return sorted(str(p)[len(root) :] for p in found if str(p).startswith(root))

    def glob(self, pattern: str) -> list[str]:
        """Full URIs (or local paths) of the entries matching ``pattern`` below this location."""
        found = self._call("list", self.fs.glob, join(self.path, pattern))
        proto = self.uri.split("://", 1)[0] + "://" if self.remote else ""
        return sorted(proto + str(p) for p in found)

    # ---------------------------------------------------------------- writing
    def write_bytes(self, data: bytes, *, exclusive: bool = False) -> bool:
        """Write ``data`` as one whole object; readers see all of it or nothing.

        ``exclusive``: create only if absent (``If-None-Match: *`` on S3; ``O_EXCL`` locally);
        returns False, writing nothing, when the object already exists. Stores that do not
        support conditional writes raise StorageError rather than pretend.
        """
        if not self.remote:
            return _local_write(Path(self.path), data, exclusive)
        if not exclusive:
            self._call("write", self.fs.pipe_file, self.path, data)
            return True
        if not self.uri.startswith("s3://"):
            raise StorageError(
                f"{self.uri}: exclusive create is implemented for S3 (If-None-Match) and local "
                "disks only"
            )
        try:
            self._call("write", self.fs.pipe_file, self.path, data, mode="create")
        except FileExistsError:
            return False
        return True

    def open_write(self) -> Any:
        """A binary file object; on object storage the object appears only on ``close()``."""
        if not self.remote:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return self._call("write", self.fs.open, self.path, "wb")

    def copy_to(self, dest: Location) -> None:
        """Server-side copy on the same store (no bytes travel through this machine)."""
        self._call("copy", self.fs.copy, self.path, dest.path)

    def upload(self, local: str | os.PathLike[str]) -> None:
        """Copy a local file or folder here (a folder's files keep their relative paths)."""
        src = Path(local)
        if src.is_dir():
            for p in sorted(q for q in src.rglob("*") if q.is_file()):
                self.child(*p.relative_to(src).parts).upload(p)
            return
        if not self.remote:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, self.path)
            return
        self._call("write", self.fs.put_file, str(src), self.path)

    def download(self, local: str | os.PathLike[str]) -> Path:
        """Copy this file, or every file under this prefix, to ``local``."""
        dest = Path(local)
        rel = self.files()
        if not rel:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._call("read", self.fs.get_file, self.path, str(dest))
            return dest
        for r in rel:
            target = dest / r
            target.parent.mkdir(parents=True, exist_ok=True)
            self._call("read", self.fs.get_file, join(self.path, r), str(target))
        return dest

    def remove(self) -> None:
        """Delete this file or prefix; missing is fine."""
        with contextlib.suppress(FileNotFoundError):
            if not self.remote:
                p = Path(self.path)
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                return
            if self._call("check", self.fs.exists, self.path):
                self._call("delete", self.fs.rm, self.path, recursive=True)

    # ---------------------------------------------------------------- errors
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a store call; turn transport failures into StorageError naming the location."""
        try:
            return fn(*args, **kwargs)
        except (FileNotFoundError, FileExistsError, IsADirectoryError):
            raise
        except PermissionError as exc:
            raise StorageError(f"{self.uri}: permission denied ({what}): {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - every transport error, named once
            text = str(exc) or type(exc).__name__
            if _unreachable(exc):
                raise StorageUnreachable(
                    f"{self.uri}: cannot {what}: endpoint unreachable after {_ATTEMPTS} "
                    f"attempts ({text})"
                ) from exc
            raise StorageError(f"{self.uri}: cannot {what}: {text}") from exc


def _unreachable(exc: BaseException) -> bool:
    """A connection that never got an answer (refused, timed out), at any depth of causes."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        if name in {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"}:
            return True
        if isinstance(seen, (ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _local_write(path: Path, data: bytes, exclusive: bool) -> bool:
    from pfcore.atomic import atomic_write

    if not exclusive:
        atomic_write(path, data)
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(name, 0o644)
        try:
            os.link(name, path)  # atomic create-if-absent, content complete
        except FileExistsError:
            return False
        return True
    finally:
        Path(name).unlink(missing_ok=True)


def resolve(location: str | os.PathLike[str] | Location) -> Location:
    """The one place a location becomes (file system, path); see the module docstring."""
    if isinstance(location, Location):
        return location
    uri = normalise(location)
    scheme = scheme_of(uri)
    if scheme is None:
        from fsspec.implementations.local import LocalFileSystem

        return Location(uri=uri, fs=LocalFileSystem(), path=uri)
    return Location(uri=uri, fs=_filesystem(scheme), path=uri.split("://", 1)[1])


def arrow_filesystem(location: str | os.PathLike[str] | Location) -> tuple[Any, str]:
    """(pyarrow file system, path) for pyarrow.dataset / parquet readers of a location."""
    import pyarrow.fs as pafs

    loc = resolve(location)
    if not loc.remote:
        return pafs.LocalFileSystem(), loc.path
    return pafs.PyFileSystem(pafs.FSSpecHandler(loc.fs)), loc.path


def listing_key(location: str | os.PathLike[str] | Location, rel: list[str] | None = None) -> str:
    """sha256 of a remote file's or prefix's URI and every file's relative path and size:
    cheap (one listing), and it changes whenever content is added, removed or resized."""
    loc = resolve(location)
    rel = loc.files() if rel is None else rel
    h = hashlib.sha256(loc.uri.encode())
    for r in rel:
        h.update(f"\0{r}\0{loc.child(r).size()}".encode())
    if not rel:
        if not loc.exists():
            raise InputError("does not exist", path=loc.uri)
        h.update(f"\0{loc.size()}".encode())
    return h.hexdigest()


def check_usable(location: str | os.PathLike[str]) -> None:
    """For an object-store location: its bucket or container exists and the store answers
    (StorageError otherwise). Local folders are checked by ``pfcore.preflight``."""
    loc = resolve(location)
    if not loc.remote:
        return
    bucket = loc.uri.split("://", 1)[0] + "://" + loc.path.split("/", 1)[0]
    if not resolve(bucket).exists():
        raise StorageError(f"{loc.uri}: bucket {bucket} does not exist (or is not visible)")


def local_copy(location: str | os.PathLike[str], cache_root: str | os.PathLike[str]) -> Path:
    """A local folder (or file) with the content of ``location``; local paths are returned as is.

    A remote prefix is downloaded once into ``cache_root/<hash of uri and listing>``: training
    and validation read a dataset many times, by row ranges, which object stores serve slowly.
    The key includes every file's size, so changed content gets a fresh copy.
    """
    loc = resolve(location)
    if not loc.remote:
        return Path(loc.path)
    rel = loc.files()
    name = posixpath.basename(loc.path) or "root"
    dest = Path(cache_root) / f"{name}-{listing_key(loc, rel)[:16]}"
    single = not rel  # one file: the copy is dest/<its name>
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            loc.download(tmp / "content" / name if single else tmp / "content")
            try:
                os.rename(tmp / "content", dest)
            except OSError:
                if not dest.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest / name if single else dest


@contextlib.contextmanager
def hashing_writer(location: Location) -> Iterator[_HashingFile]:
    """A binary writer to ``location`` that counts bytes and computes sha256 in flight."""
    raw = location.open_write()
    wrapped = _HashingFile(raw)
    ok = False
    try:
        yield wrapped
        ok = True
    finally:
        if ok:
            location._call("write", raw.close)
        else:
            with contextlib.suppress(Exception):
                if location.remote and hasattr(raw, "discard"):
                    # abort the multipart upload and never close (closing would upload what is
                    # buffered): no partial object ever appears
                    raw.discard()
                    raw.closed = True
                else:
                    raw.close()


class _HashingFile:
    """File-like wrapper: ``write`` feeds sha256 and a byte count, then the real file."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def write(self, data: Any) -> int:
        mv = memoryview(data).cast("B")
        self._sha.update(mv)
        self.bytes += mv.nbytes
        self._raw.write(mv)
        return mv.nbytes

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True  # the owner closes the real file (commit or abort)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()
