-- Messages, attachments, push tokens and backups (spec §9, upstream 003_messaging_and_delivery.sql
-- as of v0.9.4: messages keyed by recipient device, deduplicated per sending device).
-- Immutable once released: change the schema with a new numbered file.

CREATE TABLE messages (
    id UUID NOT NULL,
    sender_id UUID NOT NULL,
    sender_device_id UUID NOT NULL,
    device_id UUID NOT NULL,
    submission_id UUID NOT NULL,
    content BYTEA NOT NULL,
    created_at TIMESTAMPTZ DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT messages_pkey PRIMARY KEY (id),
    CONSTRAINT messages_sender_id_fkey FOREIGN KEY (sender_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT messages_sender_device_id_fkey FOREIGN KEY (sender_device_id) REFERENCES devices (id) ON DELETE CASCADE,
    CONSTRAINT messages_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE,
    -- A sending device cannot store the same submission twice (spec §5.1).
    CONSTRAINT messages_sender_device_id_submission_id_key UNIQUE (sender_device_id, submission_id)
);

CREATE INDEX idx_messages_fetch ON messages (device_id, created_at);
CREATE INDEX idx_messages_expires_at ON messages (expires_at);

-- No owner and no size column, as upstream (spec §9).
CREATE TABLE attachments (
    id UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT attachments_pkey PRIMARY KEY (id)
);

CREATE INDEX idx_attachments_expires_at ON attachments (expires_at);

-- A token is not unique across devices (spec §9).
CREATE TABLE push_tokens (
    device_id UUID NOT NULL,
    token TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT push_tokens_pkey PRIMARY KEY (device_id),
    CONSTRAINT push_tokens_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE
);

CREATE INDEX idx_push_tokens_updated_at ON push_tokens (updated_at);
CREATE INDEX idx_push_tokens_token ON push_tokens (token);

-- state is 'ACTIVE' or 'UPLOADING' (spec §6.2).
CREATE TABLE backups (
    device_id UUID NOT NULL,
    current_version INT NOT NULL DEFAULT 0,
    pending_version INT,
    state VARCHAR NOT NULL DEFAULT 'ACTIVE',
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    pending_at TIMESTAMPTZ,
    CONSTRAINT backups_pkey PRIMARY KEY (device_id),
    CONSTRAINT backups_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE
);

CREATE INDEX idx_backups_state_pending_at ON backups (state, pending_at);
