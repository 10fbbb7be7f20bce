package flow_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

type PlanCreate struct {
	PlanID string `json:"planId"`
	Name   string `json:"name"`
}

func (PlanCreate) MessageType() string { return "WORKOUT_PLAN_CREATE" }

type PhaseCreate struct {
	PlanID string `json:"planId"`
	Name   string `json:"name"`
}

func (PhaseCreate) MessageType() string { return "WORKOUT_PHASE_CREATE" }

// Compose a plan and three phases that wait for it, run them, and read the
// results.
func Example() {
	ctx := context.Background()
	rds, _ := embedded.NewRedis() // or any redis.UniversalClient
	defer rds.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	client, _ := flow.NewClient(rds.Client(), &flow.Config{Namespace: "example", Logger: quiet})

	g := flow.New()
	plan := g.Add(PlanCreate{PlanID: "plan-1", Name: "Strength"}, &flow.NodeOpts{ID: "plan-1"})
	for i, name := range []string{"Base", "Build", "Peak"} {
		g.Add(PhaseCreate{PlanID: "plan-1", Name: name}, &flow.NodeOpts{ID: fmt.Sprintf("phase-%d", i+1)}).After(plan)
	}
	res, _ := client.Enqueue(ctx, g)

	r, _ := runner.New(client, &runner.Config{Concurrency: 4})
	_ = runner.Handle(r, func(ctx context.Context, sc *flow.StepContext, m PlanCreate) (string, error) {
		return "created " + m.Name, nil
	})
	_ = runner.Handle(r, func(ctx context.Context, sc *flow.StepContext, m PhaseCreate) (string, error) {
		plan, err := flow.ParentResult[string](ctx, sc, "plan-1")
		return m.Name + " after " + plan, err
	})
	_ = r.Start(ctx)
	defer func() { _ = r.Stop(ctx) }()

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	f, _ := client.Wait(wctx, res.FlowID)
	for _, n := range f.Nodes {
		fmt.Println(n.ID, n.State, string(n.Result))
	}
	// Output:
	// plan-1 succeeded "created Strength"
	// phase-1 succeeded "Base after created Strength"
	// phase-2 succeeded "Build after created Strength"
	// phase-3 succeeded "Peak after created Strength"
}

// A dependency on a job enqueued earlier, by ID: the seed's
// queuePhaseCreateWithDependency.
func ExampleClient_Add() {
	ctx := context.Background()
	rds, _ := embedded.NewRedis()
	defer rds.Close()
	client, _ := flow.NewClient(rds.Client(), &flow.Config{Namespace: "example"})

	plan, _ := client.Add(ctx, PlanCreate{PlanID: "plan-9", Name: "Mobility"}, &flow.NodeOpts{ID: "plan-9"})
	phase, _ := client.Add(ctx, PhaseCreate{PlanID: "plan-9", Name: "Base"}, nil, plan.ID)
	fmt.Println(plan.State, phase.State)

	_, err := client.Add(ctx, PhaseCreate{PlanID: "plan-0", Name: "Base"}, &flow.NodeOpts{ID: "phase-x"}, "no-such-job")
	fmt.Println(err)
	// Output:
	// ready blocked
	// node "phase-x" depends on unknown job "no-such-job"
}
