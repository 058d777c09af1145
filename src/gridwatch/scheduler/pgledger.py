"""The slot ledger on PostgreSQL: a lease with a fencing token, for schedulers on many hosts.

All times are the server's (``now()``), so the hosts' clocks do not matter. The lease row is
renewed by its holder; anyone may take it once it has expired, and taking it increments the
token. A claim locks the lease row (``FOR SHARE``) and checks holder, token and expiry in the
same statement that inserts the slot: a takeover and a late claim cannot both succeed, and the
slot's primary key makes a second claim of a slot impossible whatever happens.
"""

from __future__ import annotations

import threading
from typing import Any

from gridwatch.config.schedule import HaSettings
from gridwatch.scheduler.ledger import check_postgres_available, holder_name


class PostgresLedger:
    """:class:`~gridwatch.scheduler.ledger.Ledger` on PostgreSQL."""

    def __init__(self, settings: HaSettings) -> None:
        check_postgres_available()
        self.holder = holder_name()
        self.settings = settings
        self.group = settings.group
        prefix = settings.table_prefix
        self.lease_table = f"{prefix}_lease"
        self.slots_table = f"{prefix}_slots"
        self.anchors_table = f"{prefix}_anchors"
        password = settings.postgres_password
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 10}
        if password is not None:
            kwargs["password"] = password.get_secret_value()
        self._mutex = threading.Lock()
        self._kwargs = kwargs
        self._conn = self._connect()
        self._create_tables()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.settings.postgres_url or "", **self._kwargs)

    def _create_tables(self) -> None:
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self.lease_table} (name TEXT PRIMARY KEY, "
            "holder TEXT NOT NULL, token BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.slots_table} (grp TEXT NOT NULL, task TEXT NOT "
            "NULL, slot_ms BIGINT NOT NULL, token BIGINT NOT NULL, holder TEXT NOT NULL, "
            "trigger TEXT NOT NULL, state TEXT NOT NULL, claimed_at TIMESTAMPTZ NOT NULL "
            "DEFAULT now(), finished_at TIMESTAMPTZ, PRIMARY KEY (grp, task, slot_ms))",
            f"CREATE TABLE IF NOT EXISTS {self.anchors_table} (grp TEXT NOT NULL, task TEXT "
            "NOT NULL, start_ms BIGINT NOT NULL, PRIMARY KEY (grp, task))",
        ]
        with self._mutex:
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide on the type's name.
            self._conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (self.lease_table,))
            try:
                for statement in statements:
                    self._conn.execute(statement)
            finally:
                self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self.lease_table,))

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with self._mutex:
            if self._conn.broken or self._conn.closed:
                self._conn = self._connect()  # the next call after a lost connection retries
            cursor = self._conn.execute(sql, args)
            return cursor.fetchall() if cursor.description else []

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        rows = self._query(sql, args)
        return rows[0] if rows else None

    def acquire(self) -> int | None:
        """Renew our lease, or take an expired one (with a new token)."""
        t = self.lease_table
        row = self._one(
            f"INSERT INTO {t} (name, holder, token, expires_at) "
            "VALUES (%s, %s, 1, now() + make_interval(secs => %s)) "
            f"ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
            f"token = CASE WHEN {t}.holder = EXCLUDED.holder AND {t}.expires_at > now() "
            f"THEN {t}.token ELSE {t}.token + 1 END, expires_at = EXCLUDED.expires_at "
            f"WHERE {t}.holder = EXCLUDED.holder OR {t}.expires_at <= now() RETURNING token",
            (self.group, self.holder, self.settings.lease_s),
        )
        return None if row is None else int(row[0])

    def release(self) -> None:
        """Expire our lease now."""
        self._query(
            f"UPDATE {self.lease_table} SET expires_at = now() WHERE name = %s AND holder = %s",
            (self.group, self.holder),
        )

    def leader(self) -> str | None:
        """The holder of an unexpired lease."""
        row = self._one(
            f"SELECT holder FROM {self.lease_table} WHERE name = %s AND expires_at > now()",
            (self.group,),
        )
        return None if row is None else str(row[0])

    def claim(self, task: str, slot_ms: int, token: int, trigger: str) -> bool:
        """Insert the slot only while holding the unexpired lease with ``token``."""
        row = self._one(
            f"INSERT INTO {self.slots_table} (grp, task, slot_ms, token, holder, trigger, state) "
            "SELECT %s, %s, %s, %s, %s, %s, 'running' WHERE EXISTS (SELECT 1 FROM "
            f"{self.lease_table} WHERE name = %s AND holder = %s AND token = %s "
            "AND expires_at > clock_timestamp() FOR SHARE) ON CONFLICT DO NOTHING RETURNING 1",
            (
                self.group,
                task,
                slot_ms,
                token,
                self.holder,
                trigger,
                self.group,
                self.holder,
                token,
            ),
        )
        return row is not None

    def finish(self, task: str, slot_ms: int, state: str) -> None:
        """Store the slot's final state."""
        self._query(
            f"UPDATE {self.slots_table} SET state = %s, finished_at = now() "
            "WHERE grp = %s AND task = %s AND slot_ms = %s",
            (state, self.group, task, slot_ms),
        )

    def last_slot(self, task: str, triggers: tuple[str, ...] | None = None) -> int | None:
        """The latest claimed slot of ``task``."""
        sql = f"SELECT max(slot_ms) FROM {self.slots_table} WHERE grp = %s AND task = %s"
        args: tuple[Any, ...] = (self.group, task)
        if triggers:
            sql += " AND trigger = ANY(%s)"
            args += (list(triggers),)
        row = self._one(sql, args)
        return None if row is None or row[0] is None else int(row[0])

    def last_success(self, task: str) -> int | None:
        """The latest succeeded slot of ``task``."""
        row = self._one(
            f"SELECT max(slot_ms) FROM {self.slots_table} WHERE grp = %s AND task = %s "
            "AND state = 'succeeded'",
            (self.group, task),
        )
        return None if row is None or row[0] is None else int(row[0])

    def abandon(self, token: int) -> list[tuple[str, int]]:
        """Slots still 'running' under older tokens become 'lost'."""
        rows = self._query(
            f"UPDATE {self.slots_table} SET state = 'lost', finished_at = now() "
            "WHERE grp = %s AND state = 'running' AND token < %s RETURNING task, slot_ms",
            (self.group, token),
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    def anchor(self, task: str, default_ms: int) -> int:
        """Insert the anchor if absent; return the stored one."""
        self._query(
            f"INSERT INTO {self.anchors_table} (grp, task, start_ms) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (self.group, task, default_ms),
        )
        row = self._one(
            f"SELECT start_ms FROM {self.anchors_table} WHERE grp = %s AND task = %s",
            (self.group, task),
        )
        return int(row[0])

    def close(self) -> None:
        """Give the lease up and disconnect."""
        try:
            self.release()
        finally:
            self._conn.close()
