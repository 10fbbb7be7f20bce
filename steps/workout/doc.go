// Package workout holds the steps and message types of the workout planner:
// plans, phases, sessions and exercises, written through bun, and the Queue…
// helpers that compose the workout graphs of the BullMQ system Trellis replaces on the engine (plan before
// phase, the full plan save).
//
// Every message is a typed struct with a MessageType method and a Validate
// method whose errors name the offending field. Steps are idempotent: creates
// are upserts keyed by the caller's IDs and deletes tolerate absence.
//
// # Data isolation
//
// A message names a row by its whole path: plan (with its client and
// trainer, where the message carries them), phase, session, exercise.
// Every create, update and delete holds each row it names to that path
// with one check: a row that exists elsewhere (a phase of another plan, a
// session of another phase, a plan of another client or trainer) fails
// the job for good with an *OwnershipError naming both sides, e.g.
// `phase "p1" belongs to plan "B", not "C"`, and nothing is written. A row
// never moves to another plan and a plan never to another client or
// trainer. A missing row above the one written is a retryable
// *NotFoundError instead (its create may be on its way); a delete of a
// missing row succeeds as "absent".
//
// A create of a row that exists where the message puts it (a duplicate
// send) succeeds: "unchanged" when the row holds the message's data already
// (nothing is written), "updated" when it differs. A replay of the same job
// returns the first run's result (package steprun). Only the creates of a
// full plan save may move a row to another parent within their plan, as
// the saved tree says; the save refuses at once, before it writes
// anything, a tree that names a phase, session or exercise of another plan
// (an explicit ID in a CSV, say). Which save a create belongs to travels
// in an internal field that the public messages do not have, so a JSON
// envelope cannot claim it.
//
// # Batches
//
// The creates of plans, phases, sessions and exercises are batch steps
// (flow.BatchStep, CreateBatching): a runner hands each up to 200 ready
// jobs of its type, which it writes in one transaction with the jobs'
// records (steprun.DoBatch): one statement reads the parents, one
// multi-row insert writes the new rows, and only the items that are not
// plain creates (a row that is there already, a missing or misplaced
// parent, a superseded save) take statements of their own. Every item
// keeps its own outcome, as if it had run alone. Updates and deletes run
// one job at a time.
//
// # Retries
//
// A create whose parent row does not exist yet (the create race: a phase
// create that runs before its plan's), or an update whose row does not,
// fails with a retryable *NotFoundError and runs again until the row is
// there. The creates and updates carry their retry budget (DefaultOpts,
// RaceOpts): 20 attempts, 2s, 4s, 8s, 16s and then every 30s, with jitter,
// so the missing row has 4 to 8 minutes to arrive. A full plan save and
// its sub-graph retry 10 times over 75 to 150 s (SturdyOpts), enough for
// a database restart; their creates run after their parents and do not
// race. Every enqueue (flow.Client.Add, Enqueue, AddJSON and so `trellis
// enqueue` and POST /api/enqueue, the Queue… helpers) applies these where
// the caller's options set no attempts or backoff. Deletes keep the
// client's defaults: they wait for nothing.
//
// A full plan save (WORKOUT_PLAN_FULL_SAVE) replaces the plan's tree: its
// job writes the plan row and prunes what the message no longer holds, then
// expands into one create job per phase, session and exercise. Two saves of
// one plan may run at the same time (two uploads of one CSV, say); the plan
// ends as the save enqueued later says. Its job takes the plan over (the
// plan row records the save's job ID and enqueue time), and from then on
// the earlier save's jobs write nothing and report "superseded": its job,
// when it runs after the later one, and its creates, which name their save
// (an internal fullSave field). "Enqueued later" goes by the envelopes'
// enqueue time (flow.Envelope.Enqueued), not the client's timestamp. On
// PostgreSQL a create of the earlier save that is
// writing while the later save takes the plan over holds the plan row, so
// the later save prunes what it wrote once it commits.
package workout
