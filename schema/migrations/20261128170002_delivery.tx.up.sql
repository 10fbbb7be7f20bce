ALTER TABLE email_outbox ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'pending'
--bun:split
ALTER TABLE email_outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0
--bun:split
ALTER TABLE email_outbox ADD COLUMN last_error TEXT NOT NULL DEFAULT ''
--bun:split
ALTER TABLE email_outbox ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0
--bun:split
UPDATE email_outbox SET status = 'sent' WHERE sent_at IS NOT NULL
--bun:split
UPDATE email_outbox SET status = 'undelivered', last_error = 'stored before deliveries were tracked' WHERE sent_at IS NULL
--bun:split
CREATE INDEX email_outbox_status_idx ON email_outbox (status, created_at)
--bun:split
ALTER TABLE notifications ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'pending'
--bun:split
ALTER TABLE notifications ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0
--bun:split
ALTER TABLE notifications ADD COLUMN last_error TEXT NOT NULL DEFAULT ''
--bun:split
ALTER TABLE notifications ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0
--bun:split
UPDATE notifications SET status = 'delivered' WHERE delivered_at IS NOT NULL
--bun:split
UPDATE notifications SET status = 'undelivered', last_error = 'stored before deliveries were tracked' WHERE delivered_at IS NULL
--bun:split
CREATE INDEX notifications_status_idx ON notifications (status, created_at)
