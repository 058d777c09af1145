"""The server's TLS context, built from ``server.tls`` with messages that say what is wrong."""

from __future__ import annotations

import ssl

from gridwatch.config.server import TlsSettings
from gridwatch.errors import ConfigurationError


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or newer) holding the certificate chain and its key.

    Raises :class:`ConfigurationError` naming the file and the fault: unreadable, not a PEM
    certificate, not a key, a key that does not belong to the certificate, a wrong passphrase.
    """
    texts = {option: _read(option, path) for option, path in _files(settings)}
    _check_certificate(settings.certificate)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    password = settings.key_password.get_secret_value() if settings.key_password else ""
    try:
        # A callable, even for no passphrase: OpenSSL would otherwise prompt on the terminal.
        context.load_cert_chain(settings.certificate, settings.key, password=lambda: password)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"server.tls.key: {settings.key} {_key_fault(exc, texts['key'])} "
            f"(certificate {settings.certificate})"
        ) from None
    return context


def _files(settings: TlsSettings) -> list[tuple[str, str]]:
    return [("certificate", settings.certificate), ("key", settings.key)]


def _read(option: str, path: str) -> str:
    try:
        with open(path, "rb") as file:
            return file.read().decode("ascii", errors="replace")
    except OSError as exc:
        raise ConfigurationError(
            f"server.tls.{option}: cannot read {path}: {exc.strerror}"
        ) from None


def _check_certificate(path: str) -> None:
    """Fail unless ``path`` holds at least one PEM certificate."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ConfigurationError(
            f"server.tls.certificate: {path} holds no PEM certificate "
            "(expected -----BEGIN CERTIFICATE-----)"
        ) from None


def _key_fault(exc: ssl.SSLError, text: str) -> str:
    if exc.reason == "KEY_VALUES_MISMATCH":
        return "is not the private key of the certificate"
    if "PRIVATE KEY-----" not in text:
        return "holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)"
    if "ENCRYPTED" in text:
        return "cannot be decrypted: server.tls.key_password is missing or wrong"
    return f"is not a usable private key ({exc.reason or exc})"
