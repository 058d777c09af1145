"""The ``server:`` section: where the HTTP server listens, who may do what, and TLS."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.config.secrets import Secret

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("read", "write", "admin")
MIN_TOKEN_CHARS = 16


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerToken(_Settings):
    """One bearer token of the server and the roles it grants."""

    name: str = Field(description="Who holds the token (shown in logs, never the token itself).")
    token: Secret = Field(
        description=f"The bearer token, from ${{env:NAME}} or ${{file:PATH}}; at least "
        f"{MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)."
    )
    roles: list[Role] = Field(
        min_length=1,
        description="read: dashboard, queries, status, tasks, /metrics; write: ingestion; "
        "admin: manual task runs and POST /api/v1/reload.",
    )

    @model_validator(mode="after")
    def _long_enough(self) -> ServerToken:
        if len(self.token.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"token {self.name!r} is shorter than {MIN_TOKEN_CHARS} characters")
        return self


class TlsSettings(_Settings):
    """HTTPS on ``--listen``: PEM files, read when the server starts.

    These are paths, not references: the ssl module reads the key from its file, so the key
    stays in a file only gridwatch may read, as ``${file:PATH}`` secrets do. Relative paths
    start from the pipeline file's folder, as ``${file:PATH}`` ones do.
    """

    certificate: str = Field(
        description="PEM file with the server's certificate, followed by its intermediates."
    )
    key: str = Field(description="PEM file with the certificate's private key.")
    key_password: Secret | None = Field(
        None, description="The key's passphrase when it is encrypted, from a reference."
    )

    def anchored(self, base_dir: FilePath) -> TlsSettings:
        """These settings with relative paths made absolute from ``base_dir``."""
        return self.model_copy(
            update={
                "certificate": str(base_dir / FilePath(self.certificate).expanduser()),
                "key": str(base_dir / FilePath(self.key).expanduser()),
            }
        )


class ServerSettings(_Settings):
    """The HTTP server (API, ingestion, metrics and dashboard)."""

    listen: str | None = Field(
        None, description="HOST:PORT to listen on; the command line's --listen wins."
    )
    header_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Close a new connection (after a 408) whose request headers have not all "
        "arrived by then.",
    )
    tokens: list[ServerToken] = Field(
        default_factory=list,
        description="Bearer tokens and their roles. Empty (the default): every request may do "
        "everything (for local use; a warning is logged when listening beyond loopback).",
    )
    anonymous_roles: list[Role] | None = Field(
        None,
        description="Roles of requests without a token. Default: every role when no tokens "
        "are configured, none when some are.",
    )
    tls: TlsSettings | None = Field(None, description="Serve HTTPS instead of HTTP.")

    @model_validator(mode="after")
    def _distinct_tokens(self) -> ServerSettings:
        names = [t.name for t in self.tokens]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"token names must be distinct: {', '.join(repeated)}")
        values = {t.token.get_secret_value() for t in self.tokens}
        if len(values) < len(self.tokens):
            raise ValueError("two tokens have the same value: give each holder its own")
        return self

    def anonymous(self) -> frozenset[Role]:
        """What a request without a token may do."""
        if self.anonymous_roles is not None:
            return frozenset(self.anonymous_roles)
        return frozenset() if self.tokens else frozenset(ROLES)

    def anchored(self, base_dir: FilePath) -> ServerSettings:
        """These settings with the TLS files' relative paths made absolute from ``base_dir``."""
        if self.tls is None:
            return self
        return self.model_copy(update={"tls": self.tls.anchored(base_dir)})

    def restart_needed(self, new: ServerSettings) -> list[str]:
        """The options that changed from these to ``new`` and apply only after a restart."""
        return [
            f"server.{name}"
            for name in ("listen", "tls")
            if getattr(self, name) != getattr(new, name)
        ]
