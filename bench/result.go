package main

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
)

// Result is one scenario run by one engine. Float figures that do not apply
// are NaN and left out of the JSON. Peers print the same JSON fields.
type Result struct {
	Engine      string `json:"engine"`   // trellis, bullmq, asynq, river, bun-rows, bun-bulk, redis-benchmark
	Scenario    string `json:"scenario"` // independent, fanout, chain, fullplansave, fullplansave-pg, fullplansave-one, large, ceiling
	Variant     string `json:"variant,omitempty"`
	Concurrency int    `json:"concurrency,omitempty"`
	Nodes       int    `json:"nodes"`
	Runs        int    `json:"runs,omitempty"` // how many runs the figures are medians of

	Seconds        float64 `json:"seconds"`         // first enqueue to last node finished
	NodesPerSec    float64 `json:"nodes_per_s"`     // Nodes / Seconds
	EnqueueSeconds float64 `json:"enqueue_seconds"` // first enqueue call to last one returning
	EnqueuePerSec  float64 `json:"enqueue_per_s"`   // Nodes / EnqueueSeconds
	RunPerSec      float64 `json:"run_per_s"`       // Nodes / (runners started → last node finished); independent and large

	EnqStartP50MS float64 `json:"enq_start_p50_ms"` // enqueue call → step start, over root nodes
	EnqStartP99MS float64 `json:"enq_start_p99_ms"`
	HopP50MS      float64 `json:"hop_p50_ms"` // last parent's step returned → child's step started
	HopP99MS      float64 `json:"hop_p99_ms"`
	MsPerHop      float64 `json:"ms_per_hop"`  // chain: (last node's start − first node's start) / (depth−1)
	FlowsPerSec   float64 `json:"flows_per_s"` // fanout, fullplansave: whole flows per second

	CmdsPerNode       float64 `json:"cmds_per_node"`         // Redis commands (incl. inside scripts) per node, whole run
	EnqCmdsPerNode    float64 `json:"enq_cmds_per_node"`     // … during the enqueue phase (independent, large)
	RunCmdsPerNode    float64 `json:"run_cmds_per_node"`     // … during the run phase (independent, large)
	RedisCPUPerNodeUS float64 `json:"redis_cpu_us_per_node"` // Redis used_cpu_sys+user per node
	ProcCPUPerNodeUS  float64 `json:"proc_cpu_us_per_node"`  // the benchmark process (enqueuer + runners) per node

	MemQueuedBPerNode  float64 `json:"mem_queued_b_per_node"`  // large: used_memory delta per node after enqueue
	MemDoneBPerNode    float64 `json:"mem_done_b_per_node"`    // large: per node once finished, kept by retention
	MemTrimmedBPerNode float64 `json:"mem_trimmed_b_per_node"` // large: per node left after retention trimmed the flow

	OpsPerSec float64 `json:"ops_per_s"` // redis-benchmark requests per second

	SaveP50MS float64 `json:"save_p50_ms"` // fullplansave-one: one save, CSV parsed to every row committed
	SaveP99MS float64 `json:"save_p99_ms"`

	// BatchCalls, BatchMean and BatchMax are the RunBatch calls of each
	// batch step, by message type, and their jobs per call: the batch
	// sizes the runner reached (from the first of the runs).
	BatchCalls map[string]float64 `json:"batch_calls,omitempty"`
	BatchMean  map[string]float64 `json:"batch_mean,omitempty"`
	BatchMax   map[string]float64 `json:"batch_max,omitempty"`

	// PerCommand is cmds/node by Redis command (from the first of the runs).
	PerCommand map[string]float64 `json:"per_command,omitempty"`

	Cores        int    `json:"cores,omitempty"`
	RedisVersion string `json:"redis_version,omitempty"`
	Version      string `json:"version,omitempty"` // the peer's version
	Note         string `json:"note,omitempty"`
}

// blankResult has every float figure NaN (not measured).
func blankResult() Result {
	var r Result
	v := reflect.ValueOf(&r).Elem()
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).Kind() == reflect.Float64 {
			v.Field(i).SetFloat(math.NaN())
		}
	}
	return r
}

// MarshalJSON leaves out NaN figures.
func (r Result) MarshalJSON() ([]byte, error) {
	out := map[string]any{}
	v, t := reflect.ValueOf(r), reflect.TypeOf(r)
	for i := 0; i < v.NumField(); i++ {
		name := t.Field(i).Tag.Get("json")
		omitEmpty := false
		if j := strings.IndexByte(name, ','); j >= 0 {
			omitEmpty = true
			name = name[:j]
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Map:
			if f.Len() == 0 {
				continue
			}
			m := map[string]float64{}
			for k, v := range f.Interface().(map[string]float64) {
				m[k] = math.Round(v*1000) / 1000
			}
			out[name] = m
		case reflect.Float64:
			x := f.Float()
			if math.IsNaN(x) || math.IsInf(x, 0) {
				continue
			}
			out[name] = math.Round(x*1000) / 1000
		default:
			if omitEmpty && f.IsZero() {
				continue
			}
			out[name] = f.Interface()
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads a result, figures that are absent staying NaN.
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	p := plain(blankResult())
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Result(p)
	return nil
}

// medianOf merges the runs of one scenario: every figure is the median of
// its runs.
func medianOf(runs []Result) Result {
	if len(runs) == 1 {
		r := runs[0]
		r.Runs = 1
		return r
	}
	out := runs[0]
	v := reflect.ValueOf(&out).Elem()
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).Kind() != reflect.Float64 {
			continue
		}
		xs := make([]float64, len(runs))
		for k := range runs {
			xs[k] = reflect.ValueOf(runs[k]).Field(i).Float()
		}
		v.Field(i).SetFloat(median(xs))
	}
	out.Runs = len(runs)
	return out
}
