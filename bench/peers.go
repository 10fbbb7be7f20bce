package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// peerDir finds bench/peers/<name> next to this source file (go run) or
// below the working directory.
func peerDir(name string) (string, error) {
	var cands []string
	if _, file, _, ok := runtime.Caller(0); ok {
		cands = append(cands, filepath.Join(filepath.Dir(file), "peers", name))
	}
	cands = append(cands, filepath.Join("bench", "peers", name), filepath.Join("peers", name))
	for _, d := range cands {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("bench/peers/%s not found (run from the repository root)", name)
}

var (
	bullOnce sync.Once
	bullDir  string
	bullErr  error
)

// bullmqReady installs the BullMQ peer's packages when they are missing and
// says so, loudly, when it cannot run.
func (b *bench) bullmqReady(ctx context.Context) bool {
	bullOnce.Do(func() {
		for _, tool := range []string{"node", "npm"} {
			if _, err := exec.LookPath(tool); err != nil {
				bullErr = fmt.Errorf("%s is not installed", tool)
				return
			}
		}
		if bullDir, bullErr = peerDir("bullmq"); bullErr != nil {
			return
		}
		if _, err := os.Stat(filepath.Join(bullDir, "node_modules", "bullmq")); err == nil {
			return
		}
		b.status("bullmq: installing the peer's packages with npm ci in %s…", bullDir)
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir, cmd.Stdout, cmd.Stderr = bullDir, b.stderr, b.stderr
		if err := cmd.Run(); err != nil {
			bullErr = fmt.Errorf("npm ci failed: %w", err)
		}
	})
	if bullErr != nil {
		b.status("bullmq: SKIPPED — %v", bullErr)
		return false
	}
	return true
}

// bullmq runs one scenario of the BullMQ peer under its own key prefix and
// deletes that prefix afterwards.
func (b *bench) bullmq(ctx context.Context, scenario string, n, c int) (Result, error) {
	prefix := fmt.Sprintf("benchbull%06x", rand.IntN(1<<24))
	defer b.unlinkPrefix(prefix + ":")
	args := []string{"bench.mjs", "--scenario", scenario, "--n", itoa(n), "--concurrency", itoa(c),
		"--redis", b.opt.redisURL, "--prefix", prefix, "--enqueuers", itoa(enqueuers)}
	return b.runPeer(ctx, "bullmq", scenario, c, bullDir, "node", args...)
}

// goPeer is a peer written in Go, built once from its own module under
// bench/peers, so that the main module never depends on the engine.
type goPeer struct {
	once sync.Once
	bin  string
	err  error
}

var goPeers = map[string]*goPeer{"asynq": {}, "river": {}}

// goPeerReady builds the named Go peer once and says so, loudly, when it
// cannot.
func (b *bench) goPeerReady(ctx context.Context, name string) bool {
	p := goPeers[name]
	p.once.Do(func() {
		dir, err := peerDir(name)
		if err != nil {
			p.err = err
			return
		}
		tmp, err := os.MkdirTemp("", "trellis-bench-"+name)
		if err != nil {
			p.err = err
			return
		}
		p.bin = filepath.Join(tmp, name+"peer")
		b.status("%s: building the peer (its own module) in %s…", name, dir)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", p.bin, ".")
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, b.stderr, b.stderr
		if err := cmd.Run(); err != nil {
			p.err = fmt.Errorf("go build failed: %w", err)
		}
	})
	if p.err != nil {
		b.status("%s: SKIPPED — %v", name, p.err)
		return false
	}
	return true
}

// asynq runs the asynq peer's independent scenario on its own queue and
// deletes that queue's keys afterwards.
func (b *bench) asynq(ctx context.Context, n, c int) (Result, error) {
	queue := fmt.Sprintf("benchasynq%06x", rand.IntN(1<<24))
	defer func() {
		b.unlinkPrefix("asynq:{" + queue + "}:")
		b.rdb.SRem(context.Background(), "asynq:queues", queue)
	}()
	bin := goPeers["asynq"].bin
	return b.runPeer(ctx, "asynq", "independent", c, filepath.Dir(bin), bin,
		"-n", itoa(n), "-concurrency", itoa(c), "-redis", b.opt.redisURL, "-queue", queue, "-enqueuers", itoa(enqueuers))
}

// riverReady builds the River peer and checks that PostgreSQL at -db
// answers; either failing is a printed SKIPPED line.
func (b *bench) riverReady(ctx context.Context) bool {
	if !b.goPeerReady(ctx, "river") {
		return false
	}
	if err := b.pgPing(ctx); err != nil {
		b.status("river: SKIPPED — PostgreSQL at -db: %v", err)
		return false
	}
	return true
}

// river runs the River peer's independent scenario in a fresh PostgreSQL
// schema, which the peer migrates and this drops afterwards, also when the
// peer failed or was killed.
func (b *bench) river(ctx context.Context, n, c int) (Result, error) {
	name := fmt.Sprintf("bench_river_%08x", rand.Uint32())
	drop, err := b.pgCreateSchema(ctx, name)
	if err != nil {
		return Result{}, err
	}
	defer drop()
	bin := goPeers["river"].bin
	r, err := b.runPeer(ctx, "river", "independent", c, filepath.Dir(bin), bin,
		"-n", itoa(n), "-concurrency", itoa(c), "-db", b.opt.dbURL, "-schema", name, "-enqueuers", itoa(enqueuers))
	r.RedisVersion = "" // River runs on PostgreSQL
	return r, err
}

const peerTimeout = 15 * time.Minute

// peerLine is one line a peer prints on stdout: progress or a result.
type peerLine struct {
	Progress *int64  `json:"progress"`
	Total    int64   `json:"total"`
	Result   *Result `json:"result"`
}

func (b *bench) runPeer(ctx context.Context, engine, scenario string, c int, dir, name string, args ...string) (Result, error) {
	// A peer that hangs (a job that keeps failing, a lost connection) is
	// killed rather than waited for.
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Stderr = dir, b.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	var done, total counter
	total.Store(1)
	stop := b.progressOf(fmt.Sprintf("%s %s C=%d", engine, scenario, c), total.Load, done.Load)
	var res *Result
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var l peerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			b.status("%s: %s", engine, sc.Text())
			continue
		}
		if l.Progress != nil {
			done.Store(*l.Progress)
			total.Store(max(l.Total, 1))
		}
		if l.Result != nil {
			res = l.Result
		}
	}
	stop()
	if err := cmd.Wait(); err != nil {
		return Result{}, fmt.Errorf("%s peer: %w", engine, err)
	}
	if res == nil {
		return Result{}, fmt.Errorf("%s peer printed no result", engine)
	}
	res.Engine, res.Cores, res.RedisVersion = engine, b.cores, b.redisVersion
	return *res, nil
}

// unlinkPrefix deletes the keys that start with prefix, and only those.
func (b *bench) unlinkPrefix(prefix string) {
	ctx := context.Background()
	iter := b.rdb.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
	var batch []string
	flush := func() {
		if len(batch) > 0 {
			b.rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			flush()
		}
	}
	flush()
	if err := iter.Err(); err != nil {
		b.warnf("cleaning up %s*: %v", prefix, err)
	}
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`)
	return r.Replace(s)
}

// ceiling runs redis-benchmark with EVALSHA of a one-INCR script, without
// and with pipelining, on the same Redis.
// The floor (see floor.go) comes first.
func (b *bench) ceiling(ctx context.Context) []Result {
	var out []Result
	b.status("floor: a bare Lua queue…")
	if r, err := b.floor(ctx, 20000); err != nil {
		b.warnf("floor: %v", err)
	} else {
		out = append(out, r)
	}
	rb, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.status("ceiling: SKIPPED — redis-benchmark is not installed")
		return out
	}
	u, err := url.Parse(b.opt.redisURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "") {
		b.status("ceiling: SKIPPED — redis-benchmark needs a redis:// URL")
		return out
	}
	key := fmt.Sprintf("benchceil%06x:{c}:n", rand.IntN(1<<24))
	defer b.rdb.Unlink(context.Background(), key)
	sha, err := b.rdb.ScriptLoad(ctx, "return redis.call('INCR', KEYS[1])").Result()
	if err != nil {
		b.warnf("ceiling: %v", err)
		return out
	}
	base := []string{"-h", u.Hostname(), "-p", valueOr(u.Port(), "6379"), "-c", "50", "--csv"}
	if pw, ok := u.User.Password(); ok {
		base = append(base, "-a", pw, "--no-auth-warning")
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		base = append(base, "--dbnum", db)
	}
	for _, p := range []int{1, 16} {
		n := 100000
		if p > 1 {
			n = 400000
		}
		args := append(append([]string{}, base...), "-n", itoa(n), "-P", itoa(p), "EVALSHA", sha, "1", key)
		b.status("ceiling: redis-benchmark EVALSHA -P %d…", p)
		s0, _ := takeSnapshot(ctx, b.rdb)
		raw, err := exec.CommandContext(ctx, rb, args...).Output()
		s1, _ := takeSnapshot(ctx, b.rdb)
		if err != nil {
			b.warnf("ceiling: redis-benchmark: %v", err)
			continue
		}
		ops := parseBenchmarkCSV(raw)
		r := blankResult()
		r.Engine, r.Scenario, r.Variant, r.Concurrency, r.Nodes = "redis-benchmark", "ceiling", fmt.Sprintf("EVALSHA of one INCR, 50 clients, -P %d", p), 50, n
		r.OpsPerSec = ops
		r.RedisCPUPerNodeUS = (s1.redisCPU - s0.redisCPU) * 1e6 / float64(n)
		r.Cores, r.RedisVersion = b.cores, b.redisVersion
		out = append(out, r)
	}
	return out
}

func valueOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// parseBenchmarkCSV reads the requests per second from redis-benchmark --csv.
func parseBenchmarkCSV(raw []byte) float64 {
	recs, _ := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	ops := 0.0
	for _, rec := range recs {
		if len(rec) >= 2 && rec[0] != "test" {
			if v, err := strconv.ParseFloat(rec[1], 64); err == nil {
				ops = v
			}
		}
	}
	return ops
}
