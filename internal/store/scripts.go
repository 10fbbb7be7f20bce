package store

import (
	"context"
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/trellisflow/trellis/dag"

	"github.com/redis/go-redis/v9"
)

//go:embed scripts/*.lua scripts/lib/*.lua
var scriptFS embed.FS

// libText is the library every script starts with: the parts in
// scripts/lib, in the order of their names.
func libText() ([]byte, error) {
	parts, err := fs.Glob(scriptFS, "scripts/lib/*.lua")
	if err != nil {
		return nil, err
	}
	sort.Strings(parts)
	var lib []byte
	for _, p := range parts {
		b, err := scriptFS.ReadFile(p)
		if err != nil {
			return nil, err
		}
		lib = append(append(lib, b...), '\n')
	}
	return lib, nil
}

// scripts are the store's Lua programs. Each is lib/, then
// begin(KEYS, ARGV), then the script's own body. On a Redis with Functions
// (7.0 and later) they run as one library, loaded once per Redis, so that
// the library's functions are made once and not on every call; elsewhere (the
// embedded miniredis, an older Redis, an ACL without FUNCTION) each runs by
// EVALSHA with the library in front.
type scripts struct {
	enqueue, sync, heartbeat, cancel, retry, expand, remove, page, prune, reindex *script
	library                                                                       string // the Functions library: its name is trellis_<hash>
	name                                                                          string // that name
}

type script struct {
	eval *redis.Script
	fn   string // its function in the library
}

func loadScripts() (*scripts, error) {
	lib, err := libText()
	if err != nil {
		return nil, err
	}
	names := []string{"enqueue", "sync", "heartbeat", "cancel", "retry", "expand", "remove", "page", "prune", "reindex"}
	bodies := make(map[string]string, len(names))
	sum := sha1.New()
	sum.Write(lib)
	for _, name := range names {
		body, err := scriptFS.ReadFile("scripts/" + name + ".lua")
		if err != nil {
			return nil, fmt.Errorf("dag: script %s: %w", name, err)
		}
		bodies[name] = string(body)
		sum.Write(body)
	}
	tag := "trellis_" + hex.EncodeToString(sum.Sum(nil))[:16]
	var s scripts
	var libText strings.Builder
	libText.WriteString("#!lua name=" + tag + "\n" + string(lib) + "\n")
	for name, dst := range map[string]**script{
		"enqueue": &s.enqueue, "sync": &s.sync, "heartbeat": &s.heartbeat,
		"cancel": &s.cancel, "retry": &s.retry, "expand": &s.expand, "remove": &s.remove, "page": &s.page, "prune": &s.prune, "reindex": &s.reindex,
	} {
		fn := tag + "_" + name
		*dst = &script{eval: redis.NewScript(string(lib) + "\nbegin(KEYS, ARGV)\n" + bodies[name]), fn: fn}
		flags := ""
		switch {
		case freeing[name]:
			flags = ", flags = {'allow-oom'}"
		case name == "page":
			flags = ", flags = {'no-writes'}"
		}
		libText.WriteString("redis.register_function{function_name = '" + fn + "'" + flags + ", callback = function(KEYS, ARGV)\nbegin(KEYS, ARGV)\n" + bodies[name] + "\nend}\n")
	}
	s.library, s.name = libText.String(), tag
	return &s, nil
}

// freeing are the scripts that run even when Redis is at maxmemory
// (Functions' allow-oom): each frees memory or finishes work, and grows
// memory by a bounded amount per call (timelines, events), so a full Redis
// can still drain its backlog, cancel, remove and trim. Enqueue and expand
// add nodes and are refused there, before they write anything.
var freeing = map[string]bool{"sync": true, "heartbeat": true, "cancel": true, "retry": true, "remove": true, "prune": true}

// Whether the store calls the library by FCALL.
const (
	fnTry int32 = iota // not known yet, or loaded: FCALL
	fnOff              // this Redis has no Functions for us: EVALSHA
)

// callHead is the head of a script call that run puts before the script's
// arguments: FCALL, the function, the key count and the key.
const callHead = 4

// callArgs returns an empty argument list for run with room for n
// arguments, after a head that run fills in: the arguments of a big call
// (a 100,000-node enqueue has a million) are then not copied again.
func callArgs(n int) []any { return make([]any, callHead, callHead+n) }

// run calls sc with the namespace prefix as its one key; args comes from
// callArgs.
func (s *Store) run(ctx context.Context, sc *script, args []any) ([]any, error) {
	if s.fns.Load() == fnTry {
		res, err := s.fcall(ctx, sc, args)
		switch {
		case errors.Is(err, errNotLoadable):
			// this call goes by EVALSHA; the next tries FCALL again
		case noFunctions(err):
			s.fns.Store(fnOff)
		default:
			return res, wrapRedis(err)
		}
	}
	res, err := sc.eval.Run(ctx, s.rdb, []string{s.k.prefix}, args[callHead:]...).Slice()
	return res, wrapRedis(err)
}

// errNotLoadable says the library could not be loaded just now, for a
// reason other than a Redis without Functions.
var errNotLoadable = errors.New("dag: cannot load the scripts library")

// fcall calls sc's function with args (from callArgs), loading the library
// first when the Redis does not have it (a new Redis, or one restarted
// without its data).
func (s *Store) fcall(ctx context.Context, sc *script, args []any) ([]any, error) {
	args[0], args[1], args[2], args[3] = "fcall", sc.fn, "1", s.k.prefix
	res, err := s.rdb.Do(ctx, args...).Slice()
	if !notLoaded(err) {
		return res, err
	}
	if err := s.loadLibrary(ctx); err != nil {
		if noFunctions(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errNotLoadable, err)
	}
	return s.rdb.Do(ctx, args...).Slice()
}

func wrapRedis(err error) error {
	switch {
	case err == nil:
		return nil
	case isOOM(err):
		return fmt.Errorf("dag: redis: %w (%w)", dag.ErrRedisFull, err)
	}
	return fmt.Errorf("dag: redis: %w", err)
}

// isOOM reports Redis's refusal of a command that could grow memory past
// maxmemory.
func isOOM(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(err.Error(), "OOM command not allowed")
}

// loadLibrary loads the library on the Redis (on every primary of a
// Cluster). Loading it again is harmless: the name carries its hash.
func (s *Store) loadLibrary(ctx context.Context) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.FunctionLoadReplace(ctx, s.scripts.library).Err()
		})
	}
	return s.rdb.FunctionLoadReplace(ctx, s.scripts.library).Err()
}

// Library is the name of the Functions library this store calls
// ("trellis_" and a hash of its scripts): one per Trellis version.
func (s *Store) Library() string { return s.scripts.name }

// libraryPrefix starts the name of every Trellis Functions library.
const libraryPrefix = "trellis_"

// Libraries lists the Trellis Functions libraries loaded on the Redis (on
// a Cluster, on any primary); none on a Redis without Functions.
func (s *Store) Libraries(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	list := func(ctx context.Context, c redis.Cmdable) error {
		libs, err := c.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: libraryPrefix + "*"}).Result()
		if err != nil {
			return err
		}
		for _, l := range libs {
			if strings.HasPrefix(l.Name, libraryPrefix) {
				seen[l.Name] = true
			}
		}
		return nil
	}
	var err error
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return list(ctx, m)
		})
	} else {
		err = list(ctx, s.rdb)
	}
	if noFunctions(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// DropLibrary deletes the Trellis Functions library name (on every primary
// of a Cluster); one that is not there is no error. A client still calling
// it loads it again on its next call, so this is safe while that version
// runs, only wasteful.
func (s *Store) DropLibrary(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, libraryPrefix) || name == s.scripts.name {
		return fmt.Errorf("dag: %q is not another Trellis library", name)
	}
	drop := func(ctx context.Context, c redis.Cmdable) error {
		err := c.FunctionDelete(ctx, name).Err()
		if err != nil && strings.Contains(strings.ToLower(err.Error()), "library not found") {
			return nil
		}
		return err
	}
	var err error
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return drop(ctx, m) })
	} else {
		err = drop(ctx, s.rdb)
	}
	if err != nil {
		return fmt.Errorf("dag: redis: %w", err)
	}
	return nil
}

// notLoaded reports an FCALL of a function the Redis does not have.
func notLoaded(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(err.Error(), "Function not found")
}

// noFunctions reports a Redis without Functions, or a user not allowed
// them: unknown command (miniredis, Redis before 7) or NOPERM.
func noFunctions(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "unknown command") || strings.Contains(msg, "unknown subcommand") || strings.HasPrefix(msg, "noperm")
}
