ALTER TABLE workout_plans DROP COLUMN full_save_at
--bun:split
ALTER TABLE workout_plans DROP COLUMN full_save_job
