"""A client program that stops itself at a chosen moment, so a test can act "while pg_restore
runs" without racing it.

:func:`pausing_bin_dir` builds a ``NSYNC_PG_BIN_DIR`` whose programs are the real ones, except
that the named program, when its arguments contain a given text and the pause is armed, disarms
it, writes its pid to a file and stops itself (``SIGSTOP``) before it starts the real program.
The test waits for that (:meth:`Pause.wait`), does what it tests (an interrupt, a dropped
connection, Terminate), and lets the program go on (:meth:`Pause.resume`) or leaves it to be
killed with its run. One pause stops one program: later ones (a retry) run as usual until the
test arms it again (:meth:`Pause.arm`). A poller that watches the process list instead can miss
a short restore on a busy machine; this cannot.
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
    arm_file: Path
    seen: int = 0  # how many programs had stopped when the pause was last armed

    def arm(self) -> None:
        """Stop the next matching program."""
        self.seen = len(self.pids())
        self.arm_file.touch()

    def pids(self) -> list[int]:
        if not self.pids_file.exists():
            return []
        return [int(p) for p in self.pids_file.read_text().split()]

    def wait(self, timeout: float = 300) -> int:
        """The pid of the program that stopped itself since the pause was armed."""
        deadline = time.monotonic() + timeout
        while len(self.pids()) <= self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no program stopped itself within {timeout}s")
            time.sleep(0.01)
        pid = self.pids()[self.seen]
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


def pausing_bin_dir(where: Path, program: str, when_args_contain: str, *, armed: bool = True,
                    source: Path | None = None) -> tuple[Path, Pause]:
    """A bin dir like ``source`` (the embedded PostgreSQL 18's by default) in which the next
    ``program`` whose arguments contain ``when_args_contain`` stops itself (when ``armed``;
    else after :meth:`Pause.arm`)."""
    source = source or embedded_bin_dir()
    bin_dir = where / "pausing-bin"
    bin_dir.mkdir(parents=True)
    for tool in source.iterdir():
        if tool.name != program:
            (bin_dir / tool.name).symlink_to(tool)
    pause = Pause(where / f"{program}.paused", where / f"{program}.armed")
    arm, pids = shlex.quote(str(pause.arm_file)), shlex.quote(str(pause.pids_file))
    script = bin_dir / program
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *{shlex.quote(when_args_contain)}*)\n'
        f"  if rm {arm} 2>/dev/null; then echo $$ >> {pids}; kill -STOP $$; fi ;;\n"
        "esac\n"
        f'exec {shlex.quote(str(source / program))} "$@"\n')
    script.chmod(0o755)
    if armed:
        pause.arm()
    return bin_dir, pause
