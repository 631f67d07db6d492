"""The CLI's output boundary: everything the command line prints is masked here, once.

:func:`masked_output` replaces ``sys.stdout`` and ``sys.stderr`` for one invocation with
:class:`MaskedStream`, which writes whole lines through :func:`nsync_dagster.redact.redact`
(a URL's password or a registered secret split over two ``write`` calls is still masked). The
commands print plain text; a library's error, a traceback with ``--verbose``, a log line of any
library all come out masked.

Not covered: output a child process writes straight to the terminal (``nsync dev``'s
``dagster dev``), which never passes through Python's streams.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from nsync_dagster.redact import redact


class MaskedStream:
    """A text stream that masks secrets in what it passes on to ``stream``.

    Complete lines go through at once; a partial line waits for its end, for :meth:`flush`
    (``print(..., flush=True)``, a progress line ending in ``\\r``) or for :meth:`close`.

    Example:
        sys.stdout = MaskedStream(sys.stdout)
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0:
            done, self._pending = self._pending[:cut + 1], self._pending[cut + 1:]
            self.stream.write(redact(done))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.stream.write(redact(self._pending))
            self._pending = ""
        self.stream.flush()

    def close(self) -> None:
        self.flush()

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ...
        return getattr(self.stream, name)


@contextlib.contextmanager
def masked_output() -> Iterator[None]:
    """Mask ``sys.stdout`` and ``sys.stderr`` while the block runs; restore them after."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskedStream(saved[0]), MaskedStream(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed terminal must not hide the result
                stream.flush()
        sys.stdout, sys.stderr = saved
