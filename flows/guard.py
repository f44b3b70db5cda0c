"""The exit-code contract of the command line, in one place.

Why one wrapper around the whole command: a scheduler retries or pages on the exit code, and an
on-call engineer reads the last line of stderr. Both must mean the same thing whichever command
failed and however its options are parsed, so every command runs inside :func:`run_guarded`,
which alone decides the code (from the error's type, see ``pfcore.errors``), the message and
where a traceback goes:

* an expected error (``PushforwardError``, invalid parameters) prints one line (a
  multi-line message is joined), no traceback;
* an unexpected one prints one line with its type and message plus the path of a log file that
  holds the traceback; ``--debug`` (or ``PUSHFORWARD_DEBUG=1``) prints the traceback too;
* log lines on the terminal (Prefect's "task run failed" included) keep their text but not
  their traceback, unless ``--debug`` (:func:`quiet_tracebacks`);
* nothing from the input reaches the terminal as a control character (:func:`printable`);
* SIGTERM (a scheduler's timeout, a Prefect cancellation) ends the process within
  ``TERM_GRACE_S`` seconds: the first signal raises :class:`Terminated` in the main thread so
  temporary files are cleaned up, and a watchdog exits hard if that cleanup hangs.
"""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from pfcore.errors import (
    EXIT_BUG,
    EXIT_ENV,
    EXIT_INPUT,
    GateFailed,
    InputError,
    PushforwardError,
    printable,
)

__all__ = [
    "EXIT_TERMINATED",
    "EXIT_INTERRUPTED",
    "TERM_GRACE_S",
    "Terminated",
    "run_guarded",
    "exit_code_for",
    "split_debug_flag",
    "quiet_tracebacks",
]

#: 128 + signal number, the shell's convention, so ``timeout`` and schedulers see a kill.
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Seconds between SIGTERM and a hard exit when the orderly shutdown does not finish.
TERM_GRACE_S = 8.0
DEBUG_FLAG = "--debug"
DEBUG_ENV = "PUSHFORWARD_DEBUG"

#: Operating-system errors that describe the machine, not the program: environment (exit 3).
_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM (a BaseException, like KeyboardInterrupt, so no
    ``except Exception`` on the way swallows it)."""


# ------------------------------------------------------------------------------ messages
def _is_validation_error(exc: BaseException) -> bool:
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    return isinstance(exc, ValidationError)


def _is_prefect_termination(exc: BaseException) -> bool:
    if "prefect" not in sys.modules:
        return False
    from prefect.exceptions import TerminationSignal

    return isinstance(exc, TerminationSignal)


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc`` (by type, never by message)."""
    if isinstance(exc, Terminated) or _is_prefect_termination(exc):
        return EXIT_TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, PushforwardError):
        return int(type(exc).exit_code)
    if _is_validation_error(exc):
        return EXIT_INPUT
    if isinstance(exc, OSError) and exc.errno in _ENV_ERRNOS:
        return EXIT_ENV
    return EXIT_BUG


def _message(exc: BaseException, code: int) -> str:
    if isinstance(exc, GateFailed):
        return str(exc)
    if isinstance(exc, InputError):
        return f"bad input: {exc}"
    if isinstance(exc, PushforwardError):
        return str(exc)
    if _is_validation_error(exc):
        problems = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ()))) or 'value'}: {e.get('msg')} "
            f"(got {printable(repr(e.get('input')), 80)})"
            for e in exc.errors()  # type: ignore[attr-defined]
        )
        return f"invalid parameters: {problems}"
    if code == EXIT_TERMINATED:
        return "terminated by SIGTERM; temporary files removed, nothing half-written"
    if code == EXIT_INTERRUPTED:
        return "interrupted"
    if code == EXIT_ENV:
        return f"storage or permission problem: {exc}"
    first = str(exc).strip().splitlines()
    return f"unexpected error: {type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")


# ------------------------------------------------------------------------------ tracebacks
def _log_traceback(exc: BaseException) -> Path | None:
    """Write the traceback to ``<PUSHFORWARD_HOME>/logs/`` (else the temp folder); its path."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"error-{stamp}-{os.getpid()}.log"
    candidates = []
    try:
        from pfcore.paths import pushforward_home

        candidates.append(pushforward_home() / "logs")
    except Exception:  # noqa: BLE001 - the home itself may be the problem
        pass
    candidates.append(Path(tempfile.gettempdir()) / "pushforward-logs")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(f"pushforward {' '.join(sys.argv)}\n{text}", encoding="utf-8")
            return path
        except OSError:
            continue
    return None


#: Whether the running command was asked for tracebacks (``--debug``); read at log time.
_SHOW_TRACEBACKS = {"on": False}


class _DropTraceback(logging.Filter):
    """Keep a log line on the terminal but not its traceback (unless ``--debug``).

    Prefect's console handler prints the traceback of every failed task and flow. For an
    expected error the command line's one-line reason says it all; for an unexpected one the
    traceback is in the log file named by that line. Prefect's API handler runs before the
    terminal handler, so the run's page in the UI keeps the traceback either way.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not _SHOW_TRACEBACKS["on"]:
            record.exc_info, record.exc_text = None, None
        return True


def quiet_tracebacks() -> None:
    """Attach :class:`_DropTraceback` to the terminal handlers (Prefect's console handler
    included); call after Prefect configured logging. Idempotent."""
    loggers = [logging.getLogger(), *[logging.getLogger(n) for n in ("prefect", "uvicorn")]]
    for lg in loggers:
        for handler in lg.handlers:
            if not isinstance(handler, logging.StreamHandler):
                continue
            if not any(isinstance(f, _DropTraceback) for f in handler.filters):
                handler.addFilter(_DropTraceback())


# ------------------------------------------------------------------------------ SIGTERM
def _install_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into :class:`Terminated` plus a hard-exit watchdog; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_term(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        def hard_exit() -> None:
            print(
                f"pushforward: still running {TERM_GRACE_S:g} s after SIGTERM; exiting now",
                file=sys.stderr,
                flush=True,
            )
            os._exit(EXIT_TERMINATED)

        timer = threading.Timer(TERM_GRACE_S, hard_exit)
        timer.daemon = True
        timer.start()
        signal.signal(signal.SIGTERM, lambda *_: os._exit(EXIT_TERMINATED))  # a second one: now
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


def split_debug_flag(argv: Sequence[str] | None) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (accepted anywhere on the line) and whether it was there,
    so the contract holds however a command's own options are parsed."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    return [a for a in args if a != DEBUG_FLAG], debug


def run_guarded(command: Callable[[], int], *, debug: bool = False) -> int:
    """Run ``command`` (which returns an exit code) under the contract; return the exit code.

    ``SystemExit`` passes through untouched: argparse uses it for ``--help`` (0) and usage
    errors (2), which already follow the contract.
    """
    undo = _install_sigterm()
    _SHOW_TRACEBACKS["on"] = debug
    try:
        return int(command())
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - this is the one place that decides
        code = exit_code_for(exc)
        line = _message(exc, code)
        if code in (EXIT_BUG, EXIT_ENV) and not isinstance(exc, PushforwardError):
            where = _log_traceback(exc)
            if where is not None:
                line += f" (traceback in {where}; rerun with --debug to print it)"
        if debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        line = " ".join(part.strip() for part in line.splitlines() if part.strip())
        print(f"pushforward: {printable(line)}", file=sys.stderr, flush=True)
        return code
    finally:
        undo()
