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

// Counts reads the live per-state counters (finished nodes count until
// retention removes them).
func (s *Store) Counts(ctx context.Context) ([]dag.Count, error) {
	h, err := s.rdb.HGetAll(ctx, s.k.counts()).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]dag.Count, 0, len(h))
	for k, v := range h {
		f := strings.SplitN(k, "|", 3)
		n, _ := strconv.ParseInt(v, 10, 64)
		if len(f) != 3 || n == 0 {
			continue
		}
		out = append(out, dag.Count{State: dag.State(f[0]), Queue: f[1], Type: f[2], N: n})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Queue != b.Queue {
			return a.Queue < b.Queue
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.State < b.State
	})
	return out, nil
}

// Minute is one minute of finished step runs.
type Minute struct {
	Start   time.Time
	OK      map[string]int64 // by message type
	Failed  map[string]int64
	Retried map[string]int64
	Runs    int64 // finished runs (ok + failed) with a duration
	Total   time.Duration
	Buckets []int64 // len(dag.DurationBuckets)+1
}

// NewMinute returns an empty minute starting at start (truncated).
func NewMinute(start time.Time) Minute {
	return Minute{
		Start: start.Truncate(time.Minute),
		OK:    map[string]int64{}, Failed: map[string]int64{}, Retried: map[string]int64{},
		Buckets: make([]int64, len(dag.DurationBuckets)+1),
	}
}

// Observe adds one finished run of type typ.
func (m *Minute) Observe(typ string, kind OutcomeKind, final bool, took time.Duration) {
	switch {
	case kind == OutcomeOK:
		m.OK[typ]++
	case kind == OutcomeRetry && !final:
		m.Retried[typ]++
		return
	case kind == OutcomeRetry || kind == OutcomeFail:
		m.Failed[typ]++
	default:
		return
	}
	m.Runs++
	m.Total += took
	b := len(dag.DurationBuckets)
	for i, ub := range dag.DurationBuckets {
		if took <= ub {
			b = i
			break
		}
	}
	m.Buckets[b]++
}

// Empty reports whether nothing was observed.
func (m *Minute) Empty() bool { return m.Runs == 0 && len(m.Retried) == 0 }

// AddMinute adds a runner's observations to the shared minute stats.
func (s *Store) AddMinute(ctx context.Context, m Minute) error {
	if m.Empty() {
		return nil
	}
	key := s.k.minute(m.Start.UnixMilli() / 60000)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for t, n := range m.OK {
			p.HIncrBy(ctx, key, "ok|"+t, n)
		}
		for t, n := range m.Failed {
			p.HIncrBy(ctx, key, "fail|"+t, n)
		}
		for t, n := range m.Retried {
			p.HIncrBy(ctx, key, "retry|"+t, n)
		}
		if m.Runs > 0 {
			p.HIncrBy(ctx, key, "n", m.Runs)
			p.HIncrBy(ctx, key, "us", m.Total.Microseconds())
		}
		for i, b := range m.Buckets {
			if b > 0 {
				p.HIncrBy(ctx, key, "b"+strconv.Itoa(i+1), b)
			}
		}
		p.PExpire(ctx, key, 2*time.Hour)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dag: redis: %w", err)
	}
	return nil
}

// Minutes reads the last n minutes of stats, oldest first.
func (s *Store) Minutes(ctx context.Context, now time.Time, n int) ([]Minute, error) {
	now, err := s.clock(ctx, now)
	if err != nil {
		return nil, err
	}
	cur := now.UnixMilli() / 60000
	cmds := make([]*redis.MapStringStringCmd, n)
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < n; i++ {
			cmds[i] = p.HGetAll(ctx, s.k.minute(cur-int64(n-1-i)))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]Minute, n)
	for i, c := range cmds {
		m := Minute{
			Start: time.UnixMilli((cur - int64(n-1-i)) * 60000),
			OK:    map[string]int64{}, Failed: map[string]int64{}, Retried: map[string]int64{},
			Buckets: make([]int64, len(dag.DurationBuckets)+1),
		}
		for k, v := range c.Val() {
			x, _ := strconv.ParseInt(v, 10, 64)
			switch {
			case k == "n":
				m.Runs = x
			case k == "us":
				m.Total = time.Duration(x) * time.Microsecond
			case strings.HasPrefix(k, "ok|"):
				m.OK[k[3:]] = x
			case strings.HasPrefix(k, "fail|"):
				m.Failed[k[5:]] = x
			case strings.HasPrefix(k, "retry|"):
				m.Retried[k[6:]] = x
			case strings.HasPrefix(k, "b"):
				if b, err := strconv.Atoi(k[1:]); err == nil && b >= 1 && b <= len(m.Buckets) {
					m.Buckets[b-1] = x
				}
			}
		}
		out[i] = m
	}
	return out, nil
}
