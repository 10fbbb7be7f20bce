package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
)

func num(x float64, digits int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	if digits == 0 {
		return groupThousands(fmt.Sprintf("%.0f", x))
	}
	return fmt.Sprintf("%.*f", digits, x)
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func pair(a, b float64, digits int) string {
	if math.IsNaN(a) && math.IsNaN(b) {
		return "–"
	}
	return num(a, digits) + " / " + num(b, digits)
}

// ratio is Trellis ÷ peer as "how many times better": throughput over
// throughput, except chain, where it is the peer's ms per hop over Trellis's.
func ratio(t, p Result) float64 {
	if t.Scenario == "chain" {
		return p.MsPerHop / t.MsPerHop
	}
	return t.NodesPerSec / p.NodesPerSec
}

// riverHasNo says which scenarios River cannot run: dependencies between
// jobs (workflows) are in River Pro only.
func riverHasNo(scenario string) bool {
	return scenario == "fanout" || scenario == "chain" || scenario == "fullplansave"
}

func peerOf(results []Result, t Result, engine string) (Result, bool) {
	for _, r := range results {
		if r.Engine == engine && r.Scenario == t.Scenario && (t.Scenario != "independent" || r.Concurrency == t.Concurrency) {
			return r, true
		}
	}
	return Result{}, false
}

// printTable prints the results as a Markdown table, then the large
// scenario's memory figures, the ceiling and the machine.
func printTable(w io.Writer, b *bench, results []Result) {
	fmt.Fprintln(w, "| scenario | engine | C | nodes | nodes/s | enqueue/s | enq→start p50 / p99 ms | parent→child p50 / p99 ms | ms/hop | save p50 / p99 ms | jobs/batch mean / max | cmds/node | Redis µs/node | process µs/node | × BullMQ | × asynq | × River |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	var large, ceiling []Result
	versions := map[string]string{}
	for _, r := range results {
		if r.Version != "" {
			versions[r.Engine] = r.Version
		}
		if r.Scenario == "ceiling" {
			ceiling = append(ceiling, r)
			continue
		}
		if r.Scenario == "large" {
			large = append(large, r)
		}
		vs := [3]string{}
		if r.Engine == "trellis" {
			for i, peer := range []string{"bullmq", "asynq", "river"} {
				if p, ok := peerOf(results, r, peer); ok {
					vs[i] = num(ratio(r, p), 2) + "×"
				}
			}
			if b.opt.peers["river"] && riverHasNo(r.Scenario) {
				vs[2] = "—"
			}
		}
		name := r.Scenario
		if r.Variant != "" {
			name += " (" + r.Variant + ")"
		}
		mean, most := r.batchSizes()
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			name, r.Engine, r.Concurrency, num(float64(r.Nodes), 0), num(r.NodesPerSec, 0), num(r.EnqueuePerSec, 0),
			pair(r.EnqStartP50MS, r.EnqStartP99MS, 2), pair(r.HopP50MS, r.HopP99MS, 2), num(r.MsPerHop, 3),
			pair(r.SaveP50MS, r.SaveP99MS, 1), pair(mean, most, 1),
			num(r.CmdsPerNode, 1), num(r.RedisCPUPerNodeUS, 1), num(r.ProcCPUPerNodeUS, 1), vs[0], vs[1], vs[2])
	}
	for _, r := range results {
		if r.Engine == "trellis" && r.Scenario == "fullplansave-pg" {
			for _, f := range []struct {
				engine, name string
				target       float64
			}{{bunRows, "3×", 3}, {bunBulk, "⅓", 1.0 / 3}} {
				if p, ok := peerOf(results, r, f.engine); ok {
					x := r.NodesPerSec / p.NodesPerSec
					fmt.Fprintf(w, "\nfullplansave-pg: Trellis with the real workout steps ÷ the %s floor: %s (%s vs %s rows/s; target ≥ %s: %s)",
						f.engine, num(x, 3), num(r.NodesPerSec, 0), num(p.NodesPerSec, 0), f.name, met(x >= f.target))
				}
			}
		}
		if r.Scenario == "fullplansave-one" {
			fmt.Fprintf(w, "\nfullplansave-one: one full plan save, CSV to committed rows: p50 %s ms, p99 %s ms over %d saves (target ≤ 40 ms at the median: %s)",
				num(r.SaveP50MS, 1), num(r.SaveP99MS, 1), r.Nodes/planNodes, met(r.SaveP50MS <= 40))
		}
		if len(r.BatchMean) > 0 {
			types := make([]string, 0, len(r.BatchMean))
			for typ := range r.BatchMean {
				types = append(types, typ)
			}
			sort.Strings(types)
			var parts []string
			for _, typ := range types {
				parts = append(parts, fmt.Sprintf("%s %s / %s in %s", typ, num(r.BatchMean[typ], 1), num(r.BatchMax[typ], 0), num(r.BatchCalls[typ], 0)))
			}
			fmt.Fprintf(w, "\n%s %s: jobs per batch, mean / max in calls: %s; parent→child p50 / p99 %s ms", r.Engine, r.Scenario, strings.Join(parts, ", "), pair(r.HopP50MS, r.HopP99MS, 2))
		}
		if r.Note != "" {
			fmt.Fprintf(w, "\n%s %s: %s", r.Engine, r.Scenario, r.Note)
		}
	}
	fmt.Fprintln(w)
	for _, r := range large {
		fmt.Fprintf(w, "\nlarge (%s, %s nodes): enqueue %.2f s (%s nodes/s), run %s nodes/s; Redis memory per node: %s B queued, %s B finished and retained, %s B after retention trimmed the flow; commands per node: %s enqueue + %s run\n",
			r.Variant, num(float64(r.Nodes), 0), r.EnqueueSeconds, num(r.EnqueuePerSec, 0), num(r.RunPerSec, 0),
			num(r.MemQueuedBPerNode, 0), num(r.MemDoneBPerNode, 0), num(r.MemTrimmedBPerNode, 0),
			num(r.EnqCmdsPerNode, 2), num(r.RunCmdsPerNode, 2))
	}
	if len(ceiling) > 0 {
		fmt.Fprintln(w, "\nfloor and ceiling (on the same Redis):")
		for _, r := range ceiling {
			if r.Engine == floorEngine {
				fmt.Fprintf(w, "- %s: %s jobs/s end to end (enqueue %s/s), %s commands, %s µs of Redis CPU and %s µs of this process's CPU per job\n",
					r.Variant, num(r.NodesPerSec, 0), num(r.EnqueuePerSec, 0), num(r.CmdsPerNode, 1), num(r.RedisCPUPerNodeUS, 1), num(r.ProcCPUPerNodeUS, 1))
				for _, t := range results {
					if t.Engine == "trellis" && t.Scenario == "independent" && r.RedisCPUPerNodeUS > 0 {
						fmt.Fprintf(w, "  - trellis %s (%s) uses %s× its Redis CPU per job\n", t.Scenario, t.Variant, num(t.RedisCPUPerNodeUS/r.RedisCPUPerNodeUS, 1))
					}
				}
				continue
			}
			fmt.Fprintf(w, "- %s: %s ops/s, %s µs of Redis CPU per call\n", r.Variant, num(r.OpsPerSec, 0), num(r.RedisCPUPerNodeUS, 2))
		}
	}
	if b.opt.commands {
		fmt.Fprintln(w, "\nRedis commands per node, by command (commands inside scripts included):")
		for _, r := range results {
			if len(r.PerCommand) == 0 {
				continue
			}
			names := make([]string, 0, len(r.PerCommand))
			for k := range r.PerCommand {
				names = append(names, k)
			}
			sort.Slice(names, func(i, j int) bool { return r.PerCommand[names[i]] > r.PerCommand[names[j]] })
			var parts []string
			for _, k := range names {
				if r.PerCommand[k] >= 0.01 {
					parts = append(parts, fmt.Sprintf("%s %.2f", k, r.PerCommand[k]))
				}
			}
			fmt.Fprintf(w, "- %s %s (%s): %s\n", r.Engine, r.Scenario, r.Variant, strings.Join(parts, ", "))
		}
	}
	runs := 1
	if len(results) > 0 {
		runs = max(results[0].Runs, 1)
	}
	fmt.Fprintf(w, "\nmachine: %d cores, Redis %s, %s", b.cores, b.redisVersion, runtime.Version())
	for _, e := range []string{"node", "bullmq", "asynq", "river"} {
		if v, ok := versions[e]; ok {
			fmt.Fprintf(w, ", %s %s", e, v)
		}
	}
	if b.loadStart != "" {
		fmt.Fprintf(w, "; load average %s at the start, %s at the end", b.loadStart, loadAverage())
	}
	fmt.Fprintf(w, "; figures are medians of %d run(s)\n", runs)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// batchSizes are the jobs per RunBatch call over every batch step of r:
// the mean and the largest; NaN without batch steps.
func (r Result) batchSizes() (mean, most float64) {
	var calls, jobs float64
	most = math.NaN()
	for typ, c := range r.BatchCalls {
		calls += c
		jobs += c * r.BatchMean[typ]
		if math.IsNaN(most) || r.BatchMax[typ] > most {
			most = r.BatchMax[typ]
		}
	}
	if calls == 0 {
		return math.NaN(), math.NaN()
	}
	return jobs / calls, most
}
