// Package workout holds the steps and message types of the workout planner:
// plans, phases, sessions and exercises, written through bun, and the Queue…
// helpers that compose the seed's workout graphs on the engine (plan before
// phase, the full plan save).
//
// Every message is a typed struct with a MessageType method and a Validate
// method whose errors name the offending field. Steps are idempotent: creates
// are upserts keyed by the caller's IDs and deletes tolerate absence.
//
// A full plan save (WORKOUT_PLAN_FULL_SAVE) replaces the plan's tree: its
// job writes the plan row and prunes what the message no longer holds, then
// expands into one create job per phase, session and exercise. Two saves of
// one plan may run at the same time (two uploads of one CSV, say); the plan
// ends as the save enqueued later says. Its job takes the plan over (the
// plan row records the save's job ID and enqueue time), and from then on
// the earlier save's jobs write nothing and report "superseded": its job,
// when it runs after the later one, and its creates, which name their save
// (the fullSave field). On PostgreSQL a create of the earlier save that is
// writing while the later save takes the plan over holds the plan row, so
// the later save prunes what it wrote once it commits.
package workout
