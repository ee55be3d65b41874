"""Signal key material in PostgreSQL: the §4.4 upload steps and bundle claiming (spec §2.9, §4.3)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence

import asyncpg

from obscura.domain.devices import PreKeyBundle, StoredIdentity
from obscura.domain.keys import OneTimePreKey, SignedPreKey
from obscura.store.postgres.pool import Database

__all__ = ["PgKeyRepo"]

# Keyed devices of a user with their newest signed prekey (spec §2.9: devices without an
# identity key or without an SPK are skipped). Upstream has no ORDER BY (§13 item 22); creation
# order costs nothing and keeps responses stable.
_KEYED_DEVICES = """
SELECT d.id, ik.identity_key, ik.registration_id, spk.id AS spk_id, spk.public_key, spk.signature
FROM devices d
JOIN identity_keys ik ON ik.device_id = d.id
JOIN LATERAL (
    SELECT s.id, s.public_key, s.signature FROM signed_pre_keys s
    WHERE s.device_id = d.id ORDER BY s.created_at DESC, s.id DESC LIMIT 1
) spk ON TRUE
WHERE d.user_id = $1
ORDER BY d.created_at, d.id
"""

# Consume one one-time prekey. SKIP LOCKED: two concurrent fetches never take the same row
# (spec §4.3). The count comes from the statement's snapshot, which still holds the deleted row.
_CLAIM_ONE = """
WITH picked AS (
    SELECT id FROM one_time_pre_keys WHERE device_id = $1 LIMIT 1 FOR UPDATE SKIP LOCKED
), taken AS (
    DELETE FROM one_time_pre_keys o USING picked
    WHERE o.device_id = $1 AND o.id = picked.id
    RETURNING o.id, o.public_key
)
SELECT (SELECT id FROM taken) AS id, (SELECT public_key FROM taken) AS public_key,
       (SELECT count(*) FROM one_time_pre_keys WHERE device_id = $1) - (SELECT count(*) FROM taken) AS remaining
"""


class PgKeyRepo:
    """SQL for key uploads and bundle fetches. ``*_txn`` methods run inside a caller's transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def transaction(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        return self._db.transaction()

    # -- upload (spec §4.4), in the caller's transaction ----------------------------------------
    async def lock_identity_txn(self, conn: asyncpg.Connection,
                                device_id: uuid.UUID) -> tuple[bool, StoredIdentity | None]:
        """(device exists, stored identity), locking the device for the rest of the transaction.

        The device row is the lock (NO KEY UPDATE: it does not block foreign-key checks), so
        concurrent uploads for one device serialise even before it has an identity row, and a
        concurrent delete waits for us instead of failing our inserts.
        """
        row = await conn.fetchrow(
            "SELECT d.id, ik.identity_key, ik.registration_id FROM devices d "
            "LEFT JOIN identity_keys ik ON ik.device_id = d.id WHERE d.id = $1 FOR NO KEY UPDATE OF d",
            device_id)
        if row is None:
            return False, None
        if row["identity_key"] is None:
            return True, None
        return True, StoredIdentity(bytes(row["identity_key"]), row["registration_id"])

    async def max_signed_prekey_id_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID) -> int | None:
        return await conn.fetchval("SELECT max(id) FROM signed_pre_keys WHERE device_id = $1", device_id)

    async def count_one_time_prekeys_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID) -> int:
        return await conn.fetchval("SELECT count(*) FROM one_time_pre_keys WHERE device_id = $1", device_id)

    async def wipe_prekeys_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID) -> None:
        await conn.execute("DELETE FROM signed_pre_keys WHERE device_id = $1", device_id)
        await conn.execute("DELETE FROM one_time_pre_keys WHERE device_id = $1", device_id)

    async def upsert_identity_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID, identity_key: bytes,
                                  registration_id: int) -> None:
        await conn.execute(
            "INSERT INTO identity_keys (device_id, identity_key, registration_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (device_id) DO UPDATE SET identity_key = EXCLUDED.identity_key, "
            "registration_id = EXCLUDED.registration_id",
            device_id, identity_key, registration_id)

    async def prune_oldest_one_time_prekeys_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID,
                                                 count: int) -> None:
        """Delete the ``count`` oldest one-time prekeys (ties, i.e. one upload, by id)."""
        await conn.execute(
            "DELETE FROM one_time_pre_keys WHERE device_id = $1 AND id IN ("
            " SELECT id FROM one_time_pre_keys WHERE device_id = $1 ORDER BY created_at, id LIMIT $2)",
            device_id, count)

    async def upsert_signed_prekey_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID,
                                       spk: SignedPreKey) -> None:
        await conn.execute(
            "INSERT INTO signed_pre_keys (id, device_id, public_key, signature) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (device_id, id) DO UPDATE SET public_key = EXCLUDED.public_key, "
            "signature = EXCLUDED.signature",
            spk.key_id, device_id, spk.public_key, spk.signature)

    async def delete_signed_prekeys_below_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID,
                                              key_id: int) -> None:
        await conn.execute("DELETE FROM signed_pre_keys WHERE device_id = $1 AND id < $2", device_id, key_id)

    async def insert_one_time_prekeys_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID,
                                          keys: Sequence[OneTimePreKey]) -> None:
        """Insert in one statement; an id the device already has is silently kept (spec §4.3)."""
        if not keys:
            return
        await conn.execute(
            "INSERT INTO one_time_pre_keys (id, device_id, public_key) "
            "SELECT k.id, $1, k.public_key FROM unnest($2::int4[], $3::bytea[]) AS k(id, public_key) "
            "ON CONFLICT DO NOTHING",
            device_id, [k.key_id for k in keys], [k.public_key for k in keys])

    async def wipe_inbox_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID) -> None:
        """Takeover: every pending message addressed to the device goes (spec §4.4 step 10)."""
        await conn.execute("DELETE FROM messages WHERE device_id = $1", device_id)

    # -- bundles (spec §2.9), one transaction ------------------------------------------------------
    async def claim_bundles(self, user_id: uuid.UUID) -> list[tuple[PreKeyBundle, int]]:
        """Every keyed device's bundle, each consuming one one-time prekey, with the count left."""
        out: list[tuple[PreKeyBundle, int]] = []
        async with self.transaction() as conn:
            devices = await conn.fetch(_KEYED_DEVICES, user_id)
            for d in devices:
                claim = await conn.fetchrow(_CLAIM_ONE, d["id"])
                otpk = None if claim["id"] is None else OneTimePreKey(claim["id"], bytes(claim["public_key"]))
                spk = SignedPreKey(d["spk_id"], bytes(d["public_key"]), bytes(d["signature"]))
                bundle = PreKeyBundle(d["id"], d["registration_id"], bytes(d["identity_key"]), spk, otpk)
                out.append((bundle, claim["remaining"]))
        return out

    async def one_time_prekey_count(self, device_id: uuid.UUID) -> int | None:
        """The device's one-time prekey count, or None when the device does not exist."""
        async with self._db.acquire() as conn:
            return await conn.fetchval(
                "SELECT (SELECT count(*) FROM one_time_pre_keys WHERE device_id = $1) FROM devices WHERE id = $1",
                device_id)
