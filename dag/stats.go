package dag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DurationBuckets are the upper bounds of the step-duration histogram kept
// per minute (the last bucket is unbounded).
var DurationBuckets = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}

// Count is the number of nodes in one state, queue and message type.
type Count struct {
	State State  `json:"state"`
	Queue string `json:"queue"`
	Type  string `json:"type"`
	N     int64  `json:"n"`
}

// Counts reads the live per-state counters (finished nodes count until
// retention removes them).
func (s *Store) Counts(ctx context.Context) ([]Count, error) {
	h, err := s.rdb.HGetAll(ctx, s.k.counts()).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]Count, 0, len(h))
	for k, v := range h {
		f := strings.SplitN(k, "|", 3)
		n, _ := strconv.ParseInt(v, 10, 64)
		if len(f) != 3 || n == 0 {
			continue
		}
		out = append(out, Count{State: State(f[0]), Queue: f[1], Type: f[2], N: n})
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
	Buckets []int64 // len(DurationBuckets)+1
}

// NewMinute returns an empty minute starting at start (truncated).
func NewMinute(start time.Time) Minute {
	return Minute{
		Start: start.Truncate(time.Minute),
		OK:    map[string]int64{}, Failed: map[string]int64{}, Retried: map[string]int64{},
		Buckets: make([]int64, len(DurationBuckets)+1),
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
	b := len(DurationBuckets)
	for i, ub := range DurationBuckets {
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
			Buckets: make([]int64, len(DurationBuckets)+1),
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

// Quantile estimates the q-quantile of step durations from histogram
// buckets (the upper bound of the bucket it falls in).
func Quantile(buckets []int64, q float64) time.Duration {
	var total int64
	for _, b := range buckets {
		total += b
	}
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	var acc int64
	for i, b := range buckets {
		acc += b
		if acc >= rank {
			if i < len(DurationBuckets) {
				return DurationBuckets[i]
			}
			return DurationBuckets[len(DurationBuckets)-1]
		}
	}
	return DurationBuckets[len(DurationBuckets)-1]
}

// Event is one transition from the event stream.
type Event struct {
	StreamID string    `json:"streamId"`
	Node     string    `json:"node"`
	From     State     `json:"from,omitempty"`
	To       State     `json:"to"`
	At       time.Time `json:"at"`
	Attempt  int       `json:"attempt"`
	Worker   string    `json:"worker,omitempty"`
}

func parseEvents(msgs []redis.XMessage) []Event {
	var out []Event
	for _, m := range msgs {
		body, _ := m.Values["e"].(string)
		for _, line := range strings.Split(body, "\n") {
			f := strings.Split(line, sep)
			if len(f) < 6 {
				continue
			}
			e := Event{StreamID: m.ID, Node: f[0], From: State(f[1]), To: State(f[2]), At: fromMS(f[3]), Worker: f[5]}
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
func (s *Store) Events(ctx context.Context, after string, count int64, block time.Duration) ([]Event, string, error) {
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
func (s *Store) RecentEvents(ctx context.Context, entries int64) ([]Event, error) {
	res, err := s.rdb.XRevRangeN(ctx, s.k.events(), "+", "-", entries).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	ev := parseEvents(res)
	// within one entry lines are oldest first; make the whole list newest first
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].At.After(ev[j].At) })
	return ev, nil
}

// Pause stops runners from claiming nodes of queue; running steps finish.
func (s *Store) Pause(ctx context.Context, queue string) error {
	if err := CheckName(queue); err != nil {
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

// RunnerInfo is what a runner says of itself with each heartbeat.
type RunnerInfo struct {
	Host        string    `json:"host,omitempty"`
	PID         int       `json:"pid,omitempty"`
	Version     string    `json:"version,omitempty"`
	Queues      []string  `json:"queues"`
	Types       []string  `json:"types"` // the message types it has steps for: all it claims
	Concurrency int       `json:"concurrency"`
	InFlight    int       `json:"inFlight"`
	Started     time.Time `json:"started"`
}

// Serves reports whether the runner claims nodes of type typ on queue.
func (ri *RunnerInfo) Serves(queue, typ string) bool {
	return slices.Contains(ri.Queues, queue) && slices.Contains(ri.Types, typ)
}

// Runner is a runner that sent a heartbeat. Info is nil for a runner of a
// Trellis that sent no record.
type Runner struct {
	ID       string      `json:"id"`
	LastSeen time.Time   `json:"lastSeen"`
	Info     *RunnerInfo `json:"info,omitempty"`
}

// Runners lists runners seen since the given time, with their records.
func (s *Store) Runners(ctx context.Context, since time.Time) ([]Runner, error) {
	min := "-inf"
	if !since.IsZero() {
		min = ms(since)
	}
	res, err := s.rdb.ZRangeByScoreWithScores(ctx, s.k.runners(), &redis.ZRangeBy{Min: min, Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]Runner, len(res))
	if len(res) == 0 {
		return out, nil
	}
	ids := make([]string, len(res))
	for i, z := range res {
		ids[i] = str(z.Member)
		out[i] = Runner{ID: ids[i], LastSeen: time.UnixMilli(int64(z.Score))}
	}
	infos, err := s.rdb.HMGet(ctx, s.k.runnerInfo(), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	for i, v := range infos {
		if raw, ok := v.(string); ok {
			var ri RunnerInfo
			if json.Unmarshal([]byte(raw), &ri) == nil {
				out[i].Info = &ri
			}
		}
	}
	return out, nil
}

const readyEpoch = 1700000000000

// OldestReady is when the longest-waiting ready node of queue became ready,
// or zero when none is.
func (s *Store) OldestReady(ctx context.Context, queue string) (time.Time, error) {
	lanes, err := s.readyLanes(ctx, queue)
	if err != nil || len(lanes) == 0 {
		return time.Time{}, err
	}
	cmds := make([]*redis.ZSliceCmd, len(lanes))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range lanes {
			cmds[i] = p.ZRangeWithScores(ctx, key, 0, 0)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("dag: redis: %w", err)
	}
	var oldest time.Time
	for _, c := range cmds {
		for _, z := range c.Val() {
			// the head of a lane is its best priority; among equals, the oldest
			at := time.UnixMilli(int64(z.Score)%(1<<41) + readyEpoch)
			if oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
		}
	}
	return oldest, nil
}

// readyLanes are the ready sets of queue's lanes (all queues when queue is
// "") that the counters say hold nodes, queue by queue.
func (s *Store) readyLanes(ctx context.Context, queue string) ([]string, error) {
	counts, err := s.Counts(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, c := range counts {
		if c.State == Ready && c.N > 0 && (queue == "" || c.Queue == queue) {
			keys = append(keys, s.k.ready(c.Queue, c.Type))
		}
	}
	return keys, nil
}

// Stalled counts active nodes whose lease has expired and not yet been recovered.
func (s *Store) Stalled(ctx context.Context, now time.Time) (int64, error) {
	now, err := s.clock(ctx, now)
	if err != nil {
		return 0, err
	}
	return s.rdb.ZCount(ctx, s.k.active(), "-inf", ms(now)).Result()
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

// Limit bounds how many nodes of one message type run at once (per queue)
// and how many may start per window, across all runners.
type Limit struct {
	Concurrency int           `json:"concurrency,omitempty"` // 0: unlimited
	Rate        int           `json:"rate,omitempty"`        // starts per Per; 0: unlimited
	Per         time.Duration `json:"per,omitempty"`
}

// SetLimit sets the limit of a message type; the zero Limit removes it.
func (s *Store) SetLimit(ctx context.Context, typ string, l Limit) error {
	if err := CheckName(typ); err != nil {
		return fmt.Errorf("dag: message type %q %s", typ, err.Error())
	}
	if l.Concurrency < 0 || l.Rate < 0 || l.Per < 0 {
		return fmt.Errorf("dag: limit for %s: values must not be negative", typ)
	}
	if l.Rate > 0 && l.Per < time.Millisecond {
		return fmt.Errorf("dag: limit for %s: a rate needs Per of at least 1ms", typ)
	}
	if l == (Limit{}) {
		return s.rdb.HDel(ctx, s.k.control(), "t:"+typ).Err()
	}
	v := fmt.Sprintf("%d|%d|%d", l.Concurrency, l.Rate, l.Per.Milliseconds())
	return s.rdb.HSet(ctx, s.k.control(), "t:"+typ, v).Err()
}

// Limits reads every message type's limit.
func (s *Store) Limits(ctx context.Context) (map[string]Limit, error) {
	h, err := s.rdb.HGetAll(ctx, s.k.control()).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make(map[string]Limit, len(h))
	for f, v := range h {
		typ, ok := strings.CutPrefix(f, "t:")
		if !ok {
			continue
		}
		var c, r, per int64
		if _, err := fmt.Sscanf(v, "%d|%d|%d", &c, &r, &per); err == nil {
			out[typ] = Limit{Concurrency: int(c), Rate: int(r), Per: time.Duration(per) * time.Millisecond}
		}
	}
	return out, nil
}

// Indexed reports whether StateIDs lists nodes of state st: ready, delayed
// and active nodes are in the sets the engine works from, failed ones in an
// index kept for listing them. The other states are found by scanning.
func Indexed(st State) bool { return st == Ready || st == Delayed || st == Active || st == Failed }

// StateIDs returns the IDs of up to limit nodes in state st, one of the
// Indexed states, and how many there are, in O(limit): failed nodes latest
// failure first, delayed ones soonest due first, active ones soonest lease
// end first, ready ones lane by lane (queue, then type) in the order they will be claimed.
// complete is false when the counters know of more such nodes than the sets
// hold (nodes that failed under a Trellis without the failed index): the
// list is then partial, and a caller that needs all of them has to scan
// (ScanNodeIDs).
func (s *Store) StateIDs(ctx context.Context, st State, limit int) (ids []string, total int64, complete bool, err error) {
	if limit <= 0 {
		return nil, 0, false, fmt.Errorf("dag: StateIDs: limit %d is not positive", limit)
	}
	if !Indexed(st) {
		return nil, 0, false, fmt.Errorf("dag: StateIDs: %s nodes are not indexed", st)
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		return nil, 0, false, err
	}
	var counted int64
	var lanes []string // ready sets with nodes, queue by queue
	for _, c := range counts {
		if c.State == st {
			counted += c.N
			if c.N > 0 && st == Ready {
				lanes = append(lanes, s.k.ready(c.Queue, c.Type))
			}
		}
	}
	var keys []string
	switch st {
	case Failed:
		keys = []string{s.k.failed()}
	case Delayed:
		keys = []string{s.k.delayed()}
	case Active:
		keys = []string{s.k.active()}
	case Ready:
		keys = lanes
	}
	ranges := make([]*redis.StringSliceCmd, len(keys))
	cards := make([]*redis.IntCmd, len(keys))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys {
			ranges[i] = p.ZRangeArgs(ctx, redis.ZRangeArgs{Key: key, Start: 0, Stop: int64(limit - 1), Rev: st == Failed})
			cards[i] = p.ZCard(ctx, key)
		}
		return nil
	})
	if err != nil {
		return nil, 0, false, fmt.Errorf("dag: redis: %w", err)
	}
	for i := range keys {
		total += cards[i].Val()
		for _, id := range ranges[i].Val() {
			if len(ids) < limit {
				ids = append(ids, id)
			}
		}
	}
	return ids, max(total, counted), total >= counted, nil
}

// ScanNodeIDs calls fn with batches of the namespace's node IDs, in no
// particular order, until fn returns false or an error. It SCANs the whole
// keyspace (O(keys in Redis)); use it for tools, not hot paths.
func (s *Store) ScanNodeIDs(ctx context.Context, batch int, fn func(ids []string) (bool, error)) error {
	if batch <= 0 {
		batch = 500
	}
	prefix := s.k.node("")
	done := false
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, prefix+"*", int64(batch)).Iterator()
		ids := make([]string, 0, batch)
		flush := func() error {
			if len(ids) == 0 || done {
				return nil
			}
			more, err := fn(ids)
			ids = ids[:0]
			done = !more
			return err
		}
		for !done && iter.Next(ctx) {
			ids = append(ids, strings.TrimPrefix(iter.Val(), prefix))
			if len(ids) == batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("dag: redis: %w", err)
		}
		return flush()
	}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		// the namespace lives in one slot; only its master has keys
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	}
	return scan(ctx, s.rdb)
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
