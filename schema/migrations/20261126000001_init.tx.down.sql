DROP TABLE IF EXISTS trellis_step_runs
--bun:split
DROP TABLE IF EXISTS data_sync_runs
--bun:split
DROP TABLE IF EXISTS email_outbox
--bun:split
DROP TABLE IF EXISTS notifications
--bun:split
DROP TABLE IF EXISTS user_actions
--bun:split
DROP TABLE IF EXISTS workout_exercises
--bun:split
DROP TABLE IF EXISTS workout_sessions
--bun:split
DROP TABLE IF EXISTS workout_phases
--bun:split
DROP TABLE IF EXISTS workout_plans
