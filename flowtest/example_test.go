package flowtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/flowtest"
)

type PlanCreate struct {
	PlanID string `json:"planId"`
}

func (PlanCreate) MessageType() string { return "WORKOUT_PLAN_CREATE" }

type PhaseCreate struct {
	PlanID string `json:"planId"`
	Name   string `json:"name"`
}

func (PhaseCreate) MessageType() string { return "WORKOUT_PHASE_CREATE" }

// testPlanThenPhases is what a user's test looks like: the plan step is the
// real one, the phase step is a stub that fails twice (a flaky database)
// before it succeeds, and the 2s + 4s of backoff pass on the fake clock.
func testPlanThenPhases(t testing.TB) {
	planStep := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PlanCreate) (string, error) {
		return "plan " + m.PlanID + " created", nil
	})
	h := flowtest.New(t, planStep, flowtest.FailsFirst[PhaseCreate](2, errors.New("deadlock"), "phase created"))

	g := flow.New()
	plan := g.Add(PlanCreate{PlanID: "p1"}, &flow.NodeOpts{ID: "plan"})
	g.Add(PhaseCreate{PlanID: "p1", Name: "Base"}, &flow.NodeOpts{ID: "base"}).After(plan)
	g.Add(PhaseCreate{PlanID: "p1", Name: "Peak"}, &flow.NodeOpts{ID: "peak", Attempts: 1}).After(plan)
	h.Run(g)

	h.RequireSucceeded("plan", "base")
	h.RequireState("peak", dag.Failed) // one attempt only
	h.RequireOrder("plan", "base", "peak")
	h.RequireAttempts("base", 3)
	var res string
	h.Result("plan", &res)

	for _, r := range h.Runs() {
		fmt.Printf("%-4s attempt %d at +%s err=%v\n", r.Job, r.Attempt, r.At.Sub(h.Now().Add(-h.Elapsed())), r.Err)
	}
	fmt.Println(res, "; fake time passed:", h.Elapsed())
}

// Run a plan and its phases with a stubbed, flaky phase step, and assert
// what ran, in what order and with how many attempts.
func Example() {
	t := &exampleT{}
	defer t.done()
	testPlanThenPhases(t) // in a real test: func TestPlan(t *testing.T) { … }
	// Output:
	// plan attempt 1 at +0s err=<nil>
	// base attempt 1 at +0s err=deadlock
	// peak attempt 1 at +0s err=deadlock
	// base attempt 2 at +2s err=deadlock
	// base attempt 3 at +6s err=<nil>
	// plan p1 created ; fake time passed: 6s
}

// A rate limit of two emails a second: the windows pass on the fake clock.
func ExampleHarness_Run_rateLimit() {
	t := &exampleT{}
	defer t.done()
	h := flowtest.New(t, flowtest.Returns[Email]("sent"))
	_ = h.Client().SetLimit(context.Background(), "EMAIL", dag.Limit{Rate: 2, Per: time.Second})
	g := flow.New()
	for i := range 5 {
		g.Add(Email{To: fmt.Sprintf("user%d@example.com", i)}, &flow.NodeOpts{ID: fmt.Sprintf("mail-%d", i)})
	}
	h.Run(g)
	for _, r := range h.Runs() {
		fmt.Println(r.Job, r.At.Format(time.TimeOnly))
	}
	// Output:
	// mail-0 00:00:00
	// mail-1 00:00:00
	// mail-2 00:00:01
	// mail-3 00:00:01
	// mail-4 00:00:02
}

// Wrap a real step to inject a failure into its first attempt, and check
// that the default backoff (2s) passed on the fake clock.
func ExampleWrap() {
	t := &exampleT{}
	defer t.done()
	send := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Email) (string, error) {
		return "sent to " + m.To, nil
	})
	flaky := flowtest.Wrap(send, func(ctx context.Context, sc *flow.StepContext, next flowtest.Next) (json.RawMessage, error) {
		if sc.Attempt == 1 {
			return nil, errors.New("SMTP timeout")
		}
		return next(ctx)
	})
	h := flowtest.New(t, flaky)
	g := flow.New()
	g.Add(Email{To: "ana@example.com"}, &flow.NodeOpts{ID: "welcome"})
	h.Run(g)

	h.RequireAttempts("welcome", 2)
	var res string
	h.Result("welcome", &res)
	fmt.Println(res, "after", h.Elapsed())
	// Output:
	// sent to ana@example.com after 2s
}

// exampleT stands in for the *testing.T that a real test passes to New.
type exampleT struct {
	testing.TB
	cleanups []func()
}

func (t *exampleT) Helper()                        {}
func (t *exampleT) Log(...any)                     {}
func (t *exampleT) Cleanup(f func())               { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatal(args ...any)              { panic(fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
