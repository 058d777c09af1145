"""Deterministic transfer and PanDA records for the job tests (and their golden files)."""

from __future__ import annotations

import random
from typing import Any

from gridwatch.record import Record, encode, record_id

T0 = 1_714_603_200_000  # 2024-05-01T22:40:00Z
DOMAINS = ("cern.ch", "bnl.gov", "kit.edu", "in2p3.fr")
PROTOCOLS = ("root", "https", "gsiftp")


def transfer(n: int, rnd: random.Random, span_ms: int) -> Record:
    """One XRootD file access; some are zero-length, some open-ended (no end_time)."""
    start = T0 + rnd.randrange(span_ms)
    kind = rnd.random()
    duration = 0 if kind < 0.05 else rnd.randrange(1, 2_400_000)
    end: int | None = start + duration
    stamp = start + duration
    if kind > 0.97:
        end = None  # still open when reported
        stamp = start + rnd.randrange(0, 900_000)
    writing = rnd.random() < 0.3
    size = rnd.randrange(1, 5_000_000_000)
    moved = size if rnd.random() < 0.8 else rnd.randrange(0, size)
    data: dict[str, Any] = {
        "seq": n,
        "client_domain": rnd.choice(DOMAINS),
        "server_domain": rnd.choice(DOMAINS),
        "user_protocol": rnd.choice(PROTOCOLS),
        "read_bytes": 0 if writing else moved,
        "written_bytes": moved if writing else 0,
        "file_size": size,
        "start_time": start,
        "end_time": end,
    }
    return Record(
        "xrootd", "transfers", stamp, record_id("xrootd", "transfers", stamp, data), data=data
    )


def transfers(count: int, seed: int = 7, span_ms: int = 4 * 3_600_000) -> list[Record]:
    """``count`` transfers starting within ``span_ms`` of T0 (crossing midnight)."""
    rnd = random.Random(seed)
    return [transfer(n, rnd, span_ms) for n in range(count)]


def panda_updates(jobs: int, seed: int = 3) -> list[Record]:
    """State changes of ``jobs`` PanDA jobs: defined -> running -> finished/failed."""
    rnd = random.Random(seed)
    out: list[Record] = []
    for n in range(jobs):
        pandaid = 6_000_000_000 + n
        site = rnd.choice(("CERN-PROD", "BNL-ATLAS", "FZK-LCG2"))
        t = T0 + rnd.randrange(3_600_000)
        states = ["defined", "running", rnd.choice(("finished", "failed"))]
        for step, state in enumerate(states[: rnd.randrange(1, 4)]):
            t += rnd.randrange(60_000, 1_800_000)
            data = {
                "pandaid": pandaid,
                "jobstatus": state,
                "computingsite": site,
                "modificationtime": t,
                "nevents": 100 * step,
            }
            out.append(Record("panda", "jobs", t, record_id("panda", "jobs", t, data), data=data))
    return out


def write_ndjson(path: Any, records: list[Record]) -> None:
    """Envelope lines, as the jsonl sink writes them."""
    with open(path, "wb") as handle:
        for record in records:
            handle.write(encode(record) + b"\n")
