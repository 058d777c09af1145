"""Reading the pipeline file and the files it refers to, within a size limit."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path as FilePath

from gridwatch.config.limits import MIB


class FileTooLarge(OSError):
    """The file holds more than the limit allows."""


def read_limited(path: FilePath, limit: int, *, regular_only: bool = False) -> bytes:
    """The content of ``path`` if it is at most ``limit`` bytes: never more is read.

    ``regular_only`` refuses devices, FIFOs and directories (without waiting for a FIFO's
    writer); otherwise a pipe or a device is read up to the limit, like a file. Failures are
    :class:`OSError` (:class:`FileTooLarge` past the limit), with a ``strerror`` for people.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NONBLOCK if regular_only else 0)
    try:
        descriptor = os.open(path, flags)
    except ValueError as exc:  # a NUL or an unencodable character in the name
        raise OSError(errno.EINVAL, str(exc)) from None
    try:
        if regular_only and not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        with open(descriptor, "rb", closefd=False) as file:
            data = file.read(limit + 1)
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise FileTooLarge(errno.EFBIG, f"larger than {size_text(limit)}")
    return data


def size_text(size: int) -> str:
    """``4 MiB`` or ``1000 bytes``."""
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size} bytes"
