-- Signal-protocol key material per device (spec §9 and §4.3, upstream 002_signal_protocol.sql).
-- Immutable once released: change the schema with a new numbered file.

CREATE TABLE identity_keys (
    device_id UUID NOT NULL,
    identity_key BYTEA NOT NULL,
    registration_id INTEGER NOT NULL,
    CONSTRAINT identity_keys_pkey PRIMARY KEY (device_id),
    CONSTRAINT identity_keys_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE
);

-- id is the client's keyId; it is unique only within one device.
CREATE TABLE signed_pre_keys (
    id INTEGER NOT NULL,
    device_id UUID NOT NULL,
    public_key BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    created_at TIMESTAMPTZ DEFAULT now(),
    CONSTRAINT signed_pre_keys_pkey PRIMARY KEY (device_id, id),
    CONSTRAINT signed_pre_keys_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE
);

CREATE TABLE one_time_pre_keys (
    id INTEGER NOT NULL,
    device_id UUID NOT NULL,
    public_key BYTEA NOT NULL,
    created_at TIMESTAMPTZ DEFAULT now(),
    CONSTRAINT one_time_pre_keys_pkey PRIMARY KEY (device_id, id),
    CONSTRAINT one_time_pre_keys_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE
);
