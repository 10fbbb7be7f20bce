package main

import (
	"context"
	"fmt"
	"time"

	"github.com/trellisflow/trellis/dag"
)

var cmdPause = &command{
	summary: "pause queues: running steps finish, nothing new is claimed",
	usage:   "[flags] QUEUE...",
	run:     func(ctx context.Context, c *cli, args []string) error { return runQueues(ctx, c, "pause", args) },
}

var cmdResume = &command{
	summary: "resume paused queues",
	usage:   "[flags] QUEUE...",
	run:     func(ctx context.Context, c *cli, args []string) error { return runQueues(ctx, c, "resume", args) },
}

var cmdLimit = &command{
	summary: "cap a message type across all runners: --concurrency N, --rate N --per D (0 removes)",
	usage:   "[flags] MESSAGE_TYPE",
	run:     runLimit,
}

func runQueues(ctx context.Context, c *cli, verb string, args []string) error {
	fs := c.flags(verb)
	o := c.commonFlags(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("give at least one QUEUE")
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	for _, q := range pos {
		if verb == "pause" {
			err = e.client.Pause(ctx, q)
		} else {
			err = e.client.Resume(ctx, q)
		}
		if err != nil {
			return usagef("queue %q: %v", q, err)
		}
		fmt.Fprintf(c.stdout, "%s: %sd\n", q, verb)
	}
	return nil
}

func runLimit(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("limit")
	o := c.commonFlags(fs)
	var l dag.Limit
	fs.IntVar(&l.Concurrency, "concurrency", 0, "at most this many running at once in each queue (0: no cap)")
	fs.IntVar(&l.Rate, "rate", 0, "at most this many starts per --per (0: no cap)")
	fs.DurationVar(&l.Per, "per", time.Second, "the window of --rate")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give exactly one MESSAGE_TYPE")
	}
	if l.Rate == 0 {
		l.Per = 0
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := e.client.SetLimit(ctx, pos[0], l); err != nil {
		return usagef("%v", err)
	}
	fmt.Fprintf(c.stdout, "%s: concurrency %d, rate %d per %s (0 = no cap)\n", pos[0], l.Concurrency, l.Rate, l.Per)
	return nil
}
