package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/redis/go-redis/v9"
)

const sep = "\x1f"

// fanIn marks, in a node's list of children, a child of more than one
// parent: the scripts count a parent's success for it without reading it.
const fanIn = "\x1e"

// Store keeps the flows of one namespace in Redis.
type Store struct {
	rdb     redis.UniversalClient
	ns      string
	k       keys
	scripts *scripts
	fns     atomic.Int32 // fnTry or fnOff, see run
}

// New returns the store of namespace ns (letters, digits, '_', '-',
// '.', ':') on rdb. It does not touch Redis.
func New(rdb redis.UniversalClient, ns string) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("dag: nil Redis client")
	}
	if err := dag.CheckName(ns); err != nil {
		return nil, fmt.Errorf("dag: namespace %q %s", ns, err.Error())
	}
	sc, err := loadScripts()
	if err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, ns: ns, k: newKeys(ns), scripts: sc}, nil
}

// Namespace is the store's namespace.
func (s *Store) Namespace() string { return s.ns }

// Redis is the client the store uses.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// ms is a time as the scripts take it: the zero time is "", which makes
// them read Redis's own clock (see Time).
func ms(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// Time is Redis's clock. Every method that takes a time decides by it when
// given the zero time, so that runners on machines whose clocks disagree
// share one clock for leases, due times and retention.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("dag: redis: %w", err)
	}
	return t, nil
}

// clock is now, or Redis's time when now is zero.
func (s *Store) clock(ctx context.Context, now time.Time) (time.Time, error) {
	if !now.IsZero() {
		return now, nil
	}
	return s.Time(ctx)
}

func fromMS(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return time.Time{}
		}
		n = int64(f)
	}
	return time.UnixMilli(n)
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}
