package workout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/steprun"
	"github.com/trellisflow/trellis/steps/workout"
)

// bigPlan is a plan of phases × sessions × exercises with distinct values
// in every field.
func bigPlan(id string, phases, sessions, exercises int) workout.PlanFullSave {
	m := workout.PlanFullSave{PlanID: id, Name: "Plan " + id, ClientID: "client-" + id, TrainerID: "trainer-" + id, IsActive: true}
	for p := 1; p <= phases; p++ {
		ph := workout.PhaseTree{PhaseData: workout.PhaseData{
			ID: fmt.Sprintf("%s-ph%d", id, p), Name: fmt.Sprintf("Phase %d", p), OrderNumber: p, IsActive: p%2 == 1}}
		for s := 1; s <= sessions; s++ {
			st := workout.SessionTree{SessionData: workout.SessionData{
				ID: fmt.Sprintf("%s-ph%d-s%d", id, p, s), Name: fmt.Sprintf("Day %d", s), OrderNumber: s}}
			for e := 1; e <= exercises; e++ {
				st.Exercises = append(st.Exercises, workout.ExerciseData{
					ID: fmt.Sprintf("%s-ph%d-s%d-e%d", id, p, s, e), Name: fmt.Sprintf("Lift %d.%d.%d", p, s, e),
					OrderNumber: e, Sets: p + e, Reps: 3 + s, Weight: float64(20*p) + float64(e)/4, Rest: 30 * e,
					Tempo: fmt.Sprintf("%d-0-%d", p, s), Notes: fmt.Sprintf("note %d/%d/%d", p, s, e),
				})
			}
			ph.Sessions = append(ph.Sessions, st)
		}
		m.Phases = append(m.Phases, ph)
	}
	return m
}

// requireTree checks that the database holds exactly plan m: every row of
// every level, field by field, and nothing else under the plan.
func requireTree(t *testing.T, e *steptest.Engine, m workout.PlanFullSave) {
	t.Helper()
	ctx := context.Background()
	var p schema.Plan
	require.NoError(t, e.DB.NewSelect().Model(&p).Where("id = ?", m.PlanID).Scan(ctx))
	require.Equal(t, []any{m.Name, m.ClientID, m.TrainerID, m.IsActive}, []any{p.Name, p.ClientID, p.TrainerID, p.IsActive})

	var phases []schema.Phase
	require.NoError(t, e.DB.NewSelect().Model(&phases).Where("plan_id = ?", m.PlanID).Order("order_number").Scan(ctx))
	require.Len(t, phases, len(m.Phases))
	nSessions, nExercises := 0, 0
	for i, want := range m.Phases {
		got := phases[i]
		require.Equal(t, []any{want.ID, want.Name, want.OrderNumber, want.IsActive}, []any{got.ID, got.Name, got.OrderNumber, got.IsActive})
		var sessions []schema.Session
		require.NoError(t, e.DB.NewSelect().Model(&sessions).Where("phase_id = ?", want.ID).Order("order_number").Scan(ctx))
		require.Len(t, sessions, len(want.Sessions))
		for j, ws := range want.Sessions {
			gs := sessions[j]
			require.Equal(t, []any{ws.ID, ws.Name, ws.OrderNumber}, []any{gs.ID, gs.Name, gs.OrderNumber})
			var exercises []schema.Exercise
			require.NoError(t, e.DB.NewSelect().Model(&exercises).Where("session_id = ?", ws.ID).Order("order_number").Scan(ctx))
			require.Len(t, exercises, len(ws.Exercises))
			for k, we := range ws.Exercises {
				ge := exercises[k]
				require.Equal(t,
					[]any{we.ID, we.Name, we.OrderNumber, we.Sets, we.Reps, we.Weight, we.Rest, we.Tempo, we.Notes},
					[]any{ge.ID, ge.Name, ge.OrderNumber, ge.Sets, ge.Reps, ge.Weight, ge.RestSeconds, ge.Tempo, ge.Notes})
			}
			nExercises += len(exercises)
		}
		nSessions += len(sessions)
	}
	// Nothing beyond the tree: totals match too.
	require.Equal(t, nSessions, steptest.Count(t, e.DB, "workout_sessions AS s", "s.phase_id IN (SELECT id FROM workout_phases WHERE plan_id = ?)", m.PlanID))
	require.Equal(t, nExercises, steptest.Count(t, e.DB, "workout_exercises AS x",
		"x.session_id IN (SELECT s.id FROM workout_sessions AS s JOIN workout_phases AS p ON p.id = s.phase_id WHERE p.plan_id = ?)", m.PlanID))
}

// concurrency measures how many jobs of a step run at once (a batch's jobs
// all run at once).
type concurrency struct {
	now, max atomic.Int32
}

// enter counts n jobs in until the returned func is called.
func (c *concurrency) enter(n int) func() {
	k := c.now.Add(int32(n))
	for {
		m := c.max.Load()
		if k <= m || c.max.CompareAndSwap(m, k) {
			break
		}
	}
	time.Sleep(2 * time.Millisecond) // long enough for siblings to overlap
	return func() { c.now.Add(-int32(n)) }
}

// wrap returns s measured by c; a batch step stays one, with its batching.
func (c *concurrency) wrap(s flow.Step) flow.Step {
	if b, ok := s.(flow.BatchStep); ok {
		return measuredBatch{measured{s, c}, b}
	}
	return measured{s, c}
}

type measured struct {
	flow.Step
	c *concurrency
}

func (m measured) Run(ctx context.Context, sc *flow.StepContext) (json.RawMessage, error) {
	defer m.c.enter(1)()
	return m.Step.Run(ctx, sc)
}

type measuredBatch struct {
	measured
	b flow.BatchStep
}

func (m measuredBatch) Batching() flow.Batching { return m.b.Batching() }

func (m measuredBatch) RunBatch(ctx context.Context, jobs []*flow.StepContext) ([]flow.BatchResult, error) {
	defer m.c.enter(len(jobs))()
	return m.b.RunBatch(ctx, jobs)
}

func stepsWith(wrap map[string]flow.Step, steps []flow.Step) []flow.Step {
	out := make([]flow.Step, len(steps))
	for i, s := range steps {
		if w, ok := wrap[s.MessageType()]; ok {
			out[i] = w
		} else {
			out[i] = s
		}
	}
	return out
}

// The end-to-end test: a full plan save of 1 plan, 4 phases, 5
// sessions each and 6 exercises each runs through the engine — expanded at
// run time into 144 jobs — and every row is checked.
func TestFullPlanSaveEndToEnd(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		m := bigPlan("plan-e2e", 4, 5, 6)
		job, err := workout.QueueFullPlanSave(ctx, e.Client, m, &flow.NodeOpts{ID: "fullsave-1", UserID: "trainer-1"})
		require.NoError(t, err)

		exercises := &concurrency{}
		steps := workout.Steps(e.DB)
		var wrapped flow.Step
		for _, s := range steps {
			if s.MessageType() == workout.TypeExerciseCreate {
				wrapped = exercises.wrap(s)
			}
		}
		_, batched := wrapped.(flow.BatchStep)
		require.True(t, batched, "the measured exercise create is still a batch step")
		// Two runners share the work, as two worker processes would.
		for range 2 {
			e.Start(nil, stepsWith(map[string]flow.Step{workout.TypeExerciseCreate: wrapped}, steps)...)
		}

		f := e.Wait(job.ID)
		require.Len(t, f.Nodes, 1+4+4*5+4*5*6)
		byID := map[string]*dag.Node{}
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, "%s: %s %v", n.ID, n.Reason, n.Error)
			byID[n.ID] = n
		}
		root := byID["fullsave-1"]
		require.True(t, root.Expanded)
		var res workout.FullSaveResult
		require.NoError(t, json.Unmarshal(root.Result, &res))
		require.Equal(t, workout.FullSaveResult{PlanID: "plan-e2e", Action: "created", Phases: 4, Sessions: 20, Exercises: 120}, res)

		// Deterministic node IDs, and the shape plan → phase → session → exercise.
		for _, p := range m.Phases {
			pn := byID[workout.FullSaveNodeID("fullsave-1", "phase", p.ID)]
			require.NotNil(t, pn, p.ID)
			require.Equal(t, workout.TypePhaseCreate, pn.Type)
			for _, s := range p.Sessions {
				sn := byID[workout.FullSaveNodeID("fullsave-1", "session", s.ID)]
				require.NotNil(t, sn, s.ID)
				require.Equal(t, []string{pn.ID}, sn.Parents)
				// Runners stamp timelines with their own "now", so across two
				// runners the order of timestamps proves nothing; the step does:
				// a session run before its phase fails with "phase not found".
				require.Equal(t, 1, sn.Attempt, "no session ever saw its phase missing")
				for _, x := range s.Exercises {
					xn := byID[workout.FullSaveNodeID("fullsave-1", "exercise", x.ID)]
					require.NotNil(t, xn, x.ID)
					require.Equal(t, []string{sn.ID}, xn.Parents)
					require.Equal(t, 1, xn.Attempt, "no exercise ever saw its session missing")
				}
			}
		}
		require.Greater(t, exercises.max.Load(), int32(1), "independent exercises ran at once (in parallel or in one batch)")
		requireTree(t, e, m)
	})
}

// A full save replaces the plan's tree: what the new message drops is
// deleted, what moved is re-parented, what changed is updated.
func TestFullPlanSaveReplacesTheTree(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		e.Start(nil, workout.Steps(e.DB)...)
		first := bigPlan("p", 3, 2, 2)
		j, err := workout.QueueFullPlanSave(ctx, e.Client, first, nil)
		require.NoError(t, err)
		e.Wait(j.ID)
		requireTree(t, e, first)

		second := bigPlan("p", 2, 2, 1) // phase 3 and every exercise 2 go
		second.Name = "Renamed"
		second.Phases[0].Sessions[0].Exercises[0].Reps = 99
		// session p-ph2-s2 moves to phase 1
		moved := second.Phases[1].Sessions[1]
		second.Phases[1].Sessions = second.Phases[1].Sessions[:1]
		moved.OrderNumber = 3
		second.Phases[0].Sessions = append(second.Phases[0].Sessions, moved)
		j, err = workout.QueueFullPlanSave(ctx, e.Client, second, nil)
		require.NoError(t, err)
		f := e.Wait(j.ID)
		var res workout.FullSaveResult
		require.NoError(t, json.Unmarshal(e.Job(j.ID).Result, &res))
		require.Equal(t, "updated", res.Action)
		// pruned: phase 3 (cascading its 2 sessions and 4 exercises in the
		// database, counted once as the phase) and exercise 2 of the 4
		// surviving sessions.
		require.Equal(t, 1+4, res.Pruned)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, n.ID)
		}
		requireTree(t, e, second)
		require.Equal(t, 2, steptest.Count(t, e.DB, "workout_phases", ""))
		require.Equal(t, 4, steptest.Count(t, e.DB, "workout_exercises", ""))
	})
}

// The effectively-once proof: a runner claims the full save, its step
// commits, and the runner dies before it reports completion. Another runner
// takes the job over when the lease expires; the re-run finds the step
// record and returns the stored result — the plan row is not written again —
// and it still expands, since the first expansion died with the first runner.
func TestFullPlanSaveCrashAfterCommit(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		m := bigPlan("crash", 2, 2, 2)
		job, err := workout.QueueFullPlanSave(ctx, e.Client, m, &flow.NodeOpts{ID: "fs-crash"})
		require.NoError(t, err)

		// The doomed runner: claim, run the step to its commit, never report.
		lease := 300 * time.Millisecond
		dead, err := seam.Store(e.Client).Sync(ctx, time.Now(), store.SyncRequest{
			Worker: "doomed", Lease: lease, StallLimit: 3, Queues: []string{"default"}, Types: []string{workout.TypePlanFullSave}, Want: 1, RetainCount: -1})
		require.NoError(t, err)
		require.Len(t, dead.Claimed, 1)
		v, err := seam.NewStepContext(e.Client, dead.Claimed[0], steptest.Logger())
		require.NoError(t, err)
		sc := v.(*flow.StepContext)
		var fullSave flow.Step
		for _, s := range workout.Steps(e.DB) {
			if s.MessageType() == workout.TypePlanFullSave {
				fullSave = s
			}
		}
		firstResult, err := fullSave.Run(ctx, sc)
		require.NoError(t, err)
		rec, err := steprun.Record(ctx, e.DB, job.ID)
		require.NoError(t, err, "the first attempt committed its record")
		require.Equal(t, 1, rec.Attempt)
		var planBefore schema.Plan
		require.NoError(t, e.DB.NewSelect().Model(&planBefore).Where("id = ?", m.PlanID).Scan(ctx))
		require.Zero(t, steptest.Count(t, e.DB, "workout_phases", ""), "the expansion was lost with the runner")

		// A healthy runner takes over after the lease expires.
		e.Start(&runner.Config{Concurrency: 8, Lease: 10 * time.Second, IdleWait: 50 * time.Millisecond}, workout.Steps(e.DB)...)
		f := e.Wait(job.ID)
		root := e.Job(job.ID)
		require.Equal(t, dag.Succeeded, root.State)
		require.Equal(t, 2, root.Attempt)
		require.Equal(t, 1, root.Stalls)
		require.JSONEq(t, string(firstResult), string(root.Result), "the re-run returned the stored result")
		var res workout.FullSaveResult
		require.NoError(t, json.Unmarshal(root.Result, &res))
		require.Equal(t, "created", res.Action, "a second write would have said updated")
		require.Len(t, f.Nodes, 1+2+4+8)

		rec, err = steprun.Record(ctx, e.DB, job.ID)
		require.NoError(t, err)
		require.Equal(t, 1, rec.Attempt, "the record is still the first attempt's")
		var planAfter schema.Plan
		require.NoError(t, e.DB.NewSelect().Model(&planAfter).Where("id = ?", m.PlanID).Scan(ctx))
		require.True(t, planBefore.UpdatedAt.Equal(planAfter.UpdatedAt), "the plan row was not written again")
		requireTree(t, e, m)
	})
}

// Plan first, then the phase that depends on it (queuePhaseCreateWithDependency).
func TestPlanThenPhaseWithDependency(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		pj, err := workout.QueuePlanCreate(ctx, e.Client, workout.PlanCreate{PlanID: "p1", Name: "Plan", ClientID: "c", TrainerID: "t", IsActive: true}, nil)
		require.NoError(t, err)
		phj, err := workout.QueuePhaseCreateWithDependency(ctx, e.Client,
			workout.PhaseCreate{PlanID: "p1", ClientID: "c", TrainerID: "t", Phase: workout.PhaseData{ID: "ph1", Name: "Strength", OrderNumber: 1, IsActive: true}}, pj.ID, nil)
		require.NoError(t, err)
		require.Equal(t, dag.Blocked, phj.State)
		e.Start(nil, workout.Steps(e.DB)...)
		e.Wait(phj.ID)
		phase := e.Job(phj.ID)
		require.Equal(t, dag.Succeeded, phase.State)
		require.Equal(t, 1, phase.Attempt, "the dependency meant the phase never ran before its plan")
		require.Equal(t, []string{pj.ID}, phase.Parents)
		require.Equal(t, 1, steptest.Count(t, e.DB, "workout_phases", "plan_id = ?", "p1"))
	})
}

// The seed's race without a dependency: the phase runs before its plan
// exists, fails with a retryable "plan p1 not found", and succeeds on a
// later attempt once the plan is there.
func TestPhaseBeforePlanRetriesUntilThePlanExists(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		backoff := flow.Fixed(100 * time.Millisecond)
		phj, err := workout.QueuePhaseCreate(ctx, e.Client,
			workout.PhaseCreate{PlanID: "p1", Phase: workout.PhaseData{ID: "ph1", Name: "Strength", OrderNumber: 1, IsActive: true}},
			&flow.NodeOpts{Attempts: 50, Backoff: &backoff})
		require.NoError(t, err)
		e.Start(nil, workout.Steps(e.DB)...)
		require.Eventually(t, func() bool {
			j := e.Job(phj.ID)
			return j.Attempt >= 2 && j.Error != nil
		}, 20*time.Second, 20*time.Millisecond)
		j := e.Job(phj.ID)
		require.Equal(t, "plan p1 not found", j.Error.Message)
		require.NotEqual(t, dag.Failed, j.State, "retryable, not failed")

		_, err = workout.QueuePlanCreate(ctx, e.Client, workout.PlanCreate{PlanID: "p1", Name: "Plan", ClientID: "c", TrainerID: "t", IsActive: true}, nil)
		require.NoError(t, err)
		e.Wait(phj.ID)
		j = e.Job(phj.ID)
		require.Equal(t, dag.Succeeded, j.State)
		require.GreaterOrEqual(t, j.Attempt, 2)
		require.Equal(t, 1, steptest.Count(t, e.DB, "workout_phases", "plan_id = ?", "p1"))
	})
}

// The "Add Phase" sequence: a new plan gets one plan job however many
// phases are added before it runs; an existing plan gets none.
func TestQueueAddPhase(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		plan := workout.PlanCreate{PlanID: "new-plan", Name: "Plan", ClientID: "c", TrainerID: "t", IsActive: true}
		a, err := workout.QueueAddPhase(ctx, e.Client, e.DB, plan, workout.PhaseData{ID: "ph1", Name: "One", OrderNumber: 1, IsActive: true}, nil)
		require.NoError(t, err)
		require.NotNil(t, a.PlanJob)
		require.False(t, a.PlanJob.Existed)
		require.Equal(t, workout.PlanCreateJobID("new-plan"), a.PlanJob.ID)
		b, err := workout.QueueAddPhase(ctx, e.Client, e.DB, plan, workout.PhaseData{ID: "ph2", Name: "Two", OrderNumber: 2, IsActive: true}, nil)
		require.NoError(t, err)
		require.NotNil(t, b.PlanJob)
		require.True(t, b.PlanJob.Existed, "the second phase waits on the same plan job")

		e.Start(nil, workout.Steps(e.DB)...)
		for _, id := range []string{a.PhaseJob.ID, b.PhaseJob.ID} {
			e.Wait(id)
			j := e.Job(id)
			require.Equal(t, dag.Succeeded, j.State)
			require.Equal(t, 1, j.Attempt)
			require.Equal(t, []string{workout.PlanCreateJobID("new-plan")}, j.Parents)
		}

		c, err := workout.QueueAddPhase(ctx, e.Client, e.DB, plan, workout.PhaseData{ID: "ph3", Name: "Three", OrderNumber: 3, IsActive: true}, nil)
		require.NoError(t, err)
		require.Nil(t, c.PlanJob, "the plan exists: only the phase is queued")
		require.Empty(t, e.Job(c.PhaseJob.ID).Parents)
		e.Wait(c.PhaseJob.ID)
		require.Equal(t, 1, steptest.Count(t, e.DB, "workout_plans", ""))
		require.Equal(t, 3, steptest.Count(t, e.DB, "workout_phases", "plan_id = ?", "new-plan"))
	})
}

// Every helper enqueues what it says, and the runner applies it.
func TestQueueHelpers(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		e.Start(nil, workout.Steps(e.DB)...)
		run := func(j flow.EnqueuedJob, err error) {
			t.Helper()
			require.NoError(t, err)
			e.Wait(j.ID)
			require.Equal(t, dag.Succeeded, e.Job(j.ID).State, "%s: %v", j.ID, e.Job(j.ID).Error)
		}
		c := e.Client
		run(workout.QueuePlanCreate(ctx, c, workout.PlanCreate{PlanID: "p", Name: "P", ClientID: "c", TrainerID: "t"}, nil))
		run(workout.QueuePhaseCreate(ctx, c, workout.PhaseCreate{PlanID: "p", Phase: workout.PhaseData{ID: "ph", Name: "Ph"}}, nil))
		run(workout.QueuePhaseUpdate(ctx, c, workout.PhaseUpdate{PlanID: "p", PhaseID: "ph", Changes: workout.PhaseChanges{OrderNumber: ptr(4)}}, nil))
		run(workout.QueueSessionCreate(ctx, c, workout.SessionCreate{PlanID: "p", PhaseID: "ph", Session: workout.SessionData{ID: "s", Name: "S"}}, nil))
		run(workout.QueueSessionUpdate(ctx, c, workout.SessionUpdate{PlanID: "p", PhaseID: "ph", SessionID: "s", Changes: workout.SessionChanges{Name: ptr("S2")}}, nil))
		run(workout.QueueExerciseCreate(ctx, c, workout.ExerciseCreate{PlanID: "p", PhaseID: "ph", SessionID: "s", Exercise: workout.ExerciseData{ID: "x", Name: "X", Sets: 1}}, nil))
		run(workout.QueueExerciseUpdate(ctx, c, workout.ExerciseUpdate{PlanID: "p", PhaseID: "ph", SessionID: "s", ExerciseID: "x", Changes: workout.ExerciseChanges{Sets: ptr(2)}}, nil))
		run(workout.SendWorkoutUpdate(ctx, c, workout.WorkoutUpdate{ExercisePlanID: "p", PhaseID: "ph", SessionID: "s", ExerciseID: "x", Changes: workout.ExerciseChanges{Reps: ptr(12)}}, "user-123"))
		x := exercise(t, e.DB, "x")
		require.Equal(t, []int{2, 12}, []int{x.Sets, x.Reps})
		var ph schema.Phase
		require.NoError(t, e.DB.NewSelect().Model(&ph).Where("id = ?", "ph").Scan(ctx))
		require.Equal(t, 4, ph.OrderNumber)
		run(workout.QueueExerciseDelete(ctx, c, workout.ExerciseDelete{PlanID: "p", PhaseID: "ph", SessionID: "s", ExerciseID: "x"}, nil))
		require.Zero(t, steptest.Count(t, e.DB, "workout_exercises", ""))
		run(workout.QueueSessionDelete(ctx, c, workout.SessionDelete{PlanID: "p", PhaseID: "ph", SessionID: "s"}, nil))
		require.Zero(t, steptest.Count(t, e.DB, "workout_sessions", ""))
		run(workout.QueuePhaseDelete(ctx, c, workout.PhaseDelete{PlanID: "p", PhaseID: "ph"}, nil))
		require.Zero(t, steptest.Count(t, e.DB, "workout_phases", ""))

		// Enqueue refuses invalid messages, naming the field.
		_, err := workout.QueueExerciseCreate(ctx, c, workout.ExerciseCreate{PlanID: "p", PhaseID: "ph", SessionID: "s", Exercise: workout.ExerciseData{ID: "y", Name: "Y", Reps: -1}}, nil)
		require.ErrorIs(t, err, flow.ErrInvalidMessage)
		require.True(t, strings.Contains(err.Error(), "exercise.reps"), err.Error())
	})
}

// A fixed job ID enqueued again after the engine forgot the first job (here
// the namespace is cleared; in production finished flows are trimmed) is a
// new job: its step runs instead of replaying the old job's record.
func TestReusedJobIDAfterTheEngineForgot(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		e.Start(nil, workout.Steps(e.DB)...)
		plan := workout.PlanCreate{PlanID: "p", Name: "P", ClientID: "c", TrainerID: "t", IsActive: true}
		j, err := workout.QueuePlanCreate(ctx, e.Client, plan, &flow.NodeOpts{ID: workout.PlanCreateJobID("p")})
		require.NoError(t, err)
		e.Wait(j.ID)
		_, err = e.DB.NewDelete().Model((*schema.Plan)(nil)).Where("id = ?", "p").Exec(ctx)
		require.NoError(t, err)

		_, err = e.Client.Clear(ctx)
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
		j, err = workout.QueuePlanCreate(ctx, e.Client, plan, &flow.NodeOpts{ID: workout.PlanCreateJobID("p")})
		require.NoError(t, err)
		require.False(t, j.Existed)
		e.Wait(j.ID)
		require.Equal(t, dag.Succeeded, e.Job(j.ID).State)
		require.Equal(t, 1, steptest.Count(t, e.DB, "workout_plans", "id = ?", "p"), "the plan was created again")
	})
}

// A job ID reused after the engine forgot the first job is a new job even
// when the client sends the same timestamp: the step record tells jobs
// apart by their enqueue time, not by the client's timestamp.
func TestReusedJobIDWithTheSameClientTimestamp(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		e.Start(nil, workout.Steps(e.DB)...)
		reg := flow.NewRegistry()
		workout.RegisterTypes(reg)
		raw := []byte(`{"messageType":"WORKOUT_PLAN_CREATE","timestamp":"2026-01-02T03:04:05Z",
			"data":{"planId":"p","name":"P","clientId":"c","trainerId":"t","isActive":true}}`)
		j, err := e.Client.AddJSON(ctx, reg, raw, &flow.NodeOpts{ID: "plan-job"})
		require.NoError(t, err)
		e.Wait(j.ID)
		_, err = e.DB.NewDelete().Model((*schema.Plan)(nil)).Where("id = ?", "p").Exec(ctx)
		require.NoError(t, err)

		_, err = e.Client.Clear(ctx)
		require.NoError(t, err)
		time.Sleep(time.Millisecond) // the second enqueue time differs from the first
		j, err = e.Client.AddJSON(ctx, reg, raw, &flow.NodeOpts{ID: "plan-job"})
		require.NoError(t, err)
		require.False(t, j.Existed)
		e.Wait(j.ID)
		require.Equal(t, dag.Succeeded, e.Job(j.ID).State)
		require.Equal(t, 1, steptest.Count(t, e.DB, "workout_plans", "id = ?", "p"), "the plan was created again")
	})
}
