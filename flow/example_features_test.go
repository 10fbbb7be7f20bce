package flow_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

type Grade struct {
	Student string `json:"student"`
}

func (Grade) MessageType() string { return "GRADE" }

type Notify struct {
	Text string `json:"text"`
}

func (Notify) MessageType() string { return "NOTIFICATION" }

type Charge struct {
	Cents int `json:"cents"`
}

func (Charge) MessageType() string { return "CHARGE" }

// start runs an in-process Redis, a quiet client and a runner with steps.
// stop ends them.
func start(steps ...flow.Step) (client *flow.Client, stop func()) {
	ctx := context.Background()
	rds, _ := embedded.NewRedis()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	client, _ = flow.NewClient(rds.Client(), &flow.Config{Namespace: "example", Logger: quiet})
	r, _ := runner.New(client, &runner.Config{Concurrency: 4, Queues: []string{"default", "mail"}, IdleWait: 10 * time.Millisecond})
	_ = r.Register(steps...)
	_ = r.Start(ctx)
	return client, func() { _ = r.Stop(ctx); _ = rds.Close() }
}

// show waits for the flow and prints the state of the jobs ids (default:
// all, in the flow's order) and, if any, why.
func show(client *flow.Client, flowID string, ids ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := client.Wait(ctx, flowID)
	if err != nil {
		fmt.Println(err)
		return
	}
	byID := map[string]*dag.Node{}
	for _, n := range f.Nodes {
		byID[n.ID] = n
		if len(ids) < len(f.Nodes) {
			ids = append(ids, n.ID)
		}
	}
	for _, id := range ids {
		n := byID[id]
		fmt.Print(n.ID, " ", n.State)
		if n.Reason != "" {
			fmt.Print(" (", n.Reason, ")")
		}
		fmt.Println()
	}
}

var notifyStep = flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Notify) (string, error) {
	return "sent: " + m.Text, nil
})

// A When condition chooses a branch from a parent's result; the other
// branch is skipped, not failed.
func ExampleNodeOpts_condition() {
	grade := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Grade) (map[string]int, error) {
		return map[string]int{"score": 72}, nil
	})
	client, stop := start(grade, notifyStep)
	defer stop()

	g := flow.New().WithID("exam")
	exam := g.Add(Grade{Student: "ana"}, &flow.NodeOpts{ID: "grade"})
	g.Add(Notify{Text: "passed"}, &flow.NodeOpts{ID: "congratulate", When: `parents["grade"].result.score >= 60`}).After(exam)
	g.Add(Notify{Text: "retake"}, &flow.NodeOpts{ID: "book-retake", When: `parents["grade"].result.score < 60`}).After(exam)
	_, _ = client.Enqueue(context.Background(), g)
	show(client, "exam", "grade", "congratulate", "book-retake")

	// A condition is type-checked at enqueue, and may only name parents.
	g = flow.New()
	g.Add(Notify{Text: "?"}, &flow.NodeOpts{When: `parents["nobody"].state == "succeeded"`})
	_, err := client.Enqueue(context.Background(), g)
	fmt.Println(errors.Is(err, flow.ErrInvalidCondition))
	// Output:
	// grade succeeded
	// congratulate succeeded
	// book-retake skipped (condition false: parents["grade"].result.score < 60)
	// true
}

// Failure policies: when a parent fails, Require (the default) cancels the
// child and its descendants, Ignore runs it anyway, Skip skips it.
func ExamplePolicy() {
	charge := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Charge) (string, error) {
		return "", flow.Permanent(errors.New("card declined")) // no retries
	})
	report := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Notify) (string, error) {
		parents, err := sc.Parents(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: %s (%s)", m.Text, parents[0].State, parents[0].Error.Message), nil
	})
	client, stop := start(charge, report)
	defer stop()

	g := flow.New().WithID("order")
	pay := g.Add(Charge{Cents: 1999}, &flow.NodeOpts{ID: "charge"})
	ship := g.Add(Notify{Text: "ship"}, &flow.NodeOpts{ID: "ship"}).After(pay)
	g.Add(Notify{Text: "track"}, &flow.NodeOpts{ID: "track"}).After(ship)
	g.Add(Notify{Text: "receipt"}, &flow.NodeOpts{ID: "thank-you", Policy: dag.Skip}).After(pay)
	g.Add(Notify{Text: "payment"}, &flow.NodeOpts{ID: "report", Policy: dag.Ignore}).After(pay)
	_, _ = client.Enqueue(context.Background(), g)
	show(client, "order", "charge", "ship", "track", "thank-you", "report")

	j, _ := client.Job(context.Background(), "report")
	fmt.Println(string(j.Result))
	// Output:
	// charge failed
	// ship cancelled (parent charge failed)
	// track cancelled (parent ship cancelled)
	// thank-you skipped (parent charge failed)
	// report succeeded
	// "payment: failed (card declined)"
}

type PlanResult struct {
	PlanID string `json:"planId"`
	Weeks  int    `json:"weeks"`
}

// Result passing: a step's result is stored as JSON, and its children read
// it with ParentResult.
func ExampleParentResult() {
	plan := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PlanCreate) (PlanResult, error) {
		return PlanResult{PlanID: m.PlanID, Weeks: 12}, nil
	})
	phase := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PhaseCreate) (string, error) {
		p, err := flow.ParentResult[PlanResult](ctx, sc, "plan")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: weeks 1-%d of %s", m.Name, p.Weeks/3, p.PlanID), nil
	})
	client, stop := start(plan, phase)
	defer stop()

	g := flow.New().WithID("f")
	p := g.Add(PlanCreate{PlanID: "plan-7", Name: "Strength"}, &flow.NodeOpts{ID: "plan"})
	g.Add(PhaseCreate{PlanID: "plan-7", Name: "Base"}, &flow.NodeOpts{ID: "base"}).After(p)
	_, _ = client.Enqueue(context.Background(), g)
	show(client, "f")

	j, _ := client.Job(context.Background(), "base")
	fmt.Println(string(j.Result))
	// Output:
	// plan succeeded
	// base succeeded
	// "Base: weeks 1-4 of plan-7"
}

// Dynamic expansion: a step decides at run time what comes next. Here a
// plan expands into one phase per block it finds; the plan's child waits for
// the whole sub-graph.
func ExampleStepContext_Expand() {
	plan := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PlanCreate) (string, error) {
		sub := flow.New()
		var prev *flow.Node
		for _, name := range []string{"Base", "Build", "Peak"} {
			n := sub.Add(PhaseCreate{PlanID: m.PlanID, Name: name}, &flow.NodeOpts{ID: "phase-" + name})
			if prev != nil {
				n.After(prev) // phases in sequence
			}
			prev = n
		}
		return "3 phases", sc.Expand(sub)
	})
	phase := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PhaseCreate) (string, error) {
		return m.Name, nil
	})
	client, stop := start(plan, phase, notifyStep)
	defer stop()

	g := flow.New().WithID("save")
	p := g.Add(PlanCreate{PlanID: "plan-3", Name: "Marathon"}, &flow.NodeOpts{ID: "plan"})
	g.Add(Notify{Text: "plan ready"}, &flow.NodeOpts{ID: "notify"}).After(p)
	_, _ = client.Enqueue(context.Background(), g)
	show(client, "save", "plan", "phase-Base", "phase-Build", "phase-Peak", "notify")

	j, _ := client.Job(context.Background(), "plan")
	fmt.Println("plan expanded:", j.Expanded, string(j.Result))
	// Output:
	// plan succeeded
	// phase-Base succeeded
	// phase-Build succeeded
	// phase-Peak succeeded
	// notify succeeded
	// plan expanded: true "3 phases"
}

// Retries: an error is retried with the node's backoff (by default
// exponential from 2s: 2s, 4s, 8s…) until its attempts are spent.
func ExampleBackoff() {
	var calls atomic.Int32
	flaky := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Notify) (string, error) {
		calls.Add(1)
		if sc.Attempt < 3 {
			return "", fmt.Errorf("push service unavailable (attempt %d)", sc.Attempt)
		}
		return "delivered", nil
	})
	client, stop := start(flaky)
	defer stop()

	backoff := flow.Exponential(20 * time.Millisecond).WithMax(time.Second) // 20ms, 40ms
	j, _ := client.Add(context.Background(), Notify{Text: "hi"}, &flow.NodeOpts{ID: "push", Attempts: 5, Backoff: &backoff})
	show(client, j.ID)

	job, _ := client.Job(context.Background(), "push")
	fmt.Println("attempts:", job.Attempt, "calls:", calls.Load(), "last error:", job.Error.Message)
	// Output:
	// push succeeded
	// attempts: 3 calls: 3 last error: push service unavailable (attempt 2)
}

// Cancel a job: its descendants follow their policies, so under the default
// Require they are cancelled too, with the reason.
func ExampleClient_Cancel() {
	client, stop := start(notifyStep)
	defer stop()
	ctx := context.Background()

	g := flow.New().WithID("reminders")
	later := g.Add(Notify{Text: "stretch"}, &flow.NodeOpts{ID: "remind", Delay: time.Hour})
	g.Add(Notify{Text: "log it"}, &flow.NodeOpts{ID: "follow-up"}).After(later)
	_, _ = client.Enqueue(ctx, g)

	_, _ = client.Cancel(ctx, "remind", "user unsubscribed")
	show(client, "reminders")

	_, err := client.Cancel(ctx, "no-such-job", "")
	fmt.Println(flow.IsNotFound(err))
	// Output:
	// remind cancelled (user unsubscribed)
	// follow-up cancelled (parent remind cancelled)
	// true
}

// Retry a failed job by hand: it gets a fresh attempt count, and the
// descendants it cancelled wait for it again.
func ExampleClient_Retry() {
	var fixed atomic.Bool
	charge := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Charge) (string, error) {
		if !fixed.Load() {
			return "", flow.Permanent(errors.New("gateway misconfigured"))
		}
		return "charged", nil
	})
	client, stop := start(charge, notifyStep)
	defer stop()
	ctx := context.Background()

	g := flow.New().WithID("order")
	pay := g.Add(Charge{Cents: 500}, &flow.NodeOpts{ID: "charge"})
	g.Add(Notify{Text: "receipt"}, &flow.NodeOpts{ID: "receipt"}).After(pay)
	_, _ = client.Enqueue(ctx, g)
	show(client, "order")

	fixed.Store(true) // deploy the fix
	n, _ := client.Retry(ctx, "charge")
	fmt.Println("reopened:", n)
	show(client, "order")
	// Output:
	// charge failed
	// receipt cancelled (parent charge failed)
	// reopened: 2
	// charge succeeded
	// receipt succeeded
}

// Pause a queue: running steps finish, nothing new is claimed until Resume.
func ExampleClient_Pause() {
	client, stop := start(notifyStep)
	defer stop()
	ctx := context.Background()

	_ = client.Pause(ctx, "mail")
	j, _ := client.Add(ctx, Notify{Text: "newsletter"}, &flow.NodeOpts{ID: "newsletter", Queue: "mail"})
	time.Sleep(50 * time.Millisecond) // a runner serving "mail" would have taken it by now
	job, _ := client.Job(ctx, j.ID)
	stats, _ := client.Stats(ctx, nil)
	fmt.Println(job.State, stats.Paused)

	_ = client.Resume(ctx, "mail")
	show(client, j.ID)
	// Output:
	// ready [mail]
	// newsletter succeeded
}

// A dependency on a job enqueued earlier, by ID (the seed's
// queuePhaseCreateWithDependency). A parent that already succeeded
// satisfies the dependency at once.
func ExampleNode_AfterJob() {
	plan := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PlanCreate) (string, error) {
		return m.PlanID, nil
	})
	phase := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PhaseCreate) (string, error) {
		id, err := flow.ParentResult[string](ctx, sc, sc.Envelope.Metadata["planJob"].(string))
		return m.Name + " in " + id, err
	})
	client, stop := start(plan, phase)
	defer stop()
	ctx := context.Background()

	p, _ := client.Add(ctx, PlanCreate{PlanID: "plan-5", Name: "Strength"}, &flow.NodeOpts{ID: "plan-job"})
	show(client, p.ID)

	g := flow.New().WithID("phases")
	for _, name := range []string{"Base", "Peak"} {
		g.Add(PhaseCreate{PlanID: "plan-5", Name: name}, &flow.NodeOpts{ID: name, Metadata: map[string]any{"planJob": p.ID}}).AfterJob(p.ID)
	}
	res, _ := client.Enqueue(ctx, g)
	fmt.Println(res.Jobs[0].State, res.Jobs[1].State)
	show(client, "phases")
	j, _ := client.Job(ctx, "Peak")
	fmt.Println(string(j.Result))
	// Output:
	// plan-job succeeded
	// ready ready
	// Base succeeded
	// Peak succeeded
	// "Peak in plan-5"
}
