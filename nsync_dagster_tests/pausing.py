"""A client program that stops itself at a chosen moment, so a test can act "while pg_restore
runs" without racing it.

:func:`pausing_bin_dir` builds a ``NSYNC_PG_BIN_DIR`` whose programs are the real ones, except
that the named program, when its arguments contain a given text, first writes its pid to a file
and stops itself (``SIGSTOP``). The test waits for that file (:meth:`Pause.wait`), does what it
tests (an interrupt, a dropped connection), and lets the program go on (:meth:`Pause.resume`)
or leaves it to be killed. A poller that watches the process list instead can miss a short
restore on a busy machine; this cannot.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from nsync_dagster.embedded.postgres import embedded_bin_dir


@dataclass
class Pause:
    pids_file: Path

    def pids(self) -> list[int]:
        if not self.pids_file.exists():
            return []
        return [int(p) for p in self.pids_file.read_text().split()]

    def wait(self, timeout: float = 300) -> int:
        """The pid of the first program that stopped itself; waits for one to."""
        deadline = time.monotonic() + timeout
        while not self.pids():
            if time.monotonic() > deadline:
                raise AssertionError(f"no program stopped itself within {timeout}s")
            time.sleep(0.01)
        pid = self.pids()[0]
        while _state(pid) not in ("T", "t", None):  # written just before it stops itself
            time.sleep(0.001)
        return pid

    def resume(self) -> None:
        """Let every stopped program go on."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def pausing_bin_dir(where: Path, program: str, when_args_contain: str,
                    source: Path | None = None) -> tuple[Path, Pause]:
    """A bin dir like ``source`` (the embedded PostgreSQL 18's by default) in which ``program``
    stops itself whenever its arguments contain ``when_args_contain``."""
    source = source or embedded_bin_dir()
    bin_dir = where / "pausing-bin"
    bin_dir.mkdir(parents=True)
    for tool in source.iterdir():
        if tool.name != program:
            (bin_dir / tool.name).symlink_to(tool)
    pause = Pause(where / f"{program}.paused")
    script = bin_dir / program
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *{shlex.quote(when_args_contain)}*)\n'
        f"  echo $$ >> {shlex.quote(str(pause.pids_file))}\n"
        "  kill -STOP $$ ;;\n"
        "esac\n"
        f'exec {shlex.quote(str(source / program))} "$@"\n')
    script.chmod(0o755)
    return bin_dir, pause
