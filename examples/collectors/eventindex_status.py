"""An example collector in the style of seed 003's EventIndex scripts: it returns status
records as envelope dicts, which the scheduler validates and puts onto the bus."""

from __future__ import annotations

import random
import socket
import time
from typing import Any


def collect(components: list[str]) -> list[dict[str, Any]]:
    """One status record per EventIndex component (synthetic numbers here)."""
    now = time.time()
    return [
        {
            "producer": "eventindex",
            "type": "status",
            "timestamp": now,
            "host": socket.gethostname(),
            "data": {
                "component": name,
                "messages_waiting": random.randint(0, 500),
                "errors": random.choice([0, 0, 0, 1]),
            },
            "idb_tags": ["component"],
            "idb_fields": ["messages_waiting", "errors"],
        }
        for name in components
    ]
