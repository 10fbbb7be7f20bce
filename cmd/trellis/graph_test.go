package main_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
)

type wideStep struct {
	N int `json:"n"`
}

func (wideStep) MessageType() string { return "WIDE" }

func TestGraphSaysWhenItCollapsed(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	opt, err := redis.ParseURL(redisURL())
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: c.ns, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	g := flow.New().WithID("wide")
	root := g.Add(wideStep{}, &flow.NodeOpts{ID: "wide/root"})
	for i := range 400 {
		g.Add(wideStep{N: i}, &flow.NodeOpts{ID: fmt.Sprintf("wide/%d", i)}).After(root)
	}
	_, err = client.Enqueue(context.Background(), g)
	require.NoError(t, err)

	r := c.run("", "graph", "wide", "--siblings", "-1", "--boxes", "50", "--rank", "-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "trellis graph: collapsed to stay within 50 boxes and 100 edges: 401 nodes in 50 boxes, 49 siblings per group (--boxes raises the limit, up to 1000)")
	boxes := regexp.MustCompile(`(?m)^\t"(?:[^"\\]|\\.)*" \[`).FindAllString(r.stdout, -1)
	require.Len(t, boxes, 50)
	// by default a rank holds 40 boxes at most
	r = c.run("", "graph", "wide", "--siblings", "-1", "--boxes", "50")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "trellis graph: collapsed to stay within 50 boxes, 100 edges and 40 boxes per rank: 401 nodes in 41 boxes, down to 40 siblings per group in the widest ranks (--rank and --boxes raise the limits")
	require.Contains(t, r.stdout, `rankdir="LR"`, "a fan-out goes left to right")
	r = c.run("", "graph", "wide", "--rank", "0")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--rank 0: must be positive")

	r = c.run("", "graph", "wide")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr, "within the limits nothing is said")

	r = c.run("", "graph", "wide", "--boxes", "1001")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--boxes 1001: must be from 2 to 1000")
}
