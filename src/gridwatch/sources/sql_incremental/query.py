"""The statements the source runs: the user's query wrapped in keyset pagination.

The user's query keeps the seed's shape (``panda.query``: a UNION ALL over the four PanDA
tables, each filtered on ``modificationtime >= :committed_value``); the source wraps it as a
derived table and adds the cursor condition, an upper bound and the page size::

    SELECT * FROM (<query>) gw_rows
    WHERE (t > :v OR (t = :v AND k > :k)) AND t <= :upper
    ORDER BY t, k LIMIT :n
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gridwatch.sources.sql_incremental.config import PLACEHOLDER

ALIAS = "gw_rows"
# The seed's Oracle form compares with a quoted string: TO_DATE(':committed_value', ...).
QUOTED_PLACEHOLDER = re.compile(r"'\s*:committed_value\s*'")
TEXT_PARAMETER = "committed_value_text"
TEXT_FORMAT = "%Y-%m-%d %H:%M:%S"


def prepare(query: str) -> str:
    """The user's query, ready to be a derived table (quoted placeholder bound as text)."""
    text = QUOTED_PLACEHOLDER.sub(":" + TEXT_PARAMETER, query)
    return text.strip().rstrip(";").rstrip()


def uses_text_placeholder(prepared: str) -> bool:
    """Whether the query compared with ``':committed_value'`` (a string)."""
    return (":" + TEXT_PARAMETER) in prepared


@dataclass(frozen=True)
class Page:
    """Which conditions a page statement has."""

    after: bool
    upper: bool
    probe: bool = False


def page_statement(
    dialect: str, prepared: str, commit_column: str, key_columns: list[str], page: Page
) -> str:
    """The SQL of one page read, with named parameters (``:gw_after_0``, ``:gw_limit``, ...)."""
    if page.probe:  # only the result's columns: no reference to any column of ours
        return f"SELECT * FROM (\n{prepared}\n) {ALIAS}\nWHERE 1 = 0"
    columns = [commit_column, *key_columns]
    conditions: list[str] = []
    if page.after:
        conditions.append(_keyset(columns))
    if page.upper:
        conditions.append(f"{ALIAS}.{commit_column} <= :gw_upper")
    where = " AND ".join(conditions) if conditions else "1 = 1"
    order = ", ".join(f"{ALIAS}.{c}" for c in columns)
    limit = (
        "FETCH FIRST :gw_limit ROWS ONLY" if dialect in ("oracle", "mssql") else "LIMIT :gw_limit"
    )
    return f"SELECT * FROM (\n{prepared}\n) {ALIAS}\nWHERE {where}\nORDER BY {order}\n{limit}"


def _keyset(columns: list[str]) -> str:
    """``(c0, c1, ...) > (:gw_after_0, :gw_after_1, ...)`` spelled out for every dialect."""
    alternatives = []
    for i, column in enumerate(columns):
        equal = [f"{ALIAS}.{columns[j]} = :gw_after_{j}" for j in range(i)]
        alternatives.append(" AND ".join([*equal, f"{ALIAS}.{column} > :gw_after_{i}"]))
    return "(" + " OR ".join(f"({a})" for a in alternatives) + ")"


def placeholder_name() -> str:
    """The bind name of the committed value (without the colon)."""
    return PLACEHOLDER[1:]
