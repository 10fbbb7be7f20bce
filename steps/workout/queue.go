package workout

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
)

// The workout queue integration of the BullMQ system Trellis replaces (WorkoutQueueIntegration), as
// functions over a flow client. Each enqueues one job (or, for the "Add
// Phase" sequence, a small graph) and returns what enqueue left. opts may
// be nil; what it leaves unset comes from the message type (DefaultOpts:
// the creates and updates retry for minutes, RaceOpts; a full plan save
// SturdyOpts), else from the client (3 attempts, exponential from 2s).

// add enqueues m with its type's default options where opts sets none.
func add(ctx context.Context, c *flow.Client, m flow.Message, opts *flow.NodeOpts, after ...string) (flow.EnqueuedJob, error) {
	return c.Add(ctx, m, flow.DefaultedOpts(m, opts), after...)
}

// QueuePlanCreate queues the creation of a workout plan.
func QueuePlanCreate(ctx context.Context, c *flow.Client, m PlanCreate, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueuePhaseCreate queues the creation of a phase in a plan that exists.
func QueuePhaseCreate(ctx context.Context, c *flow.Client, m PhaseCreate, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueuePhaseCreateWithDependency queues a phase create that waits for the
// job planJobID (normally the plan's create). An empty planJobID queues it
// without a dependency, as the BullMQ system does when the plan job could not be
// queued; the step then retries until the plan exists.
func QueuePhaseCreateWithDependency(ctx context.Context, c *flow.Client, m PhaseCreate, planJobID string, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	if planJobID == "" {
		return add(ctx, c, m, opts)
	}
	return add(ctx, c, m, opts, planJobID)
}

// QueuePhaseUpdate queues a change to a phase.
func QueuePhaseUpdate(ctx context.Context, c *flow.Client, m PhaseUpdate, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueuePhaseDelete queues the deletion of a phase with its sessions and exercises.
func QueuePhaseDelete(ctx context.Context, c *flow.Client, m PhaseDelete, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueueSessionCreate queues the creation of a session.
func QueueSessionCreate(ctx context.Context, c *flow.Client, m SessionCreate, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueueSessionUpdate queues a change to a session.
func QueueSessionUpdate(ctx context.Context, c *flow.Client, m SessionUpdate, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueueSessionDelete queues the deletion of a session with its exercises.
func QueueSessionDelete(ctx context.Context, c *flow.Client, m SessionDelete, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueueExerciseCreate queues the creation of an exercise.
func QueueExerciseCreate(ctx context.Context, c *flow.Client, m ExerciseCreate, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueueExerciseUpdate queues a change to an exercise.
func QueueExerciseUpdate(ctx context.Context, c *flow.Client, m ExerciseUpdate, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueueExerciseDelete queues the deletion of an exercise.
func QueueExerciseDelete(ctx context.Context, c *flow.Client, m ExerciseDelete, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// QueueFullPlanSave queues a whole plan (a CSV upload, a full save). The
// job saves the plan row, then expands into one job per phase, session and
// exercise; wait for it with c.Wait(ctx, job.ID) — it finishes when the
// whole tree is saved. Unless opts sets them, the job and its sub-graph
// retry with the sturdy policy (SturdyOpts), which rides out a database
// restart.
func QueueFullPlanSave(ctx context.Context, c *flow.Client, m PlanFullSave, opts *flow.NodeOpts) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, opts)
}

// SendWorkoutUpdate queues the legacy WORKOUT_UPDATE change set on one
// exercise (BullMQ's sendWorkoutUpdateMessage); userID goes into the
// envelope.
func SendWorkoutUpdate(ctx context.Context, c *flow.Client, m WorkoutUpdate, userID string) (flow.EnqueuedJob, error) {
	return add(ctx, c, m, &flow.NodeOpts{UserID: userID})
}

// PlanCreateJobID is the job ID QueueAddPhase gives a plan's create, so
// that two "Add Phase" clicks on a new plan share one plan job.
func PlanCreateJobID(planID string) string { return "workout-plan-create:" + planID }

// AddPhaseResult says what QueueAddPhase queued.
type AddPhaseResult struct {
	// PlanJob is the plan's create job, when the plan did not exist yet
	// (Existed is true when an earlier Add Phase had queued it already).
	PlanJob *flow.EnqueuedJob
	// PhaseJob is the phase's create job.
	PhaseJob flow.EnqueuedJob
}

// QueueAddPhase is the BullMQ system's "Add Phase" sequence in one call: if plan
// exists in db, it queues the phase create alone; if not, it queues the
// plan create and the phase create depending on it, in one all-or-nothing
// enqueue. The plan job has a fixed ID (PlanCreateJobID), so adding a second
// phase before the plan job ran waits on the same plan job instead of
// creating the plan twice.
func QueueAddPhase(ctx context.Context, c *flow.Client, db bun.IDB, plan PlanCreate, phase PhaseData, opts *flow.NodeOpts) (AddPhaseResult, error) {
	pc := PhaseCreate{PlanID: plan.PlanID, ClientID: plan.ClientID, TrainerID: plan.TrainerID, Phase: phase}
	exists, err := planExists(ctx, db, plan.PlanID)
	if err != nil {
		return AddPhaseResult{}, fmt.Errorf("workout: add phase: look up plan %s: %w", plan.PlanID, err)
	}
	if exists {
		j, err := QueuePhaseCreate(ctx, c, pc, opts)
		return AddPhaseResult{PhaseJob: j}, err
	}
	planOpts, phaseOpts := flow.DefaultedOpts(plan, opts), flow.DefaultedOpts(pc, opts)
	planOpts.ID = PlanCreateJobID(plan.PlanID)
	g := flow.New()
	pn := g.Add(plan, planOpts)
	phn := g.Add(pc, phaseOpts).After(pn)
	res, err := c.Enqueue(ctx, g)
	if err != nil {
		return AddPhaseResult{}, err
	}
	pj, _ := res.Job(pn.ID())
	phj, _ := res.Job(phn.ID())
	return AddPhaseResult{PlanJob: &pj, PhaseJob: phj}, nil
}
