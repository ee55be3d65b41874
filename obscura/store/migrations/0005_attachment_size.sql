-- The stored size of each attachment (issue 7: obscura_attachments_total_bytes). Written at
-- upload from the Content-Length the blob store enforced, so it is the object's exact size.
-- Nullable: rows uploaded before this migration have no known size and are left out of the sum.
-- Adding a nullable column without a default rewrites nothing (instant on a large table).
ALTER TABLE attachments ADD COLUMN size_bytes BIGINT;
