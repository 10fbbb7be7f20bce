package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/testredis"
	"github.com/trellisflow/trellis/monitor"
	"github.com/trellisflow/trellis/runner"
)

// BenchmarkJobListings times the dashboard's listings (GET /api/jobs and
// /api/failures, 50 jobs a page) over TRELLIS_BENCH_JOBS retained finished
// jobs (default 1,000,000), 1,000 failed and 1,000 blocked ones, on the
// Redis of the tests. Filling the namespace takes a minute or two and
// about 1 GiB of Redis memory:
//
//	go test ./monitor -run '^$' -bench JobListings -benchtime 200x
func BenchmarkJobListings(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("TRELLIS_BENCH_JOBS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10_000 {
			b.Fatalf("TRELLIS_BENCH_JOBS=%q: want a number of at least 10000", v)
		}
	}
	rdb := testredis.Client(b)
	ns := fmt.Sprintf("monbench-%06x", time.Now().UnixNano()&0xffffff)
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: ns, Development: true, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = client.Clear(context.Background()) })
	fill(b, client, n)
	if mem, err := rdb.Info(context.Background(), "memory").Result(); err == nil {
		for _, l := range strings.Split(mem, "\r\n") {
			if strings.HasPrefix(l, "used_memory_human:") {
				b.Logf("Redis %s", l)
			}
		}
	}
	reg := flow.NewRegistry()
	flow.RegisterType[Echo](reg)
	h, err := monitor.New(client, monitor.Config{Registry: reg, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	serve := func(path string) *httptest.ResponseRecorder {
		w, r := httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "127.0.0.1:40000" // no auth: loopback only
		h.ServeHTTP(w, r)
		return w
	}
	get := func(tb testing.TB, path string) monitor.JobList {
		w := serve(path)
		if w.Code != http.StatusOK {
			tb.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		var l monitor.JobList
		_ = json.Unmarshal(w.Body.Bytes(), &l)
		return l
	}
	// a cursor 10,000 jobs deep into the finished ones
	deep := ""
	for range 20 {
		deep = get(b, "/api/jobs?state=succeeded&limit=500&cursor="+deep).Next
	}
	for _, c := range []struct{ name, path string }{
		{"all", "/api/jobs"},
		{"succeeded", "/api/jobs?state=succeeded"},
		{"succeeded-type", "/api/jobs?state=succeeded&type=ECHO"},
		{"succeeded-10000-deep", "/api/jobs?state=succeeded&cursor=" + url.QueryEscape(deep)},
		{"failed", "/api/jobs?state=failed"},
		{"blocked", "/api/jobs?state=blocked"},
		{"search-id", fmt.Sprintf("/api/jobs?q=job-%08d", n*7/9)},
		{"search-text", "/api/jobs?q=needle"},
		{"failures", "/api/failures"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if c.name == "failures" {
					if w := serve(c.path); w.Code != http.StatusOK {
						b.Fatalf("%s: %d", c.path, w.Code)
					}
					continue
				}
				if l := get(b, c.path); len(l.Jobs) == 0 && c.name != "search-text" {
					b.Fatalf("%s listed no job", c.path)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
		})
	}
}

// fill enqueues n jobs that succeed, 1,000 that fail and 1,000 that wait
// for a delayed gate, and runs them to their end, keeping every one.
func fill(b *testing.B, client *flow.Client, n int) {
	ctx := context.Background()
	start := time.Now()
	r, err := runner.New(client, &runner.Config{Concurrency: 64, Lease: time.Minute, RetainAge: -1, RetainCount: -1, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	if err := runner.Handle(r, func(ctx context.Context, sc *flow.StepContext, m Echo) (string, error) {
		if m.Text == "fail" {
			return "", flow.Permanent(fmt.Errorf("refused"))
		}
		return "", nil
	}); err != nil {
		b.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = r.Stop(context.Background()) }()
	gate, err := client.Add(ctx, Echo{Text: "gate"}, &flow.NodeOpts{ID: "gate", Delay: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]flow.BulkJob, 0, 500)
	add := func() {
		if _, err := client.AddBulk(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range n + 2000 {
		j := flow.BulkJob{Msg: Echo{Text: "fine"}, Opts: &flow.NodeOpts{ID: fmt.Sprintf("job-%08d", i)}}
		switch {
		case i >= n+1000:
			j.After = []string{gate.ID}
		case i >= n:
			j.Msg = Echo{Text: "fail"}
		case i%1000 == 3:
			j.Msg = Echo{Text: "a needle"}
		}
		if batch = append(batch, j); len(batch) == cap(batch) {
			add()
		}
	}
	if len(batch) > 0 {
		add()
	}
	for {
		st, err := client.Stats(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if st.Counts[dag.Succeeded]+st.Counts[dag.Failed] == int64(n+1000) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.Logf("filled %d jobs in %v", n+2001, time.Since(start).Round(time.Second))
}
