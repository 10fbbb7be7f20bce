ALTER TABLE trellis_step_runs ADD COLUMN enqueued_at VARCHAR(64) NOT NULL DEFAULT ''
