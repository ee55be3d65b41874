"""Push-token rules (spec §2.12) and the lookups the push worker needs (spec §6.3)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from obscura.errors import BadRequest, Unauthorized
from obscura.push.base import TOKEN_TYPES, PushTarget

__all__ = ["PushTokenService", "PushTokenStore", "MAX_TOKEN_BYTES"]

MAX_TOKEN_BYTES = 4096


class PushTokenStore(Protocol):
    async def upsert(self, device_id: uuid.UUID, token: str, token_type: str) -> bool: ...
    async def targets(self, device_ids: Sequence[uuid.UUID]) -> list[PushTarget]: ...
    async def delete_tokens(self, tokens: Sequence[str]) -> int: ...


class PushTokenService:
    def __init__(self, store: PushTokenStore) -> None:
        self._store = store

    async def register(self, device_id: uuid.UUID, token: str, token_type: str = "fcm") -> None:
        """Validate the trimmed token, store it as sent (untrimmed), replacing the device's old one."""
        trimmed = token.strip()
        if not trimmed:
            raise BadRequest("Token cannot be empty")
        # Upstream counts UTF-8 bytes of the trimmed value, whatever its message says.
        if len(trimmed.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            raise BadRequest("Token is too long (max 4096 characters)")
        if token_type not in TOKEN_TYPES:
            raise ValueError(f"unknown token type {token_type!r}")  # the API layer rejects these first
        if not await self._store.upsert(device_id, token, token_type):
            raise Unauthorized()  # the device was deleted after its token was checked (decisions §4.6)

    async def targets(self, device_ids: Sequence[uuid.UUID]) -> list[PushTarget]:
        """Tokens of the leased devices, one query (spec §6.3 step 3)."""
        return await self._store.targets(device_ids)

    async def delete_invalid(self, tokens: Sequence[str]) -> int:
        """Forget tokens a provider reported unregistered (spec §6.3 step 5)."""
        return await self._store.delete_tokens(list(dict.fromkeys(tokens)))
