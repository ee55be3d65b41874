"""The migrated schema is exactly spec §9 (minus uuidv7() defaults), checked in the catalog and by behaviour."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest
import pytest_asyncio

NOW = "now()"
# table -> [(column, data_type, char max length, nullable, default)] in column order (spec §9).
COLUMNS = {
    "users": [
        ("id", "uuid", None, False, None),
        ("username", "character varying", 50, False, None),
        ("password_hash", "character varying", 255, False, None),
        ("created_at", "timestamp with time zone", None, True, NOW),
    ],
    "devices": [
        ("id", "uuid", None, False, None),
        ("user_id", "uuid", None, False, None),
        ("name", "character varying", 100, True, None),
        ("created_at", "timestamp with time zone", None, True, NOW),
    ],
    "refresh_tokens": [
        ("token_hash", "character varying", None, False, None),
        ("user_id", "uuid", None, False, None),
        ("device_id", "uuid", None, True, None),
        ("expires_at", "timestamp with time zone", None, False, None),
        ("created_at", "timestamp with time zone", None, False, NOW),
    ],
    "identity_keys": [
        ("device_id", "uuid", None, False, None),
        ("identity_key", "bytea", None, False, None),
        ("registration_id", "integer", None, False, None),
    ],
    "signed_pre_keys": [
        ("id", "integer", None, False, None),
        ("device_id", "uuid", None, False, None),
        ("public_key", "bytea", None, False, None),
        ("signature", "bytea", None, False, None),
        ("created_at", "timestamp with time zone", None, True, NOW),
    ],
    "one_time_pre_keys": [
        ("id", "integer", None, False, None),
        ("device_id", "uuid", None, False, None),
        ("public_key", "bytea", None, False, None),
        ("created_at", "timestamp with time zone", None, True, NOW),
    ],
    "messages": [
        ("id", "uuid", None, False, None),
        ("sender_id", "uuid", None, False, None),
        ("sender_device_id", "uuid", None, False, None),
        ("device_id", "uuid", None, False, None),
        ("submission_id", "uuid", None, False, None),
        ("content", "bytea", None, False, None),
        ("created_at", "timestamp with time zone", None, True, NOW),
        ("expires_at", "timestamp with time zone", None, False, None),
    ],
    "attachments": [
        ("id", "uuid", None, False, None),
        ("expires_at", "timestamp with time zone", None, False, None),
        ("size_bytes", "bigint", None, True, None),  # ours: 0005 (issue 7)
    ],
    "push_tokens": [
        ("device_id", "uuid", None, False, None),
        ("token", "text", None, False, None),
        ("updated_at", "timestamp with time zone", None, False, NOW),
        ("token_type", "text", None, False, "'fcm'::text"),  # ours: 0004 (issue 6)
    ],
    "backups": [
        ("device_id", "uuid", None, False, None),
        ("current_version", "integer", None, False, "0"),
        ("pending_version", "integer", None, True, None),
        ("state", "character varying", None, False, "'ACTIVE'::character varying"),
        ("updated_at", "timestamp with time zone", None, False, NOW),
        ("pending_at", "timestamp with time zone", None, True, None),
    ],
}

PRIMARY_KEYS = {
    "users": ["id"], "devices": ["id"], "refresh_tokens": ["token_hash"], "identity_keys": ["device_id"],
    "signed_pre_keys": ["device_id", "id"], "one_time_pre_keys": ["device_id", "id"], "messages": ["id"],
    "attachments": ["id"], "push_tokens": ["device_id"], "backups": ["device_id"],
}

# (table, column) -> referenced (table, column); every one is ON DELETE CASCADE.
FOREIGN_KEYS = {
    ("devices", "user_id"): ("users", "id"),
    ("refresh_tokens", "user_id"): ("users", "id"),
    ("refresh_tokens", "device_id"): ("devices", "id"),
    ("identity_keys", "device_id"): ("devices", "id"),
    ("signed_pre_keys", "device_id"): ("devices", "id"),
    ("one_time_pre_keys", "device_id"): ("devices", "id"),
    ("messages", "sender_id"): ("users", "id"),
    ("messages", "sender_device_id"): ("devices", "id"),
    ("messages", "device_id"): ("devices", "id"),
    ("push_tokens", "device_id"): ("devices", "id"),
    ("backups", "device_id"): ("devices", "id"),
}

UNIQUES = {
    "users_username_key": ("users", ["username"]),
    "messages_sender_device_id_submission_id_key": ("messages", ["sender_device_id", "submission_id"]),
}

INDEXES = {
    "idx_devices_user_id": ("devices", ["user_id"]),
    "idx_refresh_tokens_user_id": ("refresh_tokens", ["user_id"]),
    "idx_refresh_tokens_expires_at": ("refresh_tokens", ["expires_at"]),
    "idx_messages_fetch": ("messages", ["device_id", "created_at"]),
    "idx_messages_expires_at": ("messages", ["expires_at"]),
    "idx_attachments_expires_at": ("attachments", ["expires_at"]),
    "idx_push_tokens_updated_at": ("push_tokens", ["updated_at"]),
    "idx_push_tokens_token": ("push_tokens", ["token"]),
    "idx_backups_state_pending_at": ("backups", ["state", "pending_at"]),
}

_CONSTRAINTS_SQL = """
SELECT c.conname, c.contype::text AS contype, t.relname AS table, r.relname AS ref_table,
       c.confdeltype::text AS confdeltype,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS cols,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) AS ref_cols,
       pg_get_constraintdef(c.oid) AS def
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid LEFT JOIN pg_class r ON r.oid = c.confrelid
WHERE c.connamespace = 'public'::regnamespace AND c.contype IN ('p', 'f', 'u', 'c')
"""

_INDEXES_SQL = """
SELECT i.relname AS name, t.relname AS table, ix.indisunique AS is_unique,
       ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o) AS cols
FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid
WHERE t.relnamespace = 'public'::regnamespace
"""


@pytest_asyncio.fixture
async def conn(database_url):
    c = await asyncpg.connect(database_url, timeout=30)
    try:
        yield c
    finally:
        await c.close(timeout=10)


async def test_tables(conn):
    rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    assert {r["table_name"] for r in rows} == set(COLUMNS) | {"obscura_schema_migrations"}


@pytest.mark.parametrize("table", sorted(COLUMNS))
async def test_columns(conn, table):
    rows = await conn.fetch(
        "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 "
        "ORDER BY ordinal_position", table)
    got = [(r["column_name"], r["data_type"], r["character_maximum_length"], r["is_nullable"] == "YES",
            r["column_default"]) for r in rows]
    assert got == COLUMNS[table]


async def test_primary_keys_foreign_keys_uniques_and_check(conn):
    rows = [r for r in await conn.fetch(_CONSTRAINTS_SQL) if r["table"] != "obscura_schema_migrations"]
    pks = {r["table"]: list(r["cols"]) for r in rows if r["contype"] == "p"}
    assert pks == PRIMARY_KEYS
    assert {r["conname"] for r in rows if r["contype"] == "p"} == {f"{t}_pkey" for t in PRIMARY_KEYS}
    fks = {(r["table"], r["cols"][0]): (r["ref_table"], r["ref_cols"][0]) for r in rows if r["contype"] == "f"}
    assert fks == FOREIGN_KEYS
    assert all(len(r["cols"]) == 1 and r["confdeltype"] == "c" for r in rows if r["contype"] == "f")
    uniques = {r["conname"]: (r["table"], list(r["cols"])) for r in rows if r["contype"] == "u"}
    assert uniques == UNIQUES
    checks = [(r["conname"], r["table"], r["def"]) for r in rows if r["contype"] == "c"]
    assert sorted(checks) == [
        ("push_tokens_token_type_check", "push_tokens",  # ours: 0004 (issue 6)
         "CHECK ((token_type = ANY (ARRAY['fcm'::text, 'apns'::text])))"),
        ("users_username_check", "users", "CHECK (((username)::text ~ '^[a-z0-9_]{3,50}$'::text))")]


async def test_indexes(conn):
    rows = await conn.fetch(_INDEXES_SQL)
    named = {r["name"]: (r["table"], list(r["cols"])) for r in rows if r["name"].startswith("idx_")}
    assert named == INDEXES
    assert not any(r["is_unique"] for r in rows if r["name"].startswith("idx_"))
    # Besides those: one index per primary key and unique constraint, nothing else.
    others = {r["name"] for r in rows if not r["name"].startswith("idx_")}
    assert others == {f"{t}_pkey" for t in PRIMARY_KEYS} | set(UNIQUES) | {"obscura_schema_migrations_pkey"}


# -- behaviour --------------------------------------------------------------------------------

async def _user(conn, username="alice_1") -> uuid.UUID:
    uid = uuid.uuid4()
    await conn.execute("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')", uid, username)
    return uid


async def _device(conn, user_id) -> uuid.UUID:
    did = uuid.uuid4()
    await conn.execute("INSERT INTO devices (id, user_id) VALUES ($1, $2)", did, user_id)
    return did


@pytest.mark.parametrize("username", ["ab", "Alice", "al-ice", "al ice", "é_abc"])
async def test_username_check_rejects(conn, username):
    with pytest.raises(asyncpg.CheckViolationError):
        await _user(conn, username)


async def test_username_rules_accept_and_unique(conn):
    await _user(conn, "abc")
    await _user(conn, "a" * 50)
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        await _user(conn, "a" * 51)
    with pytest.raises(asyncpg.UniqueViolationError):
        await _user(conn, "abc")
    await conn.execute("DELETE FROM users")


async def test_ids_come_from_the_application(conn):
    with pytest.raises(asyncpg.NotNullViolationError):
        await conn.execute("INSERT INTO users (username, password_hash) VALUES ('no_id', 'x')")


async def test_deleting_a_user_cascades_everywhere(conn):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    alice, bob = await _user(conn, "alice"), await _user(conn, "bob")
    a_dev, b_dev = await _device(conn, alice), await _device(conn, bob)
    await conn.execute("INSERT INTO refresh_tokens VALUES ('h1', $1, $2, $3)", alice, a_dev, later)
    await conn.execute("INSERT INTO identity_keys VALUES ($1, $2, 7)", a_dev, b"\x05" * 33)
    await conn.execute("INSERT INTO signed_pre_keys (id, device_id, public_key, signature) VALUES (1, $1, 'k', 's')", a_dev)
    await conn.execute("INSERT INTO one_time_pre_keys (id, device_id, public_key) VALUES (1, $1, 'k')", a_dev)
    await conn.execute("INSERT INTO push_tokens (device_id, token) VALUES ($1, 't')", a_dev)
    await conn.execute("INSERT INTO backups (device_id) VALUES ($1)", a_dev)
    sub = uuid.uuid4()
    insert_msg = ("INSERT INTO messages (id, sender_id, sender_device_id, device_id, submission_id, content, expires_at)"
                  " VALUES ($1, $2, $3, $4, $5, 'c', $6)")
    await conn.execute(insert_msg, uuid.uuid4(), bob, b_dev, a_dev, sub, later)      # bob -> alice
    await conn.execute(insert_msg, uuid.uuid4(), alice, a_dev, b_dev, sub, later)    # alice -> bob
    with pytest.raises(asyncpg.UniqueViolationError):                                 # same submission twice
        await conn.execute(insert_msg, uuid.uuid4(), bob, b_dev, b_dev, sub, later)
    assert await conn.fetchval("SELECT state FROM backups") == "ACTIVE"
    assert await conn.fetchval("SELECT current_version FROM backups") == 0

    await conn.execute("DELETE FROM users WHERE id = $1", alice)
    for table in ("devices", "refresh_tokens", "identity_keys", "signed_pre_keys", "one_time_pre_keys",
                  "push_tokens", "backups"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {'user_id' if table == 'devices' else 'device_id'} = $1",
                                   alice if table == "devices" else a_dev) == 0, table
    assert await conn.fetchval("SELECT count(*) FROM messages") == 0  # both directions involved alice
    assert await conn.fetchval("SELECT count(*) FROM devices") == 1
    await conn.execute("DELETE FROM users")
