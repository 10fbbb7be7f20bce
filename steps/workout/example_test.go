package workout_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/system"
	"github.com/trellisflow/trellis/steps/workout"
)

// exampleEngine is the embedded default: an in-memory SQLite and an
// in-process Redis, with a runner for the workout steps.
func exampleEngine(ctx context.Context) (*flow.Client, *bun.DB, func()) {
	db, err := schema.Open("sqlite::memory:")
	if err != nil {
		panic(err)
	}
	if _, err := schema.Migrate(ctx, db); err != nil {
		panic(err)
	}
	rdb, err := embedded.NewRedis()
	if err != nil {
		panic(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := flow.NewClient(rdb.Client(), &flow.Config{Namespace: "example", Logger: quiet})
	if err != nil {
		panic(err)
	}
	r, err := runner.New(c, &runner.Config{IdleWait: 50 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	if err := r.Register(workout.Steps(db)...); err != nil {
		panic(err)
	}
	if err := r.Start(ctx); err != nil {
		panic(err)
	}
	return c, db, func() { _ = r.Stop(ctx); _ = rdb.Close(); _ = db.Close() }
}

// A whole plan in one message: the job saves the plan, then expands into a
// job per phase, session and exercise.
func ExampleQueueFullPlanSave() {
	ctx := context.Background()
	c, db, stop := exampleEngine(ctx)
	defer stop()

	plan := workout.PlanFullSave{PlanID: "plan-1", Name: "Spring block", ClientID: "client-1", TrainerID: "trainer-1", IsActive: true,
		Phases: []workout.PhaseTree{{
			PhaseData: workout.PhaseData{ID: "base", Name: "Base", OrderNumber: 1, IsActive: true},
			Sessions: []workout.SessionTree{{
				SessionData: workout.SessionData{ID: "base-day-1", Name: "Lower", OrderNumber: 1},
				Exercises: []workout.ExerciseData{
					{ID: "squat", Name: "Back squat", OrderNumber: 1, Sets: 5, Reps: 5, Weight: 100, Rest: 180, Tempo: "3-1-1"},
					{ID: "rdl", Name: "Romanian deadlift", OrderNumber: 2, Sets: 3, Reps: 8, Weight: 80, Rest: 120},
				},
			}},
		}}}
	job, err := workout.QueueFullPlanSave(ctx, c, plan, &flow.NodeOpts{ID: "save-1"})
	if err != nil {
		panic(err)
	}
	f, err := c.Wait(ctx, job.ID)
	if err != nil {
		panic(err)
	}
	var lines []string
	for _, n := range f.Nodes {
		lines = append(lines, fmt.Sprint(n.State, " ", n.ID))
	}
	sort.Strings(lines)
	fmt.Println(strings.Join(lines, "\n"))
	snap, err := system.Snapshot(ctx, db, "plan-1")
	if err != nil {
		panic(err)
	}
	for _, e := range snap.Phases[0].Sessions[0].Exercises {
		fmt.Printf("%s: %d×%d at %gkg\n", e.Name, e.Sets, e.Reps, e.Weight)
	}
	// Output:
	// succeeded save-1
	// succeeded save-1/exercise/rdl
	// succeeded save-1/exercise/squat
	// succeeded save-1/phase/base
	// succeeded save-1/session/base-day-1
	// Back squat: 5×5 at 100kg
	// Romanian deadlift: 3×8 at 80kg
}

// The seed's "Add Phase" sequence: the plan does not exist yet, so the plan
// create is queued with the phase create depending on it.
func ExampleQueueAddPhase() {
	ctx := context.Background()
	c, db, stop := exampleEngine(ctx)
	defer stop()

	plan := workout.PlanCreate{PlanID: "plan-2", Name: "New client", ClientID: "client-2", TrainerID: "trainer-1", IsActive: true}
	res, err := workout.QueueAddPhase(ctx, c, db, plan, workout.PhaseData{ID: "phase-1", Name: "Strength", OrderNumber: 1, IsActive: true}, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("plan job:", res.PlanJob.ID)
	if _, err := c.Wait(ctx, res.PhaseJob.ID); err != nil {
		panic(err)
	}
	phase, err := c.Job(ctx, res.PhaseJob.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println("phase job:", phase.State, "after", phase.Parents)

	// The plan exists now: the next phase is queued alone.
	res, err = workout.QueueAddPhase(ctx, c, db, plan, workout.PhaseData{ID: "phase-2", Name: "Power", OrderNumber: 2, IsActive: true}, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("plan job queued again:", res.PlanJob != nil)
	// Output:
	// plan job: workout-plan-create:plan-2
	// phase job: succeeded after [workout-plan-create:plan-2]
	// plan job queued again: false
}
