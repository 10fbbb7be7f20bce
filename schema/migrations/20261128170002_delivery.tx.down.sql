DROP INDEX IF EXISTS notifications_status_idx
--bun:split
ALTER TABLE notifications DROP COLUMN claimed_until
--bun:split
ALTER TABLE notifications DROP COLUMN last_error
--bun:split
ALTER TABLE notifications DROP COLUMN attempts
--bun:split
ALTER TABLE notifications DROP COLUMN status
--bun:split
DROP INDEX IF EXISTS email_outbox_status_idx
--bun:split
ALTER TABLE email_outbox DROP COLUMN claimed_until
--bun:split
ALTER TABLE email_outbox DROP COLUMN last_error
--bun:split
ALTER TABLE email_outbox DROP COLUMN attempts
--bun:split
ALTER TABLE email_outbox DROP COLUMN status
