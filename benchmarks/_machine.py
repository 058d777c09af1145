"""What machine a benchmark ran on."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    """CPU model, cores, Python."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"
