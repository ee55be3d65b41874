-- Which provider a push token belongs to (issue 6): 'fcm' (upstream's only kind, so existing
-- rows and clients that send no type keep working) or 'apns' (delivered through APNs directly
-- when it is configured).
ALTER TABLE push_tokens
    ADD COLUMN token_type TEXT NOT NULL DEFAULT 'fcm',
    ADD CONSTRAINT push_tokens_token_type_check CHECK (token_type IN ('fcm', 'apns'));
