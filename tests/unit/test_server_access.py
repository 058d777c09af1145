"""The ``server:`` section: tokens and roles, TLS files and the warnings about exposure."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from gridwatch.api.auth import Access, exposure_warnings, is_loopback, uncovered_routes
from gridwatch.api.tls import server_context
from gridwatch.config.pipeline import load_pipeline, parse_pipeline
from gridwatch.config.problems import ConfigProblems
from gridwatch.config.server import ServerSettings, TlsSettings
from gridwatch.errors import ConfigurationError
from tests.tls_support import make_tls_files

OPS = "ops-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abc"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - only checked, never bound
SINKLESS = "sources:\n  in: {type: http, anonymous_producers: ['*']}\n"
SINK = "sinks:\n  out: {type: jsonl, inputs: [in], directory: out}\n"


def load(server: str, tmp_path: Path) -> ServerSettings:
    (tmp_path / "ops.token").write_text(OPS + "\n")
    (tmp_path / "viewer.token").write_text(VIEWER)
    text = f"server:\n{server}\n{SINKLESS}{SINK}"
    return parse_pipeline(text, "p.yaml", tmp_path).server


def problems(server: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigProblems) as caught:
        load(server, tmp_path)
    return str(caught.value)


def test_tokens_come_from_references_and_grant_their_roles(tmp_path: Path) -> None:
    settings = load(
        "  tokens:\n"
        "    - {name: ops, token: '${file:ops.token}', roles: [read, write, admin]}\n"
        "    - {name: viewer, token: '${file:viewer.token}', roles: [read]}\n",
        tmp_path,
    )
    access = Access(settings)
    ops = access.by_token(OPS)
    viewer = access.by_token(VIEWER)
    assert ops is not None and ops.name == "ops"
    assert ops.roles == {"read", "write", "admin"}
    assert viewer is not None and viewer.roles == {"read"}
    assert access.by_token("ops-token-0123456789abcdeX") is None
    assert access.by_token("") is None
    assert access.anonymous.roles == frozenset()  # tokens configured: anonymous gets nothing
    assert not access.open
    assert "ops-token" not in repr(settings)  # masked when printed


def test_without_tokens_anonymous_may_do_everything_unless_told(tmp_path: Path) -> None:
    open_access = Access(load("  listen: 127.0.0.1:8080", tmp_path))
    assert open_access.open
    assert open_access.anonymous.roles == {"read", "write", "admin"}
    read_only = Access(load("  anonymous_roles: [read]", tmp_path))
    assert not read_only.open
    assert read_only.anonymous.roles == {"read"}


def test_token_mistakes_are_reported(tmp_path: Path) -> None:
    inline = problems("  tokens: [{name: a, token: " + OPS + ", roles: [read]}]", tmp_path)
    assert "server.tokens[0].token: secrets must come from ${env:NAME} or ${file:PATH}" in inline
    (tmp_path / "short.token").write_text("short")
    short = problems("  tokens: [{name: a, token: '${file:short.token}', roles: [read]}]", tmp_path)
    assert "token 'a' is shorter than 16 characters" in short
    twice = problems(
        "  tokens:\n"
        "    - {name: a, token: '${file:ops.token}', roles: [read]}\n"
        "    - {name: a, token: '${file:viewer.token}', roles: [read]}\n",
        tmp_path,
    )
    assert "token names must be distinct: a" in twice
    shared = problems(
        "  tokens:\n"
        "    - {name: a, token: '${file:ops.token}', roles: [read]}\n"
        "    - {name: b, token: '${file:ops.token}', roles: [admin]}\n",
        tmp_path,
    )
    assert "two tokens have the same value" in shared
    role = problems("  anonymous_roles: [root]", tmp_path)
    assert "server.anonymous_roles[0]: Input should be 'read', 'write' or 'admin'" in role


def test_tls_paths_start_from_the_pipeline_folder(tmp_path: Path) -> None:
    settings = load("  tls: {certificate: tls/server.pem, key: /etc/gw/server.key}", tmp_path)
    assert settings.tls is not None
    assert settings.tls.certificate == str(tmp_path / "tls" / "server.pem")
    assert settings.tls.key == "/etc/gw/server.key"


def test_a_good_certificate_makes_a_tls_1_2_context(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    context = server_context(TlsSettings(certificate=str(files.certificate), key=str(files.key)))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # clients are not asked for certificates


def tls_error(certificate: Path, key: Path, password: str | None = None) -> str:
    tls = TlsSettings.model_validate(
        {
            "certificate": str(certificate),
            "key": str(key),
            **({"key_password": _resolved(password)} if password else {}),
        }
    )
    with pytest.raises(ConfigurationError) as caught:
        server_context(tls)
    return str(caught.value)


def _resolved(value: str) -> str:
    from gridwatch.config.secrets import Resolved

    return Resolved(value)


def test_bad_certificates_and_keys_say_what_is_wrong(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_tls_files(tmp_path / "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")

    missing = tls_error(tmp_path / "nope.pem", files.key)
    assert missing == (
        f"server.tls.certificate: cannot read {tmp_path}/nope.pem: No such file or directory"
    )
    assert "holds no PEM certificate" in tls_error(junk, files.key)
    assert "holds no PEM certificate" in tls_error(files.key, files.key)
    assert "holds no PEM private key" in tls_error(files.certificate, junk)
    mismatch = tls_error(files.certificate, other.key)
    assert mismatch.startswith(f"server.tls.key: {other.key} is not the private key of the cert")

    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right-passphrase"),
        )
    )
    assert "key_password is missing or wrong" in tls_error(files.certificate, encrypted)
    wrong = tls_error(files.certificate, encrypted, password="wrong-passphrase")
    assert "key_password is missing or wrong" in wrong
    unlocked = TlsSettings.model_validate(
        {
            "certificate": str(files.certificate),
            "key": str(encrypted),
            "key_password": _resolved("right-passphrase"),
        }
    )
    assert server_context(unlocked).minimum_version == ssl.TLSVersion.TLSv1_2


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1")
    assert is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback(ALL_INTERFACES)
    assert not is_loopback("::")
    assert not is_loopback("monitor.example.org")


def test_exposure_warnings(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    open_settings = ServerSettings()
    assert exposure_warnings(open_settings, "127.0.0.1") == []
    (warning,) = exposure_warnings(open_settings, ALL_INTERFACES)
    assert warning.startswith(
        f"listening on {ALL_INTERFACES} without server.tokens: anyone who reaches it has the roles "
        "read, write, admin"
    )
    read_only = ServerSettings(anonymous_roles=["read"])
    assert "has the roles read (" in exposure_warnings(read_only, "::")[0]
    tokens = [{"name": "ops", "token": _resolved(OPS), "roles": ["admin"]}]
    with_tokens = ServerSettings.model_validate({"tokens": tokens})
    (clear,) = exposure_warnings(with_tokens, ALL_INTERFACES)
    assert "plain HTTP: tokens travel in clear text" in clear
    tls = {"certificate": str(files.certificate), "key": str(files.key)}
    secured = ServerSettings.model_validate({"tokens": tokens, "tls": tls})
    assert exposure_warnings(secured, ALL_INTERFACES) == []


def test_a_route_without_a_role_is_reported() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/health", handler)
    app.router.add_get("/api/v1/secrets", handler)
    app.router.add_post("/api/v1/tasks/{task}/run", handler)
    assert uncovered_routes(app) == ["GET /api/v1/secrets"]


def test_the_secured_example_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "secured.yaml"
    (tmp_path / "p.yaml").write_text(example.read_text())
    (tmp_path / "ops.token").write_text(OPS + "\n")
    (tmp_path / "eventindex.token").write_text(VIEWER + "\n")
    monkeypatch.setenv("GRAFANA_TOKEN", "grafana-token-0123456789")
    server = load_pipeline(tmp_path / "p.yaml").server
    assert [(t.name, t.roles) for t in server.tokens] == [
        ("ops", ["read", "write", "admin"]),
        ("grafana", ["read"]),
    ]
    assert server.anonymous() == frozenset()
    assert server.tls is not None
    assert server.tls.certificate == str(tmp_path / "tls" / "server.pem")
