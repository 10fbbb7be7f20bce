package dag

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

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
