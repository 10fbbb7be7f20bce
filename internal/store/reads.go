package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/redis/go-redis/v9"
)

// Node reads one node.
func (s *Store) Node(ctx context.Context, id string) (*dag.Node, error) {
	nodes, err := s.Nodes(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if nodes[0] == nil {
		return nil, &dag.NotFoundError{What: "job", ID: id}
	}
	return nodes[0], nil
}

// Nodes reads many nodes in one round trip; missing ones are nil.
func (s *Store) Nodes(ctx context.Context, ids []string) ([]*dag.Node, error) {
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.k.node(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]*dag.Node, len(ids))
	for i, c := range cmds {
		h := c.Val()
		if len(h) == 0 || h["st"] == "" {
			continue
		}
		n, err := decodeNode(ids[i], h)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// Peek is a parent's state and result, as a step or a condition sees it.
type Peek struct {
	ID     string
	State  dag.State
	Result json.RawMessage
	Error  *dag.ErrorInfo
	Span   string // traceparent of its last run, when tracing was on
}

// Peek reads the state and result of several nodes in one round trip.
// A node removed by retention reads as succeeded with no result.
func (s *Store) Peek(ctx context.Context, ids []string) ([]Peek, error) {
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.k.node(id), "st", "r", "er", "sp")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]Peek, len(ids))
	for i, c := range cmds {
		v := c.Val()
		out[i] = Peek{ID: ids[i], State: dag.Succeeded}
		if st := str(v[0]); st != "" {
			out[i].State = dag.State(st)
		}
		if r := str(v[1]); r != "" {
			out[i].Result = json.RawMessage(r)
		}
		if e := str(v[2]); e != "" {
			var ei dag.ErrorInfo
			if json.Unmarshal([]byte(e), &ei) == nil {
				out[i].Error = &ei
			}
		}
		out[i].Span = str(v[3])
	}
	return out, nil
}

// FlowIDs lists the node IDs of a flow.
func (s *Store) FlowIDs(ctx context.Context, flowID string) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.k.flow(flowID)).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	if len(ids) == 0 {
		// a one-node flow is keyed by its node
		if n, err := s.rdb.Exists(ctx, s.k.node(flowID)).Result(); err == nil && n == 1 {
			return []string{flowID}, nil
		}
		return nil, &dag.NotFoundError{What: "flow", ID: flowID}
	}
	sort.Strings(ids)
	return ids, nil
}

// Flow reads a whole flow, its nodes in topological order (ties by ID).
func (s *Store) Flow(ctx context.Context, flowID string) (*dag.Flow, error) {
	ids, err := s.FlowIDs(ctx, flowID)
	if err != nil {
		return nil, err
	}
	nodes, err := s.Nodes(ctx, ids)
	if err != nil {
		return nil, err
	}
	f := &dag.Flow{ID: flowID}
	for _, n := range nodes {
		if n != nil {
			f.Nodes = append(f.Nodes, n)
		}
	}
	f.Nodes = topoNodes(f.Nodes)
	return f, nil
}

func topoNodes(nodes []*dag.Node) []*dag.Node {
	specs := make([]dag.Spec, len(nodes))
	for i, n := range nodes {
		specs[i] = dag.Spec{ID: n.ID, Parents: n.Parents}
	}
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.ID] = i
	}
	indegree := make([]int, len(nodes))
	for i, n := range nodes {
		for _, p := range n.Parents {
			if _, ok := index[p]; ok {
				indegree[i]++
			}
		}
	}
	var order []int
	for i := range nodes {
		if indegree[i] == 0 {
			order = append(order, i)
		}
	}
	for k := 0; k < len(order); k++ {
		for _, c := range nodes[order[k]].Children {
			if j, ok := index[c]; ok {
				if indegree[j]--; indegree[j] == 0 {
					order = append(order, j)
				}
			}
		}
	}
	out := make([]*dag.Node, 0, len(nodes))
	seen := make([]bool, len(nodes))
	for _, i := range order {
		if !seen[i] {
			seen[i] = true
			out = append(out, nodes[i])
		}
	}
	for i, n := range nodes { // expansion joins are not in Parents; keep the rest stable
		if !seen[i] {
			out = append(out, n)
		}
	}
	return out
}

// FlowStatus reads a flow's progress without reading its nodes.
func (s *Store) FlowStatus(ctx context.Context, flowID string) (dag.FlowStatus, error) {
	h, err := s.rdb.HGetAll(ctx, s.k.flowMeta(flowID)).Result()
	if err != nil {
		return dag.FlowStatus{}, fmt.Errorf("dag: redis: %w", err)
	}
	if len(h) == 0 {
		st, err := s.rdb.HGet(ctx, s.k.node(flowID), "st").Result()
		if errors.Is(err, redis.Nil) {
			return dag.FlowStatus{}, &dag.NotFoundError{What: "flow", ID: flowID}
		}
		if err != nil {
			return dag.FlowStatus{}, fmt.Errorf("dag: redis: %w", err)
		}
		done := dag.State(st).Terminal()
		left := 1
		if done {
			left = 0
		}
		return dag.FlowStatus{Nodes: 1, Unfinished: left, Done: done}, nil
	}
	n, _ := strconv.Atoi(h["n"])
	left, _ := strconv.Atoi(h["left"])
	return dag.FlowStatus{Nodes: n, Unfinished: left, Done: left == 0}, nil
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
		if c.State == dag.Ready && c.N > 0 && (queue == "" || c.Queue == queue) {
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

// DueAt is when delayed node id becomes ready (its score in the delayed
// set); ok is false when it is not delayed.
func (s *Store) DueAt(ctx context.Context, id string) (due time.Time, ok bool, err error) {
	ms, err := s.rdb.ZScore(ctx, s.k.delayed(), id).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("dag: redis: %w", err)
	}
	return time.UnixMilli(int64(ms)), true, nil
}
