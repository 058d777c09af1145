"""Who may do what on the HTTP server: bearer tokens with roles, checked by one middleware.

Every route needs the role that :data:`ROUTE_ROLES` names (``None``: open to all). A request
proves who it is with ``Authorization: Bearer TOKEN`` (one of ``server.tokens``) or, for
``GET`` and ``HEAD`` only, with the session cookie that ``POST /login`` sets for browsers; a
request with neither has ``server.anonymous_roles``. Without a known token: 401; with a token
that lacks the role: 403.

Ingestion is checked twice: the server wants ``write``, then the ``http`` source checks its own
per-producer tokens. A bearer token that is not a server token is left for the source to judge
(it is a producer's token); a server token with ``write`` passes and reaches the source without
the header, so the source applies its ``anonymous_producers``.

The settings are read at each request, so a reload that changes ``server.tokens`` applies at
once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import LooseHeaders, Middleware
from aiohttp.web_urldispatcher import AbstractRoute
from multidict import CIMultiDict

from gridwatch.config.server import ROLES, Role, ServerSettings

log = logging.getLogger(__name__)

ROUTE_ROLES: dict[tuple[str, str], Role | None] = {
    ("GET", "/health"): None,  # load balancers and orchestrators probe it without a token
    ("GET", "/login"): None,
    ("POST", "/login"): None,
    ("GET", "/logout"): None,
    ("GET", "/metrics"): "read",
    ("GET", "/"): "read",
    ("GET", "/ui"): "read",
    ("GET", "/ui/vendor/plotly.min.js"): "read",
    ("GET", "/api/v1/dashboard"): "read",
    ("GET", "/api/v1/pipeline"): "read",
    ("GET", "/api/v1/query"): "read",
    ("GET", "/api/v1/measurements"): "read",
    ("GET", "/api/v1/status"): "read",
    ("GET", "/api/v1/tasks"): "read",
    ("GET", "/api/v1/tasks/{task}/runs"): "read",
    ("GET", "/api/v1/runs/{run}"): "read",
    ("POST", "/api/v1/tasks/{task}/run"): "admin",
    ("POST", "/api/v1/reload"): "admin",
    ("POST", "/{path}"): "write",  # ingestion: any path an ingest endpoint answers
}
"""The role each route needs, by method and route pattern."""

UNROUTED_ROLE: Role = "read"
"""What a request that matches no route (404, 405) needs, so that paths cannot be probed."""
INGEST_ROUTE = ("POST", "/{path}")
COOKIE = "gridwatch_session"
COOKIE_METHODS = frozenset({"GET", "HEAD"})
MAX_LOGIN_BODY = 4096

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Identity:
    """Who sent a request: a token's name (or ``anonymous``) and its roles."""

    name: str
    roles: frozenset[Role]


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``: a digest, so that a leaked cookie is not
    a bearer token (and reads only, as cookies count for ``GET`` and ``HEAD`` only)."""
    return hashlib.sha256(b"gridwatch-session\0" + token.encode()).hexdigest()


class Access:
    """The server's tokens, looked up in constant time."""

    def __init__(self, settings: ServerSettings) -> None:
        self.anonymous = Identity("anonymous", settings.anonymous())
        self.open = not settings.tokens and self.anonymous.roles == frozenset(ROLES)
        """Everyone may do everything: no check at all (the default for local use)."""
        self._tokens: list[tuple[bytes, Identity]] = []
        self._sessions: list[tuple[bytes, Identity]] = []
        for grant in settings.tokens:
            token = grant.token.get_secret_value()
            identity = Identity(grant.name, frozenset(grant.roles))
            self._tokens.append((token.encode(), identity))
            self._sessions.append((session_value(token).encode(), identity))

    def by_token(self, token: str) -> Identity | None:
        """The holder of ``token``, if it is one of the server's."""
        return _find(self._tokens, token)

    def by_session(self, value: str) -> Identity | None:
        """The holder whose token ``value`` (a session cookie) was made from."""
        return _find(self._sessions, value)


def _find(known: list[tuple[bytes, Identity]], presented: str) -> Identity | None:
    wanted = presented.encode()
    found: Identity | None = None
    # Compare with every entry, without stopping early, so timing tells nothing.
    for secret, identity in known:
        if hmac.compare_digest(secret, wanted):
            found = identity
    return found


def route_key(route: AbstractRoute) -> tuple[str, str] | None:
    """``(method, pattern)`` of a route as :data:`ROUTE_ROLES` names it (HEAD as GET)."""
    if route.resource is None:
        return None
    method = "GET" if route.method == hdrs.METH_HEAD else route.method
    return method, route.resource.canonical


def uncovered_routes(app: web.Application) -> list[str]:
    """Routes of ``app`` that :data:`ROUTE_ROLES` does not name (each must be decided)."""
    keys = [route_key(route) for route in app.router.routes()]
    return sorted({" ".join(key) for key in keys if key is not None and key not in ROUTE_ROLES})


class CurrentAccess:
    """The :class:`Access` for the settings in force now, rebuilt when a reload changes them."""

    def __init__(self, settings_of: Callable[[], ServerSettings]) -> None:
        self._settings_of = settings_of
        self._cached: tuple[ServerSettings, Access] | None = None

    def __call__(self) -> Access:
        """The access rules of ``settings_of()``."""
        settings = self._settings_of()
        if self._cached is None or self._cached[0] is not settings:
            self._cached = (settings, Access(settings))
        return self._cached[1]


def access_middleware(access: CurrentAccess) -> Middleware:
    """The middleware that checks every request against the settings in force."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = route_key(request.match_info.route)
        needed = ROUTE_ROLES.get(key, UNROUTED_ROLE) if key is not None else UNROUTED_ROLE
        current = access()
        if needed is None or current.open:
            return await handler(request)
        header = request.headers.get(hdrs.AUTHORIZATION)
        identity: Identity | None
        if header is None:
            identity = _by_cookie(request, current)
        else:
            identity = current.by_token(_bearer(header))
            if identity is None and key == INGEST_ROUTE:
                return await handler(request)  # a producer's token: the endpoint judges it
            if identity is None:
                raise _unauthorized(request, "unknown token", invalid=True)
        if needed not in identity.roles:
            if identity is current.anonymous:
                raise _unauthorized(request, f"this needs a token with the {needed} role")
            raise _forbidden(identity, needed)
        if needed == "admin":
            log.info("%s %s by %s", request.method, request.path, identity.name)
        if key == INGEST_ROUTE and header is not None:
            request = request.clone(headers=_without_authorization(request))
        return await handler(request)

    return check


def _bearer(header: str) -> str:
    scheme, _, presented = header.partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def _by_cookie(request: web.Request, current: Access) -> Identity:
    value = request.cookies.get(COOKIE) if request.method in COOKIE_METHODS else None
    if not value:
        return current.anonymous
    identity = current.by_session(value)
    if identity is None:
        raise _unauthorized(request, "the session's token is no longer valid", invalid=True)
    return identity


def _without_authorization(request: web.Request) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() != "authorization")


def _unauthorized(request: web.Request, reason: str, invalid: bool = False) -> web.HTTPException:
    challenge = 'Bearer realm="gridwatch"' + (', error="invalid_token"' if invalid else "")
    headers = {hdrs.WWW_AUTHENTICATE: challenge}
    if "text/html" in request.headers.get(hdrs.ACCEPT, ""):
        body = f"<!doctype html><p>401: {reason}. <a href=/login>Sign in</a></p>\n"
        return web.HTTPUnauthorized(text=body, content_type="text/html", headers=headers)
    return _json_error(web.HTTPUnauthorized, f"{reason}: send Authorization: Bearer TOKEN", headers)


def _forbidden(identity: Identity, needed: Role) -> web.HTTPException:
    challenge = f'Bearer realm="gridwatch", error="insufficient_scope", scope="{needed}"'
    return _json_error(
        web.HTTPForbidden,
        f"token {identity.name!r} lacks the {needed} role",
        {hdrs.WWW_AUTHENTICATE: challenge},
    )


def _json_error(
    kind: type[web.HTTPException], message: str, headers: LooseHeaders
) -> web.HTTPException:
    # The same shape as the http source's refusals, so that producers parse one kind.
    body = json.dumps({"error": message})
    return kind(text=body, content_type="application/json", headers=headers)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as ``--listen`` names it) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_warnings(settings: ServerSettings, host: str) -> list[str]:
    """What to warn about when the server listens on ``host`` with ``settings``."""
    if is_loopback(host):
        return []
    warnings = []
    anonymous = sorted(settings.anonymous(), key=ROLES.index)
    if not settings.tokens and anonymous:
        warnings.append(
            f"listening on {host} without server.tokens: anyone who reaches it has the roles "
            f"{', '.join(anonymous)} (see docs/security.md)"
        )
    if settings.tokens and settings.tls is None:
        warnings.append(
            f"listening on {host} over plain HTTP: tokens travel in clear text "
            "(set server.tls or serve through a TLS proxy)"
        )
    return warnings
