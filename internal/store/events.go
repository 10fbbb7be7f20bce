package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/redis/go-redis/v9"
)

func parseEvents(msgs []redis.XMessage) []dag.Event {
	var out []dag.Event
	for _, m := range msgs {
		body, _ := m.Values["e"].(string)
		for _, line := range strings.Split(body, "\n") {
			f := strings.Split(line, sep)
			if len(f) < 6 {
				continue
			}
			e := dag.Event{StreamID: m.ID, Node: f[0], From: dag.State(f[1]), To: dag.State(f[2]), At: fromMS(f[3]), Worker: f[5]}
			e.Attempt, _ = strconv.Atoi(f[4])
			out = append(out, e)
		}
	}
	return out
}

// Events reads transitions after the stream ID after ("$" for only new
// ones, "0" for all kept), waiting up to block for some to arrive (0: no wait).
// It returns the events and the ID to pass next time. The stream is a
// recent-activity feed that keeps about the last 20,000 transitions; a
// call records its first 1,000 (a huge enqueue or cancel, no more).
// A node's own timeline (Node.Timeline) is complete.
func (s *Store) Events(ctx context.Context, after string, count int64, block time.Duration) ([]dag.Event, string, error) {
	if block <= 0 {
		block = -1
	}
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{s.k.events(), after}, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, after, nil
	}
	if err != nil {
		return nil, after, fmt.Errorf("dag: redis: %w", err)
	}
	if len(res) == 0 || len(res[0].Messages) == 0 {
		return nil, after, nil
	}
	msgs := res[0].Messages
	return parseEvents(msgs), msgs[len(msgs)-1].ID, nil
}

// LastEventID is the newest stream ID, to follow events from now on.
func (s *Store) LastEventID(ctx context.Context) (string, error) {
	res, err := s.rdb.XRevRangeN(ctx, s.k.events(), "+", "-", 1).Result()
	if err != nil {
		return "0", fmt.Errorf("dag: redis: %w", err)
	}
	if len(res) == 0 {
		return "0", nil
	}
	return res[0].ID, nil
}

// RecentEvents reads the newest transitions, newest first, from at most
// entries stream entries.
func (s *Store) RecentEvents(ctx context.Context, entries int64) ([]dag.Event, error) {
	res, err := s.rdb.XRevRangeN(ctx, s.k.events(), "+", "-", entries).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	ev := parseEvents(res)
	// within one entry lines are oldest first; make the whole list newest first
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].At.After(ev[j].At) })
	return ev, nil
}
