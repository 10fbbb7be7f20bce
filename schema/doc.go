// Package schema holds the bun models of the workout planner and Trellis'
// own tables, the embedded SQL migrations that create them, and Open, which
// connects to PostgreSQL or SQLite from a URL.
//
// The tables:
//
//	workout_plans      id, name, client_id, trainer_id, is_active, created_at, updated_at
//	workout_phases     id, plan_id → workout_plans ON DELETE CASCADE, name, order_number, is_active, …
//	workout_sessions   id, phase_id → workout_phases ON DELETE CASCADE, name, order_number, …
//	workout_exercises  id, session_id → workout_sessions ON DELETE CASCADE, name, order_number,
//	                   sets, reps, weight, rest_seconds, tempo, notes, … (non-negative checks)
//	user_actions       one row per USER_ACTION job (id = job ID); acted_at is the envelope's timestamp
//	notifications      one row per NOTIFICATION job; delivered_at once the Notifier took it;
//	                   status, attempts, last_error, claimed_until (see Outbox)
//	email_outbox       one row per EMAIL job; sent_at once the Mailer sent it; the same
//	                   delivery columns
//	data_sync_runs     one row per DATA_SYNC job, with the plan's JSON snapshot
//	trellis_step_runs  the effectively-once records (package steps/steprun)
//
// The bounds of the columns the messages write (limits.go: MaxID, MaxName,
// MaxInt, …) are the ones every message checks at enqueue: the VARCHAR
// lengths of the migrations, and bounds of their own for the TEXT columns.
//
// Migrate brings a database up to date. On PostgreSQL several workers may
// call it at once: they take turns on an advisory lock scoped to the current
// schema, so one applies the migrations and the others find nothing to do.
// On SQLite (the embedded default, one process) calls within the process
// take turns on a mutex. The same migration files serve both dialects: they
// use SQL both accept, with the one type name that differs (timestamps)
// filled in from a template.
package schema
