// Package workout holds the steps and message types of the workout planner:
// plans, phases, sessions and exercises, written through bun, and the Queue…
// helpers that compose the seed's workout graphs on the engine (plan before
// phase, the full plan save).
//
// Every message is a typed struct with a MessageType method and a Validate
// method whose errors name the offending field. Steps are idempotent: creates
// are upserts keyed by the caller's IDs and deletes tolerate absence.
package workout
