ALTER TABLE trellis_step_runs DROP COLUMN enqueued_at
