"""Child processes and server sessions that do not outlive an interrupted run.

A run can end at any instant: SIGTERM or SIGINT to ``nsync run daily``, Dagster's Terminate,
run monitoring's max runtime (all arrive as an interrupt in the step), a lost connection, or
SIGKILL, which runs no cleanup at all. Three rules follow, implemented here:

- ``run``/``popen``: ``pg_dump``/``pg_restore`` start in their own process group (their ``-j``
  workers too) and, on Linux, are told to die with the thread that started them
  (``PR_SET_PDEATHSIG``), so even a SIGKILLed nsync leaves no client running. On any exception,
  interrupts included, the whole group gets SIGTERM (pg_restore then cancels its queries), and
  SIGKILL after a few seconds.
- ``closing_on_interrupt``: a session waiting on the server (a lock, a rename) is cancelled
  and closed when an interrupt arrives; psycopg only does that by itself for
  ``KeyboardInterrupt``, not for Dagster's ``DagsterExecutionInterruptedError``.
- ``shielded``: a short cleanup (rolling back a swap, dropping the half-built copy) is not cut
  short by a second signal; the signal is re-delivered as soon as the cleanup ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def child_options() -> dict[str, Any]:
    """``subprocess.Popen`` keyword arguments: own process group, dies with its parent."""
    return {"start_new_session": True,
            "preexec_fn": _die_with_parent if _PRCTL is not None else None}


def stop(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """End ``proc`` and its process group (SIGTERM, then SIGKILL after ``grace_s``)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # workers that outlived their leader (same group)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(args: Sequence[str], *, env: dict[str, str] | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    """Like ``subprocess.run(capture_output=True, text=True)`` but the child (and its group)
    is stopped on any exception, interrupts included. ``TimeoutExpired`` is re-raised."""
    proc: subprocess.Popen | None = None
    try:
        with shielded():  # a signal during the fork is delivered once ``proc`` is known
            proc = subprocess.Popen(list(args), env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, **child_options())
        watcher = getattr(_watched, "children", None)
        if watcher is not None:
            watcher.add(proc)
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        if proc is not None:
            with shielded():
                stop(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


_watched = threading.local()


def current_children() -> Children | None:
    """The :class:`Children` recording this thread's client programs, if any."""
    return getattr(_watched, "children", None)


class Children:
    """The client programs ``run`` starts in one (background) thread, so another thread can
    stop them: the backup step ends its background restore's ``pg_restore`` this way when it
    is interrupted or fails (``PR_SET_PDEATHSIG`` only fires when the starting thread ends)."""

    def __init__(self, parent: Children | None = None) -> None:
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self.stopped = False
        self.parent = parent  # also told of every child (threads started by a watched thread)

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.append(proc)
            stopped = self.stopped
        if self.parent is not None:
            self.parent.add(proc)
        if stopped:
            stop(proc, grace_s=1.0)

    def stop_all(self) -> None:
        with self._lock:
            self.stopped = True
            procs = list(self._procs)
        for proc in procs:
            stop(proc, grace_s=1.0)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Record every child ``run`` starts in the current thread while this block runs."""
        _watched.children = self
        try:
            yield
        finally:
            _watched.children = None


@contextlib.contextmanager
def closing_on_interrupt(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Cancel the server-side statement and close ``conn`` when an interrupt (any
    ``BaseException`` that is not an ``Exception``) arrives while it is in use."""
    try:
        yield conn
    except Exception:
        raise
    except BaseException:
        with shielded():
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=GRACE_S)
            with contextlib.suppress(Exception):
                conn.close()
        raise


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGINT/SIGTERM during a short cleanup; deliver them again when it is done.

    Only the main thread can do this; elsewhere the block simply runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for sig in _SIGNALS:
        previous[sig] = signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(received):
            os.kill(os.getpid(), signum)
