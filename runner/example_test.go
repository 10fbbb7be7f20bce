package runner_test

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

type Thumbnail struct {
	Image string `json:"image"`
}

func (Thumbnail) MessageType() string { return "THUMBNAIL" }

// A runner registers one step per message type, runs until Stop, and on
// Stop lets the steps in flight finish.
func Example() {
	ctx := context.Background()
	rds, _ := embedded.NewRedis()
	defer rds.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	client, _ := flow.NewClient(rds.Client(), &flow.Config{Namespace: "example", Logger: quiet})

	r, _ := runner.New(client, &runner.Config{Concurrency: 2})
	started := make(chan struct{})
	_ = runner.Handle(r, func(ctx context.Context, sc *flow.StepContext, m Thumbnail) (string, error) {
		close(started)
		time.Sleep(100 * time.Millisecond) // still running when Stop is called
		return m.Image + ".thumb.png", nil
	})
	_ = r.Start(ctx)

	job, _ := client.Add(ctx, Thumbnail{Image: "cat"}, &flow.NodeOpts{ID: "thumb-1"})
	<-started

	// Stop waits for the running step (up to the context's deadline; after
	// it, unfinished jobs are handed back to other runners).
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = r.Stop(stopCtx)

	j, _ := client.Job(ctx, job.ID)
	fmt.Println(j.State, string(j.Result))
	// Output:
	// succeeded "cat.thumb.png"
}
