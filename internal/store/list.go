package store

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// A listing reads jobs from sorted sets the state machine keeps, a page at
// a time, in segments of one order each:
//
//	active    soonest lease end first       (the lease set)
//	ready     in the order they will start  (the lanes' ready sets)
//	delayed   soonest due first             (the delayed set)
//	recent    blocked and finished jobs, latest change first
//	          (one index per state and lane, see INDEXED in the scripts)
//
// A cursor is where a page stopped: its segment and its last entry's score
// and member. The next page starts after it, wherever that entry is now.
var segments = []segment{
	{states: []dag.State{dag.Active}, shared: true},
	{states: []dag.State{dag.Ready}},
	{states: []dag.State{dag.Delayed}, shared: true},
	{states: []dag.State{dag.Blocked, dag.Failed, dag.Succeeded, dag.Skipped, dag.Cancelled}, latest: true},
}

type segment struct {
	states []dag.State
	latest bool // highest score first
	shared bool // one set for every lane
}

// ListQuery selects the jobs a listing pages through.
type ListQuery struct {
	States []dag.State // any of these; none: every state
	Queue  string      // "": any
	Type   string      // "": any
	After  string      // a cursor from an earlier page (ListEntry.Cursor, ListPage.Next); "": from the start
	Limit  int         // entries per page, 1 to MaxListLimit
}

// MaxListLimit bounds a page.
const MaxListLimit = 1000

// ListEntry is a listed job and the cursor of the jobs after it.
type ListEntry struct {
	ID     string
	Cursor string
	State  dag.State // the state whose set listed it
	set    string    // that set's key after the prefix
}

// ListPage is one page of a listing.
type ListPage struct {
	Entries []ListEntry
	Next    string // the cursor of the next page; "" after the last
	// Total is how many jobs the query selects, from the per-state counters.
	Total int64
	// Mixed says entries may be of other queues or types than the query's:
	// active and delayed jobs are in one set each, so a query with a queue
	// or type has to check them (the Inspector does).
	Mixed bool
	// Complete is false when the counters know of more jobs than the sets
	// hold: jobs written by a Trellis without the state indexes. Until
	// Reindex puts them in or retention removes them, only a scan
	// (ScanNodeIDs) finds them all.
	Complete bool
}

// List returns a page of the jobs q selects (see segments for the order).
func (s *Store) List(ctx context.Context, q ListQuery) (ListPage, error) {
	if q.Limit < 1 || q.Limit > MaxListLimit {
		return ListPage{}, fmt.Errorf("dag: list: limit %d is not between 1 and %d", q.Limit, MaxListLimit)
	}
	for _, st := range q.States {
		if !slices.Contains(dag.States, st) {
			return ListPage{}, fmt.Errorf("dag: list: %q is not one of %v", st, dag.States)
		}
	}
	seg, score, member, err := parseCursor(q.After)
	if err != nil {
		return ListPage{}, err
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		return ListPage{}, err
	}
	page := ListPage{Complete: true}
	keys := make([][]string, len(segments))
	counted := make([]int64, len(segments))
	for k, sg := range segments {
		keys[k], counted[k] = s.segmentKeys(sg, q, counts)
		page.Total += counted[k]
	}
	want := q.Limit + 1 // one more tells whether a next page exists
	var got []ListEntry
	for ; seg < len(segments) && len(got) < want; seg, score, member = seg+1, "", "" {
		sg := segments[seg]
		if len(keys[seg]) == 0 {
			continue
		}
		entries, held, err := s.page(ctx, keys[seg], sg.latest, score, member, want-len(got))
		if err != nil {
			return ListPage{}, err
		}
		need := counted[seg]
		if sg.shared { // complete when the set holds the state's jobs of every lane
			page.Mixed = page.Mixed || q.Queue != "" || q.Type != ""
			need = 0
			for _, c := range counts {
				if c.State == sg.states[0] {
					need += c.N
				}
			}
		}
		if held < need {
			page.Complete = false
		}
		for _, e := range entries {
			st := sg.states[0]
			if rest, ok := strings.CutPrefix(e.key, "ix:"); ok {
				st = dag.State(rest[:strings.IndexByte(rest, ':')])
			}
			got = append(got, ListEntry{ID: e.member, Cursor: makeCursor(seg, e.score, e.member), State: st, set: e.key})
		}
	}
	if len(got) == want {
		got = got[:q.Limit]
		page.Next = got[len(got)-1].Cursor
	}
	page.Entries = got
	return page, nil
}

// segmentKeys returns the sets of a segment's states that q selects, and
// how many jobs the counters say they hold (of q's queue and type).
func (s *Store) segmentKeys(sg segment, q ListQuery, counts []dag.Count) (keys []string, counted int64) {
	var selected []dag.State
	for _, st := range sg.states {
		if len(q.States) == 0 || slices.Contains(q.States, st) {
			selected = append(selected, st)
		}
	}
	if len(selected) == 0 {
		return nil, 0
	}
	lanes := false
	for _, c := range counts {
		if c.N <= 0 || !slices.Contains(selected, c.State) || q.Queue != "" && c.Queue != q.Queue || q.Type != "" && c.Type != q.Type {
			continue
		}
		counted += c.N
		lanes = true
		switch c.State {
		case dag.Ready:
			keys = append(keys, s.k.ready(c.Queue, c.Type))
		case dag.Active, dag.Delayed: // shared sets, below
		default:
			keys = append(keys, s.k.index(c.State, c.Queue, c.Type))
		}
	}
	switch {
	case !lanes:
		return nil, 0
	case selected[0] == dag.Active:
		keys = []string{s.k.active()}
	case selected[0] == dag.Delayed:
		keys = []string{s.k.delayed()}
	}
	return keys, counted
}

type scored struct {
	member, score, key string
	at                 float64 // score, parsed
}

// page merges the sets keys after (score, member) into up to limit
// entries (highest score first when rev), and says how many the sets hold.
func (s *Store) page(ctx context.Context, keys []string, rev bool, score, member string, limit int) ([]scored, int64, error) {
	args := callArgs(5 + len(keys))
	order := "0"
	if rev {
		order = "1"
	}
	args = append(args, "0", limit, order, score, member)
	suffixes := make([]string, len(keys))
	for i, k := range keys {
		suffixes[i] = strings.TrimPrefix(k, s.k.prefix)
		args = append(args, suffixes[i])
	}
	res, err := s.run(ctx, s.scripts.page, args)
	if err != nil {
		return nil, 0, err
	}
	var all []scored
	var held int64
	for i, set := 0, 0; i+1 < len(res) && set < len(suffixes); set++ {
		size, _ := res[i].(int64)
		n, _ := res[i+1].(int64)
		held += size
		i += 2
		for j := int64(0); j < n && i+1 < len(res); j, i = j+1, i+2 {
			sc := str(res[i+1])
			at, _ := strconv.ParseFloat(sc, 64)
			all = append(all, scored{member: str(res[i]), score: sc, key: suffixes[set], at: at})
		}
	}
	slices.SortFunc(all, func(a, b scored) int {
		c := cmp.Compare(a.at, b.at)
		if c == 0 {
			c = strings.Compare(a.member, b.member)
		}
		if rev {
			return -c
		}
		return c
	})
	if len(all) > limit {
		all = all[:limit]
	}
	return all, held, nil
}

// Prune takes listed entries out of their state's index when their job is
// gone or in another state (a Trellis without the indexes moved it), and
// returns how many it removed. Entries of the engine's own sets are left.
func (s *Store) Prune(ctx context.Context, entries []ListEntry) (int, error) {
	args := callArgs(1 + 2*len(entries))
	args = append(args, "0")
	for _, e := range entries {
		if strings.HasPrefix(e.set, "ix:") {
			args = append(args, e.set, e.ID)
		}
	}
	if len(args) == callHead+1 {
		return 0, nil
	}
	return s.runCount(ctx, s.scripts.prune, args)
}

// runCount runs a script that returns {a count}.
func (s *Store) runCount(ctx context.Context, sc *script, args []any) (int, error) {
	res, err := s.run(ctx, sc, args)
	if err != nil || len(res) == 0 {
		return 0, err
	}
	n, _ := res[0].(int64)
	return int(n), nil
}

// Reindex puts the nodes ids that are missing from their state's index
// into it (nodes a Trellis without the indexes wrote or moved), at the time
// of their last transition, and returns how many it added.
// A node with no timeline goes in at now.
func (s *Store) Reindex(ctx context.Context, now time.Time, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := callArgs(1 + len(ids))
	args = append(args, ms(now))
	for _, id := range ids {
		args = append(args, id)
	}
	return s.runCount(ctx, s.scripts.reindex, args)
}

// DropOldFailed deletes the failed set of a Trellis without the state
// indexes, which nothing reads once no such runner is left.
func (s *Store) DropOldFailed(ctx context.Context) error {
	if err := s.rdb.Del(ctx, s.k.oldFailed()).Err(); err != nil {
		return fmt.Errorf("dag: redis: %w", err)
	}
	return nil
}

// A cursor is "segment \x1f score \x1f member", base64url: opaque to
// callers, and checked when it comes back.
func makeCursor(seg int, score, member string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(seg) + "\x1f" + score + "\x1f" + member))
}

// ErrCursor is the error of a cursor no listing returned.
var ErrCursor = errors.New("not a cursor a listing returned")

func parseCursor(c string) (seg int, score, member string, err error) {
	if c == "" {
		return 0, "", "", nil
	}
	bad := fmt.Errorf("dag: list: %w: %q", ErrCursor, clipCursor(c))
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", "", bad
	}
	f := strings.SplitN(string(raw), "\x1f", 3)
	if len(f) != 3 {
		return 0, "", "", bad
	}
	seg, err = strconv.Atoi(f[0])
	if err != nil || seg < 0 || seg >= len(segments) {
		return 0, "", "", bad
	}
	if x, err := strconv.ParseFloat(f[1], 64); err != nil || math.IsNaN(x) || math.IsInf(x, 0) || f[2] == "" {
		return 0, "", "", bad
	}
	return seg, f[1], f[2], nil
}

func clipCursor(c string) string {
	if len(c) > 40 {
		return c[:40] + "…"
	}
	return c
}
