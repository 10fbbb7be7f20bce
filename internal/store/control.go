package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/redis/go-redis/v9"
)

// Pause stops runners from claiming nodes of queue; running steps finish.
func (s *Store) Pause(ctx context.Context, queue string) error {
	if err := dag.CheckName(queue); err != nil {
		return fmt.Errorf("dag: queue %q %s", queue, err.Error())
	}
	return s.rdb.HSet(ctx, s.k.control(), "p:"+queue, "1").Err()
}

// Resume lets runners claim nodes of queue again and wakes them.
func (s *Store) Resume(ctx context.Context, queue string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, s.k.control(), "p:"+queue)
		p.LPush(ctx, s.k.wake(queue), "1")
		p.LTrim(ctx, s.k.wake(queue), 0, 63)
		return nil
	})
	return err
}

// Paused lists the paused queues.
func (s *Store) Paused(ctx context.Context) ([]string, error) {
	h, err := s.rdb.HGetAll(ctx, s.k.control()).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	q := []string{}
	for f := range h {
		if name, ok := strings.CutPrefix(f, "p:"); ok {
			q = append(q, name)
		}
	}
	sort.Strings(q)
	return q, nil
}

// SetLimit sets the limit of a message type; the zero Limit removes it.
func (s *Store) SetLimit(ctx context.Context, typ string, l dag.Limit) error {
	if err := dag.CheckName(typ); err != nil {
		return fmt.Errorf("dag: message type %q %s", typ, err.Error())
	}
	if l.Concurrency < 0 || l.Rate < 0 || l.Per < 0 {
		return fmt.Errorf("dag: limit for %s: values must not be negative", typ)
	}
	if l.Rate > 0 && l.Per < time.Millisecond {
		return fmt.Errorf("dag: limit for %s: a rate needs Per of at least 1ms", typ)
	}
	if l == (dag.Limit{}) {
		return s.rdb.HDel(ctx, s.k.control(), "t:"+typ).Err()
	}
	v := fmt.Sprintf("%d|%d|%d", l.Concurrency, l.Rate, l.Per.Milliseconds())
	return s.rdb.HSet(ctx, s.k.control(), "t:"+typ, v).Err()
}

// Limits reads every message type's limit.
func (s *Store) Limits(ctx context.Context) (map[string]dag.Limit, error) {
	h, err := s.rdb.HGetAll(ctx, s.k.control()).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make(map[string]dag.Limit, len(h))
	for f, v := range h {
		typ, ok := strings.CutPrefix(f, "t:")
		if !ok {
			continue
		}
		var c, r, per int64
		if _, err := fmt.Sscanf(v, "%d|%d|%d", &c, &r, &per); err == nil {
			out[typ] = dag.Limit{Concurrency: int(c), Rate: int(r), Per: time.Duration(per) * time.Millisecond}
		}
	}
	return out, nil
}

// RateUsed is how many nodes of typ the claim script started in the rate
// window of length per that holds now.
func (s *Store) RateUsed(ctx context.Context, typ string, per time.Duration, now time.Time) (int64, error) {
	if per <= 0 {
		return 0, nil
	}
	now, err := s.clock(ctx, now)
	if err != nil {
		return 0, err
	}
	n, err := s.rdb.Get(ctx, s.k.rateWindow(typ, now.UnixMilli()/per.Milliseconds())).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}
