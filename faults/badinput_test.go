package faults_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
)

// TestBadInputThroughTheGoAPI feeds every kind of bad input through the Go
// entry points (Enqueue, Add, AddBulk, AddJSON): each is refused with an error that
// matches its sentinel and names the problem, and Redis is unchanged after.
func TestBadInputThroughTheGoAPI(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &redistest.Logs{}
	c := newClient(t, rdb, "bad", logs)
	ctx := context.Background()
	reg := fuzzRegistry()
	_, err := c.Add(ctx, Work{Name: "earlier"}, &flow.NodeOpts{ID: "earlier"})
	require.NoError(t, err)
	small, err := flow.NewClient(rdb, &flow.Config{Namespace: "bad", Logger: logs.Logger(), MaxNodes: 5})
	require.NoError(t, err)
	_, err = flow.NewClient(rdb, &flow.Config{Namespace: "bad", MaxNodes: -1})
	require.ErrorContains(t, err, "Config.MaxNodes -1 is negative")

	chain := func(n int, lastAfter string) *flow.Graph {
		g := flow.New().WithID("big")
		prev := g.Add(Work{Name: "0"}, &flow.NodeOpts{ID: "big-0"})
		for i := 1; i < n; i++ {
			prev = g.Add(Work{Name: "n"}, &flow.NodeOpts{ID: "big-" + strconv.Itoa(i)}).After(prev)
		}
		prev.AfterJob(lastAfter)
		return g
	}
	cases := []struct {
		name  string
		do    func() error
		is    error
		names string // a fragment the message must hold
	}{
		{"malformed JSON", func() error {
			_, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"FUZZ_PLAN",`), nil)
			return err
		}, flow.ErrInvalidMessage, "malformed envelope"},
		{"unknown message type", func() error {
			_, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"NOPE","timestamp":"2026-01-02T03:04:05Z","data":{}}`), nil)
			return err
		}, flow.ErrInvalidMessage, `unknown message type "NOPE"`},
		{"missing data", func() error {
			_, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"FUZZ_PLAN","timestamp":"2026-01-02T03:04:05Z"}`), nil)
			return err
		}, flow.ErrInvalidMessage, "data: is missing"},
		{"mistyped field", func() error {
			_, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"FUZZ_PLAN","timestamp":"2026-01-02T03:04:05Z","data":{"name":"n","weeks":"12"}}`), nil)
			return err
		}, flow.ErrInvalidMessage, "weeks"},
		{"unknown field", func() error {
			_, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"FUZZ_PLAN","timestamp":"2026-01-02T03:04:05Z","data":{"name":"n","weeks":2,"color":"red"}}`), nil)
			return err
		}, flow.ErrInvalidMessage, "color"},
		{"field out of range", func() error {
			_, err := c.Add(ctx, Plan{Name: "p", Weeks: 99}, nil)
			return err
		}, flow.ErrInvalidMessage, "field weeks: 99 is outside 1..52"},
		{"oversize payload", func() error {
			_, err := c.Add(ctx, Work{Name: strings.Repeat("x", 2<<20)}, nil)
			return err
		}, flow.ErrPayloadTooLarge, "over the limit"},
		{"cycle", func() error {
			g := flow.New()
			a := g.Add(Work{Name: "a"}, &flow.NodeOpts{ID: "a"})
			b := g.Add(Work{Name: "b"}, &flow.NodeOpts{ID: "b"}).After(a)
			a.After(b)
			_, err := c.Enqueue(ctx, g)
			return err
		}, flow.ErrCycle, `"a" → "b" → "a"`},
		{"duplicate ID", func() error {
			g := flow.New()
			g.Add(Work{Name: "a"}, &flow.NodeOpts{ID: "dup"})
			g.Add(Work{Name: "b"}, &flow.NodeOpts{ID: "dup"})
			_, err := c.Enqueue(ctx, g)
			return err
		}, flow.ErrDuplicateNode, `"dup"`},
		{"unknown dependency, checked in Redis after 300 valid nodes", func() error {
			_, err := c.Enqueue(ctx, chain(300, "never-enqueued"))
			return err
		}, flow.ErrUnknownDependency, `"never-enqueued"`},
		{"bad condition", func() error {
			_, err := c.Add(ctx, Work{Name: "w"}, &flow.NodeOpts{When: `message.name ==`})
			return err
		}, flow.ErrInvalidCondition, "message.name =="},
		{"condition calling a function outside the safe set", func() error {
			_, err := c.Add(ctx, Work{Name: "w"}, &flow.NodeOpts{When: `now() != nil`})
			return err
		}, flow.ErrInvalidCondition, "now"},
		{"condition over the length limit", func() error {
			_, err := c.Add(ctx, Work{Name: "w"}, &flow.NodeOpts{When: strings.Repeat("true && ", 200) + "true"})
			return err
		}, flow.ErrInvalidCondition, "over the limit"},
		{"condition on a non-parent", func() error {
			_, err := c.Add(ctx, Work{Name: "w"}, &flow.NodeOpts{When: `parents["earlier"].state == "succeeded"`})
			return err
		}, flow.ErrInvalidCondition, `parents["earlier"]`},
		{"ID with a control character", func() error {
			_, err := c.Add(ctx, Work{Name: "w"}, &flow.NodeOpts{ID: "bad\x1b[31mid"})
			return err
		}, flow.ErrInvalidNode, "control character"},
		{"graph over MaxNodes", func() error {
			_, err := small.Enqueue(ctx, chain(6, "earlier"))
			return err
		}, flow.ErrInvalidNode, "6 nodes, over the limit of 5 (MaxNodes)"},
		{"bulk over MaxNodes", func() error {
			jobs := make([]flow.BulkJob, 6)
			for i := range jobs {
				jobs[i].Msg = Work{Name: "w"}
			}
			_, err := small.AddBulk(ctx, jobs)
			return err
		}, flow.ErrInvalidNode, "6 jobs, over the limit of 5 (Config.MaxNodes)"},
		{"conflicting re-enqueue", func() error {
			_, err := c.Add(ctx, Work{Name: "something else"}, &flow.NodeOpts{ID: "earlier"})
			return err
		}, flow.ErrConflict, `"earlier"`},
	}
	keysBefore, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, tc := range cases {
		err := tc.do()
		require.Error(t, err, tc.name)
		require.True(t, errors.Is(err, tc.is), "%s: %v is not %v", tc.name, err, tc.is)
		require.Contains(t, err.Error(), tc.names, tc.name)
		require.Less(t, len(err.Error()), 4096, "%s: the error does not echo huge input: %.200s", tc.name, err.Error())
		keys, err := rdb.Keys(ctx, "*").Result()
		require.NoError(t, err)
		require.ElementsMatch(t, keysBefore, keys, "%s: Redis is unchanged", tc.name)
	}

	// IDs holding quotes, HTML and spaces are fine and come back intact.
	odd := `plan "7" <b>&amp;</b> 'x'`
	_, err = c.Add(ctx, Work{Name: "odd"}, &flow.NodeOpts{ID: odd})
	require.NoError(t, err)
	j, err := c.Job(ctx, odd)
	require.NoError(t, err)
	require.Equal(t, odd, j.ID)
	t.Logf("FIGURES bad input: cases=%d refused=%d redis_unchanged=true", len(cases), len(cases))
}
