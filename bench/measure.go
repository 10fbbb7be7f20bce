package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// snapshot is what Redis and this process have spent so far. Deltas of two
// snapshots give a phase's cost.
type snapshot struct {
	cmds     int64         // sum of calls= over INFO commandstats, commands inside scripts included
	redisCPU float64       // seconds, used_cpu_sys + used_cpu_user
	mem      int64         // used_memory in bytes
	procCPU  time.Duration // this process's user + system time (getrusage)
	byCmd    map[string]int64
}

// info reads the INFO sections of rdb as key → value.
func info(ctx context.Context, rdb redis.UniversalClient, sections ...string) (map[string]string, error) {
	s, err := rdb.Info(ctx, sections...).Result()
	if err != nil {
		return nil, fmt.Errorf("INFO %s: %w", strings.Join(sections, " "), err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// commandCalls sums calls= over the cmdstat_* lines, and gives them per
// command.
func commandCalls(m map[string]string) (int64, map[string]int64) {
	var total int64
	by := map[string]int64{}
	for k, v := range m {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		if c, ok := statField(v, "calls"); ok {
			n, _ := strconv.ParseInt(c, 10, 64)
			total += n
			by[name] = n
		}
	}
	return total, by
}

// statField is field f of a cmdstat_* line of INFO commandstats
// ("calls=3,usec=12,…").
func statField(line, f string) (string, bool) {
	for _, kv := range strings.Split(line, ",") {
		if v, ok := strings.CutPrefix(kv, f+"="); ok {
			return v, true
		}
	}
	return "", false
}

func takeSnapshot(ctx context.Context, rdb redis.UniversalClient) (snapshot, error) {
	m, err := info(ctx, rdb, "commandstats", "cpu", "memory")
	if err != nil {
		return snapshot{}, err
	}
	sys, _ := strconv.ParseFloat(m["used_cpu_sys"], 64)
	usr, _ := strconv.ParseFloat(m["used_cpu_user"], 64)
	mem, _ := strconv.ParseInt(m["used_memory"], 10, 64)
	cmds, by := commandCalls(m)
	return snapshot{cmds: cmds, byCmd: by, redisCPU: sys + usr, mem: mem, procCPU: processCPU()}, nil
}

// settledMemory waits for lazy frees to finish, then reads used_memory.
func settledMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	for i := 0; i < 50; i++ {
		m, err := info(ctx, rdb, "memory")
		if err != nil {
			return 0, err
		}
		if m["lazyfree_pending_objects"] == "0" || m["lazyfree_pending_objects"] == "" {
			return strconv.ParseInt(m["used_memory"], 10, 64)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("lazy free still pending after 1s")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cost fills the per-node Redis and process figures of r from two snapshots.
func (r *Result) cost(a, b snapshot, nodes int) {
	n := float64(nodes)
	r.CmdsPerNode = perNode(a.cmds, b.cmds, nodes)
	if math.IsNaN(r.CmdsPerNode) {
		r.addNote("INFO commandstats went backwards (CONFIG RESETSTAT during the run?): commands not counted")
	}
	r.RedisCPUPerNodeUS = (b.redisCPU - a.redisCPU) * 1e6 / n
	if !math.IsNaN(r.CmdsPerNode) {
		r.PerCommand = map[string]float64{}
		for name, calls := range b.byCmd {
			if d := calls - a.byCmd[name]; d > 0 {
				r.PerCommand[name] = float64(d) / n
			}
		}
	}
	r.ProcCPUPerNodeUS = float64((b.procCPU - a.procCPU).Microseconds()) / n
}

// percentile of sorted durations (nearest rank), in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

func sortDurations(d []time.Duration) []time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

func median(v []float64) float64 {
	var xs []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// perNode is (b−a)/nodes, or NaN when a counter went backwards (reset).
func perNode(a, b int64, nodes int) float64 {
	if b < a {
		return math.NaN()
	}
	return float64(b-a) / float64(nodes)
}

func (r *Result) addNote(s string) {
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += s
}
