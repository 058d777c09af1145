"""A source of realistic synthetic records: PanDA job state changes and XRootD transfers.

Record ``n`` is a pure function of the seed and ``n`` (except its timestamps, taken from the
clock), and the position is the next ``n``: a restart continues the sequence exactly, so tests
can check that every number from 0 up reached a sink.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import Field

from gridwatch.components import Source, SourceBatch, SourceConfig
from gridwatch.record import Record

SITES = (
    ("CERN-PROD", "CERN", "ch"),
    ("BNL-ATLAS", "US", "us"),
    ("FZK-LCG2", "DE", "de"),
    ("IN2P3-CC", "FR", "fr"),
    ("RAL-LCG2", "UK", "uk"),
    ("TRIUMF-LCG2", "CA", "ca"),
    ("INFN-T1", "IT", "it"),
    ("pic", "ES", "es"),
    ("NDGF-T1", "ND", "se"),
    ("SARA-MATRIX", "NL", "nl"),
    ("TOKYO-LCG2", "FR", "jp"),
    ("AGLT2", "US", "us"),
    ("MWT2", "US", "us"),
    ("DESY-HH", "DE", "de"),
    ("praguelcg2", "DE", "cz"),
)
STATES = ("defined", "waiting", "activated", "running", "finished", "failed", "cancelled")
LABELS = ("managed", "user", "panda", "test")
TRANSFORMATIONS = ("Sim_tf.py", "Reco_tf.py", "Derivation_tf.py", "runGen", "Merge_tf.py")
DOMAINS = (
    "cern.ch",
    "bnl.gov",
    "kit.edu",
    "in2p3.fr",
    "rl.ac.uk",
    "infn.it",
    "pic.es",
    "desy.de",
    "ndgf.org",
    "triumf.ca",
    "uchicago.edu",
    "cnaf.infn.it",
)
PROTOCOLS = ("root", "xroot", "http", "https", "gsiftp")
ERROR_CODES = (0, 0, 0, 0, 0, 1008, 1201, 1305, 1099, 1150)


class GeneratorConfig(SourceConfig):
    """Settings of the ``generator`` source."""

    kinds: list[Literal["panda", "xrootd"]] = Field(
        default=["panda", "xrootd"],
        min_length=1,
        description="Which record kinds to emit, in turn.",
    )
    rate_per_s: float = Field(
        1000.0, ge=0, description="Records per second (0: as fast as possible)."
    )
    batch_records: int = Field(1000, ge=1, description="Records per emitted batch at most.")
    limit: int | None = Field(None, ge=0, description="Stop after this many records in total.")
    seed: int = Field(1, description="Varies the generated values.")
    panda_producer: str = Field("panda", description="Producer of PanDA job records.")
    xrootd_producer: str = Field("xrootd", description="Producer of transfer records.")


def _mix(n: int, salt: int) -> int:
    """A cheap deterministic scramble of n (splitmix64's finaliser)."""
    z = (n * 0x9E3779B97F4A7C15 + salt) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def panda_record(n: int, seed: int, now_ms: int, producer: str = "panda") -> Record:
    """A PanDA job state change, as the job database's rows look."""
    r = _mix(n, seed)
    site, cloud, _ = SITES[r % len(SITES)]
    state = STATES[(r >> 8) % len(STATES)]
    pandaid = 4_000_000_000 + n // 3
    creation = now_ms - 3_600_000 - (r >> 16) % 7200 * 1000
    start = creation + (r >> 24) % 1800 * 1000
    done = state in ("finished", "failed", "cancelled")
    data: dict[str, Any] = {
        "seq": n,
        "pandaid": pandaid,
        "jeditaskid": 20_000_000 + pandaid % 50_000,
        "jobstatus": state,
        "computingsite": site,
        "cloud": cloud,
        "vo": "atlas",
        "prodsourcelabel": LABELS[(r >> 12) % len(LABELS)],
        "transformation": TRANSFORMATIONS[(r >> 20) % len(TRANSFORMATIONS)],
        "attemptnr": 1 + (r >> 40) % 3,
        "creationtime": creation,
        "starttime": start,
        "endtime": start + 600_000 + (r >> 32) % 20000 * 1000 if done else None,
        "modificationtime": now_ms,
        "cpuconsumptiontime": (r >> 44) % 36000 if done else 0,
        "nevents": (r >> 28) % 5000,
        "piloterrorcode": ERROR_CODES[(r >> 36) % len(ERROR_CODES)] if state == "failed" else 0,
    }
    # The generator gives ids: record n of a seed is one event however often it is sent, and
    # r is a bijection of n, so the 128 bits of (r, n) are unique.
    return Record(producer, "jobs", now_ms, f"{r:016x}{n:016x}", data=data)


def xrootd_record(n: int, seed: int, now_ms: int, producer: str = "xrootd") -> Record:
    """A finished XRootD file access, as EOS reports it."""
    r = _mix(n, seed ^ 0x5A5A)
    server = DOMAINS[(r >> 8) % len(DOMAINS)]
    writing = (r >> 16) % 5 == 0
    size = 1_000_000 + (r >> 20) % 4_000_000_000
    data: dict[str, Any] = {
        "seq": n,
        "client_domain": DOMAINS[r % len(DOMAINS)],
        "server_domain": server,
        "server_host": f"eos{(r >> 48) % 40:02d}.{server}",
        "user_protocol": PROTOCOLS[(r >> 12) % len(PROTOCOLS)],
        "read_bytes": 0 if writing else size,
        "written_bytes": size if writing else 0,
        "start_time": now_ms - 1000 - (r >> 40) % 900 * 1000,
        "end_time": now_ms,
        "file_lfn": f"/eos/atlas/atlasdatadisk/rucio/data/{r % 100000:05d}.root",
    }
    return Record(producer, "transfers", now_ms, f"{r:016x}{n:016x}", data=data)


class GeneratorSource(Source):
    """Emits synthetic PanDA and XRootD records at a steady rate."""

    Config = GeneratorConfig
    config: GeneratorConfig

    async def open(self, position: Any) -> None:
        self.next_n = int(position["next"]) if position else 0
        makers: dict[str, Callable[[int, int, int], Record]] = {
            "panda": lambda n, s, t: panda_record(n, s, t, self.config.panda_producer),
            "xrootd": lambda n, s, t: xrootd_record(n, s, t, self.config.xrootd_producer),
        }
        self.makers = [makers[kind] for kind in self.config.kinds]

    def make(self, n: int, now_ms: int) -> Record:
        """Record number ``n``."""
        return self.makers[n % len(self.makers)](n, self.config.seed, now_ms)

    async def batches(self) -> AsyncIterator[SourceBatch]:
        cfg = self.config
        started = time.monotonic()
        emitted_since_start = 0
        while cfg.limit is None or self.next_n < cfg.limit:
            count = cfg.batch_records
            if cfg.rate_per_s > 0:  # about ten batches a second at low rates
                count = min(count, max(1, int(cfg.rate_per_s / 10)))
            if cfg.limit is not None:
                count = min(count, cfg.limit - self.next_n)
            if cfg.rate_per_s > 0:
                due = started + (emitted_since_start + count) / cfg.rate_per_s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            now_ms = round(time.time() * 1000)
            first = self.next_n
            records = [self.make(n, now_ms) for n in range(first, first + count)]
            self.next_n += count
            emitted_since_start += count
            yield SourceBatch(records, position={"next": self.next_n})
