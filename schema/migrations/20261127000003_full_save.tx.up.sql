ALTER TABLE workout_plans ADD COLUMN full_save_job VARCHAR(256) NOT NULL DEFAULT ''
--bun:split
ALTER TABLE workout_plans ADD COLUMN full_save_at BIGINT NOT NULL DEFAULT 0
