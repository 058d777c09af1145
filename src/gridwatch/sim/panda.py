"""A PanDA job database simulator: the four job tables, and jobs moving through them.

PanDA keeps a job in ``JOBSDEFINED4`` while it is defined, ``JOBSWAITING4`` while it waits
for input, ``JOBSACTIVE4`` while activated and running, and ``JOBSARCHIVED4`` once finished
or failed; every change sets ``modificationtime`` (seconds precision, like Oracle's DATE).
The simulator creates these tables in SQLite, PostgreSQL or MariaDB and moves jobs at a
configurable rate on a clock it is given (wall clock or simulated), recording every row
version it writes as ``(pandaid, modificationtime)`` in ``SIM_HISTORY``, in the same
transaction, so a test can compare what a reader delivered with what the database held.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from gridwatch.sources.generator.source import ERROR_CODES, LABELS, SITES, TRANSFORMATIONS

log = logging.getLogger(__name__)

DEFINED, WAITING, ACTIVE, ARCHIVED = "JOBSDEFINED4", "JOBSWAITING4", "JOBSACTIVE4", "JOBSARCHIVED4"
JOB_TABLES = (ACTIVE, ARCHIVED, DEFINED, WAITING)
HISTORY = "SIM_HISTORY"
_VOS = ("atlas",) * 30 + ("cms",)
_CLOUDS_EXTRA = ("OSG",)


def table_name(name: str, dialect: str) -> str:
    """How a PanDA table is named in a dialect: as the seed's query spells it there.

    Unquoted names fold to lowercase in PostgreSQL and to uppercase in Oracle; MariaDB keeps
    them as created (case-sensitive on Linux), so it gets the seed's uppercase names.
    """
    return name.upper() if dialect in ("mysql", "mariadb", "oracle") else name.lower()


def job_columns() -> list[sa.Column[Any]]:
    """The columns of the four job tables (a realistic subset of PanDA's)."""
    return [
        sa.Column("pandaid", sa.Numeric(12, 0), primary_key=True, autoincrement=False),
        sa.Column("jeditaskid", sa.Numeric(12, 0)),
        sa.Column("jobname", sa.String(256)),
        sa.Column("jobstatus", sa.String(15), nullable=False),
        sa.Column("computingsite", sa.String(128)),
        sa.Column("cloud", sa.String(50)),
        sa.Column("vo", sa.String(16)),
        sa.Column("prodsourcelabel", sa.String(20)),
        sa.Column("transformation", sa.String(250)),
        sa.Column("produsername", sa.String(60)),
        sa.Column("attemptnr", sa.Integer),
        sa.Column("currentpriority", sa.Integer),
        sa.Column("corecount", sa.Integer),
        sa.Column("creationtime", sa.DateTime),
        sa.Column("starttime", sa.DateTime),
        sa.Column("endtime", sa.DateTime),
        sa.Column("modificationtime", sa.DateTime, nullable=False),
        sa.Column("cpuconsumptiontime", sa.BigInteger),
        sa.Column("hs06sec", sa.Numeric(18, 3)),
        sa.Column("maxpss", sa.BigInteger),
        sa.Column("nevents", sa.Integer),
        sa.Column("piloterrorcode", sa.Integer),
    ]


def build_metadata(dialect: str, schema: str | None) -> sa.MetaData:
    """The four job tables and the history table."""
    metadata = sa.MetaData(schema=schema)
    for name in JOB_TABLES:
        real = table_name(name, dialect)
        table = sa.Table(real, metadata, *job_columns())
        sa.Index(f"{real.lower()}_modtime", table.c.modificationtime, table.c.pandaid)
    sa.Table(
        table_name(HISTORY, dialect),
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pandaid", sa.Numeric(12, 0), nullable=False),
        sa.Column("modificationtime", sa.DateTime, nullable=False),
        sa.Column("jobstatus", sa.String(15), nullable=False),
        sa.Column("tablename", sa.String(20), nullable=False),
        sa.Column("cloud", sa.String(50)),
        sa.Column("vo", sa.String(16)),
    )
    return metadata


def to_db_time(epoch_s: float) -> datetime:
    """A wall-clock instant as PanDA stores it: naive UTC, whole seconds."""
    return datetime.fromtimestamp(int(epoch_s), UTC).replace(tzinfo=None)


@dataclass
class Job:
    """A job the simulator is moving: where it is and when it changes next."""

    row: dict[str, Any]
    table: str
    next_change_s: float


@dataclass
class Change:
    """One row version to write: its table, the row, the table it leaves (if it moves), and
    whether it is a new job (inserted) rather than an update in place."""

    table: str
    row: dict[str, Any]
    leaves: str | None = None
    new: bool = False


@dataclass
class PandaSimulator:
    """Creates the PanDA tables and moves jobs through their states.

    ``rate_per_s`` new jobs per (simulated) second; each state lasts between ``dwell_min_s``
    and ``dwell_max_s``. Call :meth:`step` with the clock's time to apply everything due.
    """

    url: str
    schema: str | None = None
    rate_per_s: float = 1.0
    dwell_min_s: float = 120.0
    dwell_max_s: float = 1800.0
    seed: int = 1
    first_pandaid: int = 4_000_000_000
    jobs: dict[int, Job] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine = sa.create_engine(self.url)
        self.dialect = self.engine.dialect.name
        self.metadata = build_metadata(self.dialect, self.schema)
        self.random = random.Random(self.seed)
        self.next_pandaid = self.first_pandaid
        self.clock_s: float | None = None
        self._arrivals = 0.0

    def table(self, name: str) -> sa.Table:
        """A PanDA table by its canonical (uppercase) name."""
        key = table_name(name, self.dialect)
        return self.metadata.tables[f"{self.schema}.{key}" if self.schema else key]

    def create(self, drop: bool = False) -> None:
        """Create the schema (if named) and the tables; with ``drop``, start empty."""
        with self.engine.begin() as conn:
            if self.schema and self.dialect == "postgresql":
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            elif self.schema and self.dialect in ("mysql", "mariadb"):
                conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{self.schema}`"))
            if drop:
                self.metadata.drop_all(conn)
            self.metadata.create_all(conn)
        self._resume()

    def _resume(self) -> None:
        """Continue where an earlier run left off: its unfinished jobs and its pandaids."""
        history = self.table(HISTORY)
        with self.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(history.c.pandaid))).scalar()
            if top is not None:
                self.next_pandaid = max(self.next_pandaid, int(top) + 1)
            for name in (DEFINED, WAITING, ACTIVE):
                for row in conn.execute(sa.select(self.table(name))).mappings():
                    job_row = dict(row)
                    job_row["pandaid"] = int(job_row["pandaid"])
                    self.jobs[job_row["pandaid"]] = Job(job_row, name, 0.0)

    def drop(self) -> None:
        """Drop the tables (and the schema when it was named)."""
        with self.engine.begin() as conn:
            self.metadata.drop_all(conn)
            if self.schema and self.dialect == "postgresql":
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            elif self.schema and self.dialect in ("mysql", "mariadb"):
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.schema}`"))
        self.engine.dispose()

    # -- moving jobs ----------------------------------------------------------------------

    def step(self, now_s: float) -> int:
        """Apply every arrival and state change due by ``now_s``; return the rows written."""
        if self.clock_s is None:
            self.clock_s = now_s
        elapsed = max(0.0, now_s - self.clock_s)
        self.clock_s = max(self.clock_s, now_s)
        changes = list(self._arrivals_until(now_s, elapsed))
        due = sorted(
            (job for job in self.jobs.values() if job.next_change_s <= now_s),
            key=lambda j: j.next_change_s,
        )
        for job in due:
            changes.append(self._advance(job, max(job.next_change_s, now_s - elapsed)))
        self.write(changes)
        return len(changes)

    def _arrivals_until(self, now_s: float, elapsed: float) -> Iterator[Change]:
        self._arrivals += self.rate_per_s * elapsed
        count = int(self._arrivals)
        self._arrivals -= count
        for i in range(count):
            at = now_s - elapsed + elapsed * (i + 1) / count
            yield self._new_job(at)

    def _dwell(self) -> float:
        return self.random.uniform(self.dwell_min_s, self.dwell_max_s)

    def _new_job(self, at_s: float) -> Change:
        pandaid = self.next_pandaid
        self.next_pandaid += 1
        row = self.job_row(pandaid, at_s)
        self.jobs[pandaid] = Job(row, DEFINED, at_s + self._dwell())
        return Change(DEFINED, dict(row), new=True)

    def job_row(self, pandaid: int, at_s: float, status: str = "defined") -> dict[str, Any]:
        """A new job's row, created and modified at ``at_s`` (also for tests' own writes)."""
        rnd = self.random
        site, cloud, _ = rnd.choice(SITES)
        if rnd.random() < 0.05:
            cloud = _CLOUDS_EXTRA[0]
        row: dict[str, Any] = {
            "pandaid": pandaid,
            "jeditaskid": 20_000_000 + rnd.randrange(50_000),
            "jobname": f"user.job.{pandaid}",
            "jobstatus": "defined",
            "computingsite": site,
            "cloud": cloud,
            "vo": rnd.choice(_VOS),
            "prodsourcelabel": rnd.choice(LABELS),
            "transformation": rnd.choice(TRANSFORMATIONS),
            "produsername": f"user{rnd.randrange(500)}",
            "attemptnr": 1 + rnd.randrange(3),
            "currentpriority": rnd.randrange(1000),
            "corecount": rnd.choice((1, 1, 8)),
            "creationtime": to_db_time(at_s),
            "starttime": None,
            "endtime": None,
            "modificationtime": to_db_time(at_s),
            "cpuconsumptiontime": 0,
            "hs06sec": None,
            "maxpss": None,
            "nevents": 0,
            "piloterrorcode": 0,
        }
        row["jobstatus"] = status
        return row

    def _advance(self, job: Job, at_s: float) -> Change:
        """Move a job to its next state at ``at_s``; return the row version written."""
        rnd, row, leaves = self.random, job.row, job.table
        row["modificationtime"] = to_db_time(at_s)
        status = row["jobstatus"]
        if status == "defined":
            row["jobstatus"], job.table = (
                ("waiting", WAITING) if rnd.random() < 0.3 else ("activated", ACTIVE)
            )
        elif status == "waiting":
            row["jobstatus"], job.table = "activated", ACTIVE
        elif status == "activated":
            row["jobstatus"], row["starttime"] = "running", to_db_time(at_s)
        else:  # running: ends, and moves to the archive
            failed = rnd.random() < 0.15
            cpu = rnd.randrange(600, 40_000)
            row.update(
                jobstatus="failed" if failed else "finished",
                endtime=to_db_time(at_s),
                cpuconsumptiontime=cpu,
                hs06sec=Decimal(cpu * 10 + rnd.randrange(1000)) / 1000 * 11,
                maxpss=rnd.randrange(500_000, 4_000_000) * 1024,
                nevents=0 if failed else rnd.randrange(1, 5000),
                piloterrorcode=rnd.choice(ERROR_CODES[5:]) if failed else 0,
            )
            job.table = ARCHIVED
        job.next_change_s = at_s + self._dwell()
        if job.table == ARCHIVED:
            del self.jobs[row["pandaid"]]
        return Change(job.table, dict(row), leaves if leaves != job.table else None)

    def write(self, changes: list[Change]) -> None:
        """Write row versions and their history in one transaction."""
        if not changes:
            return
        history = self.table(HISTORY)
        with self.engine.begin() as conn:
            self.apply(conn, changes)
            conn.execute(
                history.insert(),
                [
                    {
                        "pandaid": c.row["pandaid"],
                        "modificationtime": c.row["modificationtime"],
                        "jobstatus": c.row["jobstatus"],
                        "tablename": c.table,
                        "cloud": c.row["cloud"],
                        "vo": c.row["vo"],
                    }
                    for c in changes
                ],
            )

    def apply(self, conn: sa.Connection, changes: list[Change]) -> None:
        """Insert, update or move rows (without history), on a caller's connection.

        Values travel as parameters, so each statement is compiled once and then reused.
        """
        for change in changes:
            target = self.table(change.table)
            pandaid = change.row["pandaid"]
            if change.leaves is not None:
                old = self.table(change.leaves)
                conn.execute(
                    old.delete().where(old.c.pandaid == sa.bindparam("_pandaid")),
                    {"_pandaid": pandaid},
                )
            if change.leaves is None and not change.new:
                values = {k: v for k, v in change.row.items() if k != "pandaid"}
                conn.execute(
                    target.update().where(target.c.pandaid == sa.bindparam("_pandaid")),
                    {**values, "_pandaid": pandaid},
                )
            else:
                conn.execute(target.insert(), change.row)

    def history(self) -> set[tuple[int, datetime]]:
        """Every row version written: ``(pandaid, modificationtime)``, for ATLAS jobs only
        (VO not CMS, cloud not OSG, as the seed's query filters)."""
        table = self.table(HISTORY)
        query = sa.select(table.c.pandaid, table.c.modificationtime).where(
            table.c.cloud != "OSG", table.c.vo.not_in(["cms", "CMS"])
        )
        with self.engine.connect() as conn:
            return {(int(p), _naive(m)) for p, m in conn.execute(query)}

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


def _naive(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value


def panda_query(dialect: str, schema: str | None = None) -> str:
    """The seed's ``panda.query`` (section 4.2.3), adapted to a dialect.

    The four SELECTs, their ``cloud != 'OSG'`` and VO filters and the UNION ALL are as the seed
    wrote them; adapted are the table names' case, the comparison (a bound parameter instead of
    Oracle's ``TO_DATE(':committed_value', ...)``) and the derived table's alias.
    """
    prefix = f"{schema}." if schema else ""
    selects = [
        f"  SELECT *\n    FROM {prefix}{table_name(name, dialect)} WHERE modificationtime >=\n"
        "    :committed_value\n    AND cloud != 'OSG' AND VO NOT IN ('cms','CMS')"
        for name in JOB_TABLES
    ]
    return (
        "SELECT * FROM (\n" + "\nUNION ALL\n".join(selects) + "\n) jobs ORDER BY modificationtime"
    )
