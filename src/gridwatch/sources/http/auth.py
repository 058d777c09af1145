"""Bearer tokens for the HTTP ingestion endpoint: who may write which producers."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from gridwatch.config.secrets import Secret

ANY_PRODUCER = "*"


class TokenGrant(BaseModel):
    """One bearer token and the producers it may write."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Who holds the token (shown in logs, never the token itself).")
    token: Secret = Field(description="The bearer token, from ${env:NAME} or ${file:PATH}.")
    producers: list[str] = Field(
        min_length=1, description="Producers this token may write ('*': any producer)."
    )


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a token holder's name (or 'anonymous') and their producers."""

    name: str
    producers: frozenset[str]

    def forbidden(self, producers: Iterable[str]) -> list[str]:
        """The producers among ``producers`` that this caller may not write, sorted."""
        if ANY_PRODUCER in self.producers:
            return []
        return sorted(set(producers) - self.producers)


class Authenticator:
    """Maps an ``Authorization`` header to a :class:`Caller`, comparing in constant time."""

    def __init__(self, grants: list[TokenGrant], anonymous_producers: list[str]) -> None:
        self._grants = [
            (
                grant.token.get_secret_value().encode(),
                Caller(grant.name, frozenset(grant.producers)),
            )
            for grant in grants
        ]
        self._anonymous = (
            Caller("anonymous", frozenset(anonymous_producers)) if anonymous_producers else None
        )

    def caller(self, authorization: str | None) -> Caller | None:
        """The caller for this header, or ``None`` when it does not authenticate anyone."""
        if authorization is None:
            return self._anonymous
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        token = presented.strip().encode()
        found: Caller | None = None
        # Compare with every token, without stopping early, so timing tells nothing.
        for secret, caller in self._grants:
            if hmac.compare_digest(secret, token):
                found = caller
        return found
