"""Pausing the cyclic garbage collector while many short-lived objects are built.

Building a few hundred thousand lists, dicts and tuples (rows of a database page, output
records of a bin table) triggers several collections, each walking every tracked object of the
process: a cache miss per object, which cost more than building them. Nothing built inside a
pause may form a reference cycle; reference counting frees it as usual.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """How many pauses are running, and whether the collector ran before the first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.was_enabled = False


_pauses = _Pauses()


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block (nested and concurrent pauses are counted)."""
    with _pauses.lock:
        if _pauses.depth == 0:
            _pauses.was_enabled = gc.isenabled()
            gc.disable()
        _pauses.depth += 1
    try:
        yield
    finally:
        with _pauses.lock:
            _pauses.depth -= 1
            if _pauses.depth == 0 and _pauses.was_enabled:
                gc.enable()
