"""Calls to a running gridwatch's HTTP API, with a bearer token and HTTPS against a chosen CA."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Collection
from pathlib import Path
from typing import Any

from gridwatch.commands.options import PATH, SharedOption
from gridwatch.errors import GridwatchError

TOKEN_ENV = "GRIDWATCH_TOKEN"  # noqa: S105 - the variable's name

TOKEN: SharedOption[str | None] = SharedOption(
    "--token",
    default=None,
    envvar=TOKEN_ENV,
    help=f"a server token (default: ${TOKEN_ENV}, which keeps it out of the process list)",
)
CAFILE: SharedOption[Path | None] = SharedOption(
    "--cafile",
    default=None,
    type=PATH,
    help="PEM file of the CA that signed the server's certificate, for https URLs "
    "(default: the system's CAs)",
)


def call_api(
    url: str,
    method: str = "GET",
    token: str | None = None,
    cafile: Path | None = None,
    answered: Collection[int] = (),
) -> tuple[int, Any]:
    """``METHOD url`` and its JSON answer, as ``(status, body)``.

    A 2xx status or one in ``answered`` is returned; any other becomes a
    :class:`GridwatchError` with the server's message.
    """
    request = urllib.request.Request(url, method=method)  # noqa: S310 - the user's own URL
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = _context(cafile)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace").strip()
        if exc.code in answered:
            return exc.code, json.loads(body)
        hint = f" (give --token or set {TOKEN_ENV})" if exc.code == 401 else ""
        raise GridwatchError(f"{method} {url}: {exc.code} {body}{hint}") from None
    except OSError as exc:
        raise GridwatchError(f"cannot reach gridwatch at {url}: {exc}") from None


def _context(cafile: Path | None) -> ssl.SSLContext | None:
    if cafile is None:
        return None  # urllib's default: the system's CAs
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise GridwatchError(f"--cafile {cafile}: {exc}") from None
