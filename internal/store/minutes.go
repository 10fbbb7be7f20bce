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
	// Lanes are the same runs by queue and message type. Minutes written
	// by runners from before lanes were kept have none.
	Lanes map[Lane]*LaneRuns
	// Sampled says a runner sampled the backlog in this minute (see
	// SampleBacklog); Waiting is that sample: ready and delayed jobs by
	// lane, lanes with none left out.
	Sampled bool
	Waiting map[Lane][2]int64
}

// Lane is a queue and a message type.
type Lane struct{ Queue, Type string }

// LaneRuns are one lane's finished runs in a minute.
type LaneRuns struct {
	OK, Failed, Retried int64
	Total               time.Duration
	Buckets             []int64 // len(dag.DurationBuckets)+1
}

// NewMinute returns an empty minute starting at start (truncated).
func NewMinute(start time.Time) Minute {
	return Minute{
		Start: start.Truncate(time.Minute),
		OK:    map[string]int64{}, Failed: map[string]int64{}, Retried: map[string]int64{},
		Buckets: make([]int64, len(dag.DurationBuckets)+1),
		Lanes:   map[Lane]*LaneRuns{},
		Waiting: map[Lane][2]int64{},
	}
}

func (m *Minute) lane(l Lane) *LaneRuns {
	r := m.Lanes[l]
	if r == nil {
		r = &LaneRuns{Buckets: make([]int64, len(dag.DurationBuckets)+1)}
		m.Lanes[l] = r
	}
	return r
}

// Observe adds one finished run of type typ from queue.
func (m *Minute) Observe(queue, typ string, kind OutcomeKind, final bool, took time.Duration) {
	switch {
	case kind == OutcomeOK:
		m.OK[typ]++
		m.lane(Lane{queue, typ}).OK++
	case kind == OutcomeRetry && !final:
		m.Retried[typ]++
		m.lane(Lane{queue, typ}).Retried++
		return
	case kind == OutcomeRetry || kind == OutcomeFail:
		m.Failed[typ]++
		m.lane(Lane{queue, typ}).Failed++
	default:
		return
	}
	l := m.lane(Lane{queue, typ})
	m.Runs++
	m.Total += took
	l.Total += took
	b := Bucket(took)
	m.Buckets[b]++
	l.Buckets[b]++
}

// Bucket is the index of the duration histogram's bucket that took falls
// in: len(dag.DurationBuckets) past the last bound.
func Bucket(took time.Duration) int {
	for i, ub := range dag.DurationBuckets {
		if took <= ub {
			return i
		}
	}
	return len(dag.DurationBuckets)
}

// Empty reports whether nothing was observed.
func (m *Minute) Empty() bool { return m.Runs == 0 && len(m.Retried) == 0 && !m.Sampled }

// AddMinute adds a runner's observations to the shared minute stats: its
// runs are added to the minute's, its backlog sample (if Sampled) replaces
// the minute's.
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
		// a lane's fields: "l" and what is counted, then queue|type
		for l, r := range m.Lanes {
			suffix := "|" + l.Queue + "|" + l.Type
			for f, n := range map[string]int64{"lok": r.OK, "lfail": r.Failed, "lretry": r.Retried, "lus": r.Total.Microseconds()} {
				if n != 0 {
					p.HIncrBy(ctx, key, f+suffix, n)
				}
			}
			for i, b := range r.Buckets {
				if b > 0 {
					p.HIncrBy(ctx, key, "lb"+strconv.Itoa(i+1)+suffix, b)
				}
			}
		}
		if m.Sampled {
			p.HSet(ctx, key, "w", 1)
			for l, w := range m.Waiting {
				if w[0] != 0 {
					p.HSet(ctx, key, "wr|"+l.Queue+"|"+l.Type, w[0])
				}
				if w[1] != 0 {
					p.HSet(ctx, key, "wd|"+l.Queue+"|"+l.Type, w[1])
				}
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

// readLane adds the lane field k ("lok|queue|type", "lb3|queue|type", ...);
// it ignores a field it does not know.
func (m *Minute) readLane(k string, x int64) {
	f := strings.SplitN(k, "|", 3)
	if len(f) != 3 {
		return
	}
	r := m.lane(Lane{f[1], f[2]})
	switch f[0] {
	case "lok":
		r.OK = x
	case "lfail":
		r.Failed = x
	case "lretry":
		r.Retried = x
	case "lus":
		r.Total = time.Duration(x) * time.Microsecond
	default:
		b, err := strconv.Atoi(strings.TrimPrefix(f[0], "lb"))
		if strings.HasPrefix(f[0], "lb") && err == nil && b >= 1 && b <= len(r.Buckets) {
			r.Buckets[b-1] = x
		}
	}
}

// SampleBacklog writes the ready and delayed jobs of every lane now into
// the stats of the minute at, for the backlog's history: runners call it
// once a minute, and a later sample of the same minute replaces an
// earlier one.
func (s *Store) SampleBacklog(ctx context.Context, at time.Time) error {
	counts, err := s.Counts(ctx)
	if err != nil {
		return err
	}
	m := Minute{Start: at.Truncate(time.Minute), Sampled: true, Waiting: map[Lane][2]int64{}}
	for _, c := range counts {
		l := Lane{c.Queue, c.Type}
		w := m.Waiting[l]
		switch c.State {
		case dag.Ready:
			w[0] = c.N
		case dag.Delayed:
			w[1] = c.N
		default:
			continue
		}
		m.Waiting[l] = w
	}
	return s.AddMinute(ctx, m)
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
		m := NewMinute(time.UnixMilli((cur - int64(n-1-i)) * 60000))
		for k, v := range c.Val() {
			x, _ := strconv.ParseInt(v, 10, 64)
			switch {
			case k == "w":
				m.Sampled = true
			case strings.HasPrefix(k, "wr|") || strings.HasPrefix(k, "wd|"):
				if f := strings.SplitN(k, "|", 3); len(f) == 3 {
					l := Lane{f[1], f[2]}
					w := m.Waiting[l]
					if f[0] == "wr" {
						w[0] = x
					} else {
						w[1] = x
					}
					m.Waiting[l] = w
				}
			case strings.HasPrefix(k, "l"):
				m.readLane(k, x)
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
