package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/steps/workout"
	"github.com/trellisflow/trellis/steps/workout/csvplan"
)

// fullPlanSaveOne times full plan saves one at a time, as a user's upload
// is: each from its CSV (parsed in the timing) through one
// WORKOUT_PLAN_FULL_SAVE job, which expands into its 144 creates, to the
// moment the last of its rows is committed (its step returned), with the
// real workout steps on PostgreSQL. saves saves run one after another.
func (b *bench) fullPlanSaveOne(ctx context.Context, saves, c int) (Result, error) {
	n := saves * planNodes
	t, db, end, err := b.workoutRun(ctx, "fullplansave-one", n, c)
	if err != nil {
		return Result{}, err
	}
	defer end()
	rec := t.rec
	csvs := make([][]byte, saves)
	for k := range csvs {
		var buf bytes.Buffer
		if err := csvplan.Write(&buf, onePlan(k)); err != nil {
			return Result{}, err
		}
		csvs[k] = buf.Bytes()
	}
	s0, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	took := make([]time.Duration, saves)
	t0 := time.Now()
	for k := range saves {
		id := fmt.Sprintf("save-%d", k)
		committed := rec.reached(int64((k + 1) * planNodes))
		start := time.Now()
		m, err := csvplan.Parse(bytes.NewReader(csvs[k]), nil)
		if err != nil {
			return Result{}, fmt.Errorf("save %d: %w", k, err)
		}
		if err := nameSave(rec, id, *m, k*planNodes); err != nil {
			return Result{}, err
		}
		at := rec.now()
		job, err := workout.QueueFullPlanSave(ctx, t.client, *m, &flow.NodeOpts{ID: id})
		if err != nil {
			return Result{}, fmt.Errorf("save %d: %w", k, err)
		}
		rec.enq[k*planNodes] = at
		select {
		case <-committed:
		case <-rec.failed:
			return Result{}, rec.failure
		case <-time.After(waitTimeout(planNodes)):
			return Result{}, fmt.Errorf("save %d: %d of %d nodes ran", k, rec.done.Load()-int64(k*planNodes), planNodes)
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		took[k] = time.Since(start)
		// The next save starts once this flow is finished in Redis too.
		j, err := t.client.Job(ctx, job.ID)
		if err != nil {
			return Result{}, fmt.Errorf("save %d: %w", k, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		f, err := t.client.Wait(wctx, j.FlowID)
		cancel()
		if err != nil {
			return Result{}, fmt.Errorf("save %d: %w", k, err)
		}
		if got := f.Counts()[dag.Succeeded]; got != planNodes {
			return Result{}, fmt.Errorf("save %d: %d of %d nodes succeeded", k, got, planNodes)
		}
	}
	tEnd := time.Now()
	if err := t.stop(ctx); err != nil {
		return Result{}, err
	}
	s1, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	if err := t.verify(ctx, n); err != nil {
		return Result{}, err
	}
	rows, err := countRows(ctx, db)
	if err != nil {
		return Result{}, err
	}
	if rows != n {
		return Result{}, fmt.Errorf("%d rows written, want %d", rows, n)
	}
	r := b.result("fullplansave-one", fmt.Sprintf("%d saves of %d rows one after another, CSV to committed rows", saves, planNodes), c, n)
	r.Seconds = seconds(tEnd.Sub(t0))
	r.NodesPerSec = float64(n) / r.Seconds
	r.FlowsPerSec = float64(saves) / r.Seconds
	sortDurations(took)
	r.SaveP50MS, r.SaveP99MS = percentile(took, 0.50), percentile(took, 0.99)
	r.cost(s0, s1, n)
	rec.fill(&r)
	return r, nil
}

// onePlan is plan k of fullplansave-one, 1 × 4 × 5 × 6 as addPlan's.
func onePlan(k int) *workout.PlanFullSave {
	m := &workout.PlanFullSave{PlanID: fmt.Sprintf("one-%d", k), Name: fmt.Sprintf("Strength block %d", k), ClientID: "client-1", TrainerID: "trainer-1", IsActive: true}
	for p := range planPhases {
		ph := workout.PhaseTree{PhaseData: workout.PhaseData{Name: fmt.Sprintf("Phase %d", p+1), OrderNumber: p + 1, IsActive: p == 0}}
		for s := range planSessions {
			st := workout.SessionTree{SessionData: workout.SessionData{Name: fmt.Sprintf("Day %d", s+1), OrderNumber: s + 1}}
			for e := range planExercises {
				st.Exercises = append(st.Exercises, workout.ExerciseData{Name: fmt.Sprintf("Lift %d", e+1), OrderNumber: e + 1,
					Sets: 4, Reps: 8, Weight: 80, Rest: 120, Tempo: "3-1-1-0"})
			}
			ph.Sessions = append(ph.Sessions, st)
		}
		m.Phases = append(m.Phases, ph)
	}
	return m
}

// nameSave tells the recorder the nodes of full plan save job id, from
// index first: the job, then its sub-graph (FullSaveGraph), whose roots
// run after the job.
func nameSave(rec *recorder, id string, m workout.PlanFullSave, first int) error {
	g := workout.FullSaveGraph(id, m, nil)
	if g.Len()+1 != planNodes {
		return fmt.Errorf("save %s has %d nodes, want %d", id, g.Len()+1, planNodes)
	}
	rec.name(id, first)
	for j, nd := range g.Nodes() {
		rec.name(nd.ID(), first+1+j)
	}
	for j, nd := range g.Nodes() {
		i := first + 1 + j
		rec.parents[i] = []int32{int32(first)}
		if ps := nd.Parents(); len(ps) > 0 {
			rec.parents[i] = rec.parents[i][:0]
			for _, p := range ps {
				rec.parents[i] = append(rec.parents[i], int32(rec.index(p)))
			}
		}
	}
	return nil
}
