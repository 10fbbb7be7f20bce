package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/redis/go-redis/v9"
)

// Cancel cancels one unfinished job; its descendants follow their
// policies, and if it expanded, the unfinished nodes of its sub-graph are
// cancelled too. It returns how many nodes it ended (the job included); a
// finished job is a StateError.
func (s *Store) Cancel(ctx context.Context, now time.Time, id, reason string) (int, error) {
	return s.cancel(ctx, now, "node", id, reason)
}

// CancelFlow cancels every unfinished node of a flow and returns how many
// nodes it ended: the flow's unfinished ones, and the dependents in other
// flows that their policies ended.
func (s *Store) CancelFlow(ctx context.Context, now time.Time, flowID, reason string) (int, error) {
	return s.cancel(ctx, now, "flow", flowID, reason)
}

func (s *Store) cancel(ctx context.Context, now time.Time, mode, id, reason string) (int, error) {
	res, err := s.run(ctx, s.scripts.cancel, append(callArgs(4), ms(now), reason, mode, id))
	if err != nil {
		return 0, err
	}
	switch str(res[0]) {
	case "notfound":
		what := "job"
		if mode == "flow" {
			what = "flow"
		}
		return 0, &dag.NotFoundError{What: what, ID: id}
	case "state":
		return 0, &dag.StateError{ID: id, State: dag.State(str(res[1])), Op: "cancel"}
	}
	n, _ := strconv.Atoi(str(res[1]))
	return n, nil
}

// Retry runs a failed or cancelled job again, together with the descendants
// that were cancelled or skipped because of it. Children its end released
// that have not started (an ignore child of a failed job) wait for it
// again; ones already running are left to finish, retries included. It
// returns how many nodes were reopened.
func (s *Store) Retry(ctx context.Context, now time.Time, id string) (int, error) {
	res, err := s.run(ctx, s.scripts.retry, append(callArgs(2), ms(now), id))
	if err != nil {
		return 0, err
	}
	switch str(res[0]) {
	case "notfound":
		return 0, &dag.NotFoundError{What: "job", ID: id}
	case "state":
		return 0, &dag.StateError{ID: id, State: dag.State(str(res[1])), Op: "retry"}
	}
	n, _ := strconv.Atoi(str(res[1]))
	return n, nil
}

// Remove deletes a finished flow (every node terminal) with its nodes now,
// instead of waiting for retention. An unfinished flow is a StateError.
// A flow of more than 10,000 nodes is deleted over several calls (Redis
// runs each alone); between them it is partly there.
func (s *Store) Remove(ctx context.Context, now time.Time, flowID string) error {
	for call := 0; ; call++ {
		res, err := s.run(ctx, s.scripts.remove, append(callArgs(3), ms(now), "flow", flowID))
		if err != nil {
			return err
		}
		switch str(res[0]) {
		case "notfound":
			if call > 0 { // a trim deleted the rest meanwhile
				return nil
			}
			return &dag.NotFoundError{What: "flow", ID: flowID}
		case "state":
			return fmt.Errorf("%w: flow %q has %s unfinished nodes; cancel it before removing it", dag.ErrState, flowID, str(res[1]))
		}
		if str(res[2]) != "1" {
			return nil
		}
	}
}

// Trim deletes flows that finished more than olderThan ago, up to limit
// per call (0: 500); it returns how many it deleted, and whether to call
// again because more are due. One call deletes at most 10,000 nodes (Redis
// runs it alone), so a larger flow takes several calls, and counts as
// deleted in the last.
func (s *Store) Trim(ctx context.Context, now time.Time, olderThan time.Duration, limit int) (deleted int, more bool, err error) {
	if limit <= 0 {
		limit = 500
	}
	if olderThan < time.Millisecond {
		olderThan = time.Millisecond
	}
	res, err := s.run(ctx, s.scripts.remove, append(callArgs(5), ms(now), "trim", olderThan.Milliseconds(), -1, limit))
	if err != nil {
		return 0, false, err
	}
	deleted, _ = strconv.Atoi(str(res[1]))
	return deleted, deleted == limit || str(res[2]) == "1", nil
}

// Clear deletes every key of the namespace. It returns the number deleted.
func (s *Store) Clear(ctx context.Context) (int, error) {
	deleted := 0
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, s.k.pattern(), 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			n, err := c.Unlink(ctx, batch...).Result()
			deleted += int(n)
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		// every key shares one slot, so only its master holds them
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
		return deleted, err
	}
	return deleted, scan(ctx, s.rdb)
}
