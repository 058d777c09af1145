"""``/login`` and ``/logout``: a session cookie so that a browser can open the dashboard.

A browser cannot add ``Authorization`` to the page's own requests, so ``POST /login`` takes a
server token from a form (never from the URL, which history and proxies keep) and sets a cookie
holding a digest of it: ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (other sites
cannot send it), ``Secure`` over TLS, for the browser session only. The middleware honours the
cookie for ``GET`` and ``HEAD`` only, so it can read but never ingest, run a task or reload.
"""

from __future__ import annotations

import asyncio
from html import escape
from urllib.parse import parse_qs

from aiohttp import web

from gridwatch.api.auth import COOKIE, MAX_LOGIN_BODY, CurrentAccess, session_value

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gridwatch: sign in</title>
<style>body{font:15px system-ui,sans-serif;margin:3em}.muted{color:#666}</style></head>
<body><main><h1>gridwatch</h1>
<form method="post" action="/login">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus
 required></label> <button type="submit">Sign in</button></form>
<p class="muted">{message}</p></main></body></html>
"""
_NO_STORE = {"Cache-Control": "no-store"}


def add_login_routes(app: web.Application, access: CurrentAccess) -> None:
    """``GET /login`` (the form), ``POST /login`` (sets the cookie), ``GET /logout``."""

    async def form(request: web.Request) -> web.Response:
        if access().open:
            raise web.HTTPSeeOther("/")
        return _page("Paste a token that has the read role.")

    async def login(request: web.Request) -> web.Response:
        length = request.content_length
        if length is None:  # browsers send a form with its length
            raise web.HTTPLengthRequired()
        if length > MAX_LOGIN_BODY:
            raise web.HTTPRequestEntityTooLarge(MAX_LOGIN_BODY, length)
        try:
            body = await request.content.readexactly(length)
        except asyncio.IncompleteReadError:
            raise web.HTTPBadRequest(text="the form ended early\n") from None
        token = parse_qs(body.decode(errors="replace")).get("token", [""])[0].strip()
        identity = access().by_token(token)
        if identity is None:
            return _page("Unknown token.", status=401)
        response = web.HTTPSeeOther("/", headers=_NO_STORE)
        response.set_cookie(
            COOKIE,
            session_value(token),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        raise response

    async def logout(request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/login", headers=_NO_STORE)
        response.del_cookie(COOKIE, path="/")
        raise response

    app.router.add_get("/login", form)
    app.router.add_post("/login", login)
    app.router.add_get("/logout", logout)


def _page(message: str, status: int = 200) -> web.Response:
    return web.Response(
        text=_PAGE.replace("{message}", escape(message)),
        content_type="text/html",
        status=status,
        headers=_NO_STORE,
    )
