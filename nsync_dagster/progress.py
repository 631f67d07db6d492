"""Progress lines for long dumps, uploads and downloads: bytes so far and the rate."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

INTERVAL_S = 10.0


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def dir_size(path: Path) -> int:
    total = 0
    if not path.exists():
        return 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


class ByteCounter:
    """A thread-safe byte counter (boto3 transfer callbacks arrive from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def __call__(self, n: int) -> None:
        with self._lock:
            self.value += n


@contextlib.contextmanager
def watch_progress(what: str, measure: Callable[[], int], report: Callable[[str], None],
                   interval_s: float = INTERVAL_S) -> Iterator[None]:
    """Report ``what``'s byte count and rate every ``interval_s`` until the block ends."""
    stop = threading.Event()
    start = time.monotonic()

    def loop() -> None:
        while not stop.wait(interval_s):
            done = measure()
            rate = done / max(time.monotonic() - start, 1e-6)
            report(f"{what}: {human_bytes(done)} so far, {human_bytes(rate)}/s")

    thread = threading.Thread(target=loop, name=f"progress-{what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)
