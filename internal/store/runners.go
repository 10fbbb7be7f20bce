package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/redis/go-redis/v9"
)

// Runners lists runners seen since the given time, with their records.
func (s *Store) Runners(ctx context.Context, since time.Time) ([]dag.Heartbeat, error) {
	min := "-inf"
	if !since.IsZero() {
		min = ms(since)
	}
	res, err := s.rdb.ZRangeByScoreWithScores(ctx, s.k.runners(), &redis.ZRangeBy{Min: min, Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]dag.Heartbeat, len(res))
	if len(res) == 0 {
		return out, nil
	}
	ids := make([]string, len(res))
	for i, z := range res {
		ids[i] = str(z.Member)
		out[i] = dag.Heartbeat{ID: ids[i], LastSeen: time.UnixMilli(int64(z.Score))}
	}
	infos, err := s.rdb.HMGet(ctx, s.k.runnerInfo(), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	for i, v := range infos {
		if raw, ok := v.(string); ok {
			var ri dag.RunnerInfo
			if json.Unmarshal([]byte(raw), &ri) == nil {
				out[i].Info = &ri
			}
		}
	}
	return out, nil
}
