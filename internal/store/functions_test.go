package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/internal/testredis"
)

// roundTrip enqueues one node and runs it to succeeded through s.
func roundTrip(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	id := fmt.Sprintf("fn-%06x", rand.IntN(1<<24))
	_, err := s.Enqueue(ctx, time.Now(), FlowWrite{FlowID: id, Single: true, Specs: []dag.Spec{{ID: id, Type: "T", Queue: "q", Payload: json.RawMessage(`{}`), MaxAttempts: 1}}})
	require.NoError(t, err)
	req := SyncRequest{Worker: "w", Lease: time.Minute, StallLimit: 1, Queues: []string{"q"}, Types: []string{"T"}, Want: 1, RetainCount: -1}
	res, err := s.Sync(ctx, time.Now(), req)
	require.NoError(t, err)
	require.Len(t, res.Claimed, 1)
	req.Want, req.Outcomes = 0, []Outcome{{ID: id, Token: res.Claimed[0].Token, Kind: OutcomeOK, Result: []byte("1")}}
	res, err = s.Sync(ctx, time.Now(), req)
	require.NoError(t, err)
	require.Equal(t, []bool{true}, res.Applied)
	n, err := s.Node(ctx, id)
	require.NoError(t, err)
	require.Equal(t, dag.Succeeded, n.State)
}

func testStore(t *testing.T, rdb redis.UniversalClient) *Store {
	s, err := New(rdb, fmt.Sprintf("fntest-%06x", rand.IntN(1<<24)))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = s.Clear(context.Background()) })
	return s
}

func libraryName(s *Store) string {
	first, _, _ := strings.Cut(s.scripts.library, "\n")
	return strings.TrimPrefix(first, "#!lua name=")
}

// On a Redis with Functions the scripts run as one library, loaded on first
// use and again whenever the Redis lost it (a restart without persistence).
func TestScriptsRunAsFunctions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := testredis.Client(t)
	s := testStore(t, rdb)
	roundTrip(t, s)
	name := libraryName(s)
	libs, err := rdb.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: name}).Result()
	require.NoError(t, err)
	require.Len(t, libs, 1, "the library is loaded")
	require.Len(t, libs[0].Functions, 10)
	require.Equal(t, fnTry, s.fns.Load(), "and called")

	before := fcalls(t, rdb)
	require.NoError(t, rdb.FunctionDelete(ctx, name).Err(), "as after a restart")
	roundTrip(t, s)
	libs, err = rdb.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: name}).Result()
	require.NoError(t, err)
	require.Len(t, libs, 1, "loaded again")
	require.Greater(t, fcalls(t, rdb), before)
	require.Equal(t, fnTry, s.fns.Load())
}

func fcalls(t *testing.T, rdb redis.UniversalClient) int64 {
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_fcall:calls="); ok {
			var n int64
			_, _ = fmt.Sscan(strings.SplitN(rest, ",", 2)[0], &n)
			return n
		}
	}
	return 0
}

// Without Functions (the in-process Redis, a user the ACL denies them) the
// same scripts run by EVALSHA.
func TestScriptsFallBackToEval(t *testing.T) {
	t.Parallel()
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		s := testStore(t, testredis.Embedded(t))
		roundTrip(t, s)
		require.Equal(t, fnOff, s.fns.Load())
	})
	t.Run("acl", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		admin := testredis.Client(t)
		user := fmt.Sprintf("trellis-nofn-%06x", rand.IntN(1<<24))
		require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-function", "-fcall", "-fcall_ro").Err())
		t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
		opt, err := redis.ParseURL(testredis.URL())
		require.NoError(t, err)
		opt.Username, opt.Password = user, "pw"
		rdb := redis.NewClient(opt)
		t.Cleanup(func() { _ = rdb.Close() })
		s := testStore(t, rdb)
		roundTrip(t, s)
		require.Equal(t, fnOff, s.fns.Load())
	})
}

// Nodes an older Trellis left in a queue's single ready set (before lanes)
// are moved into their lanes by the next maintenance, and claimed: a
// rolling upgrade loses none.
func TestOldReadySetIsMigrated(t *testing.T) {
	testredis.Backends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := testStore(t, rdb)
		_, err := s.Enqueue(ctx, time.Now(), FlowWrite{FlowID: "old", Single: true, Specs: []dag.Spec{{ID: "old", Type: "T", Queue: "q", Payload: json.RawMessage(`{}`), MaxAttempts: 1}}})
		require.NoError(t, err)
		// as an older Trellis keeps it
		z, err := s.rdb.ZPopMin(ctx, s.k.ready("q", "T")).Result()
		require.NoError(t, err)
		require.Len(t, z, 1)
		require.NoError(t, s.rdb.ZAdd(ctx, s.k.oldReady("q"), z[0]).Err())
		req := SyncRequest{Worker: "w", Lease: time.Minute, StallLimit: 1, Queues: []string{"q"}, Types: []string{"T"}, Want: 1, RetainCount: -1}
		res, err := s.Sync(ctx, time.Now(), req)
		require.NoError(t, err)
		require.Empty(t, res.Claimed, "not migrated without maintenance")
		req.Maintain = true
		res, err = s.Sync(ctx, time.Now(), req)
		require.NoError(t, err)
		require.Len(t, res.Claimed, 1)
		require.Equal(t, "old", res.Claimed[0].ID)
		require.Zero(t, s.rdb.Exists(ctx, s.k.oldReady("q")).Val())
	})
}

// DropLibrary deletes only other Trellis versions' libraries, and one
// already gone is no error.
func TestDropLibraryRefusesItsOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testStore(t, testredis.Client(t))
	require.ErrorContains(t, s.DropLibrary(ctx, s.Library()), "is not another Trellis library")
	require.ErrorContains(t, s.DropLibrary(ctx, "other_app"), "is not another Trellis library")
	require.NoError(t, s.DropLibrary(ctx, "trellis_ffffffffffffffff"))
	require.Equal(t, libraryName(s), s.Library())
}
