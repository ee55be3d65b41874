"""Argon2id password hashing off the event loop, interoperable with upstream's PHC strings (spec §6.8)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["PasswordService"]


class PasswordService:
    """m=19456 KiB, t=2, p=1, 32-byte hash, 16-byte salt (the Rust argon2 crate's defaults).

    Each hash takes tens of milliseconds and ~19 MiB, so work runs in threads and at most
    ``max_parallel`` at once: a burst of logins queues instead of exhausting memory.
    """

    def __init__(self, *, max_parallel: int = 2, time_cost: int = 2, memory_cost: int = 19456) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1,
                                      hash_len=32, salt_len=16, type=Type.ID)
        self._slots = asyncio.Semaphore(max_parallel)
        # A well-formed hash to verify against when the user does not exist, so an unknown
        # username costs the same time as a wrong password.
        self._dummy = self._hasher.hash("obscura-timing-equaliser")

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, phc: str | None, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify_sync, phc or self._dummy, password, phc is not None)

    def _verify_sync(self, phc: str, password: str, real: bool) -> bool:
        try:
            return self._hasher.verify(phc, password) and real
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
