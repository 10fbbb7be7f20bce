package faults_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"
	"github.com/trellisflow/trellis/runner"
)

// trellisCommands are the Redis commands Trellis sends, from Go and from its
// Lua scripts: the least an ACL user needs. RELIABILITY.md shows the same list.
var trellisCommands = []string{
	// connection set-up by go-redis
	"hello", "auth", "ping",
	// Go side
	"fcall", "function|load", "evalsha", "eval", "script|load", "multi", "exec", "blpop", "scan", "type", "get",
	"hgetall", "hget", "hmget", "hincrby", "exists", "smembers", "sadd", "srem",
	"lpush", "ltrim", "lrange", "llen", "unlink", "pexpire",
	"zrange", "zrangebyscore", "zcount", "xread", "xrevrange", "xlen",
	// inside the scripts
	"set", "hset", "hsetnx", "hdel", "sismember", "scard", "spop", "zadd", "zcard", "zpopmin", "zrem", "zrevrange", "zremrangebyscore", "xadd", "time", "incrby",
}

// aclRule is the ACL SETUSER rule for a Trellis user: only its commands, only
// its keys, no channels.
func aclRule() string {
	return "on ~trellis:* resetchannels -@all +" + strings.Join(trellisCommands, " +")
}

// TestACLCoversScripts fails when a Lua script starts using a command the
// ACL rule (and RELIABILITY.md) does not grant yet.
func TestACLCoversScripts(t *testing.T) {
	files, err := filepath.Glob("../internal/store/scripts/*.lua")
	require.NoError(t, err)
	lib, err := filepath.Glob("../internal/store/scripts/lib/*.lua")
	require.NoError(t, err)
	require.NotEmpty(t, lib)
	files = append(files, lib...)
	require.NotEmpty(t, files)
	granted := map[string]bool{}
	for _, c := range trellisCommands {
		granted[c] = true
	}
	call := regexp.MustCompile(`redis\.p?call\(\s*['"]([A-Za-z]+)['"]`)
	var missing []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			if c := strings.ToLower(m[1]); !granted[c] {
				missing = append(missing, c+" ("+filepath.Base(f)+")")
			}
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "grant these in trellisCommands and in RELIABILITY.md's ACL rule")
}

// runSmallGraph enqueues a diamond with a node that fails once, runs it on a
// runner, cancels and retries a job, reads stats and clears the namespace.
func runSmallGraph(t *testing.T, rdb redis.UniversalClient, logs *redistest.Logs) {
	t.Helper()
	ctx := context.Background()
	c := newClient(t, rdb, "secure", logs)
	g := flow.New().WithID("secure-flow")
	fast := flow.Fixed(20 * time.Millisecond)
	a := g.Add(Work{Name: "a"}, &flow.NodeOpts{ID: "a"})
	b := g.Add(Work{Name: "b", Fail: 1}, &flow.NodeOpts{ID: "b", Backoff: &fast}).After(a)
	cc := g.Add(Work{Name: "c"}, &flow.NodeOpts{ID: "c"}).After(a)
	g.Add(Work{Name: "d"}, &flow.NodeOpts{ID: "d"}).After(b, cc)
	_, err := c.Enqueue(ctx, g)
	require.NoError(t, err)
	held, err := c.Add(ctx, Work{Name: "held"}, &flow.NodeOpts{ID: "held", Delay: time.Hour})
	require.NoError(t, err)
	require.Equal(t, dag.Delayed, held.State)
	_, err = c.Cancel(ctx, "held", "not needed")
	require.NoError(t, err)

	rec := newRuns()
	startRunner(t, c, runner.Config{ID: "secure-runner", Concurrency: 4, Lease: 5 * time.Second}, rec)
	f := waitFlow(t, c, "secure-flow", 30*time.Second)
	for _, n := range f.Nodes {
		require.Equal(t, dag.Succeeded, n.State, n.ID)
	}
	require.Equal(t, 2, rec.of("b"), "b failed once, then succeeded")

	n, err := c.Retry(ctx, "held")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	j, err := c.Job(ctx, "held")
	require.NoError(t, err)
	require.Equal(t, dag.Delayed, j.State, "the retried job waits for its delay again")
	st, err := c.Stats(ctx, &flow.StatsOpts{IncludeJobs: true})
	require.NoError(t, err)
	require.Equal(t, int64(4), st.Counts[dag.Succeeded])
	require.Equal(t, int64(1), st.Counts[dag.Delayed])
	failed, err := seam.Store(c).List(ctx, store.ListQuery{States: []dag.State{dag.Failed}, Limit: 10}) // the monitor's failure listing
	require.NoError(t, err)
	require.Empty(t, failed.Entries)
	require.True(t, failed.Complete)
	keys, err := c.Clear(ctx)
	require.NoError(t, err)
	require.Positive(t, keys)
}

// requireNoSecret fails if any secret shows in what was logged or in errs.
func requireNoSecret(t *testing.T, logs *redistest.Logs, secrets []string, errs ...error) {
	t.Helper()
	for _, s := range secrets {
		require.NotContains(t, logs.String(), s, "a credential appears in the log")
		for _, err := range errs {
			require.NotContains(t, err.Error(), s, "a credential appears in an error")
		}
	}
}

// wrongPassword checks that a runner on bad credentials logs its failures
// without them, and that the errors name the problem.
func wrongPassword(t *testing.T, opt *redis.Options, secrets []string) {
	t.Helper()
	logs := &redistest.Logs{}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	c := newClient(t, rdb, "secure", logs)
	_, enqErr := c.Add(context.Background(), Work{Name: "x"}, nil)
	require.Error(t, enqErr)
	require.Contains(t, enqErr.Error(), "WRONGPASS")
	r, err := runner.New(c, &runner.Config{ID: "wrong-runner", Lease: time.Second})
	require.NoError(t, err)
	require.NoError(t, r.Register(workStep(newRuns(), "wrong-runner")))
	require.NoError(t, r.Start(context.Background()))
	require.True(t, logs.WaitFor(20*time.Second, "sync with Redis failed", "WRONGPASS"), logs.String())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, r.Stop(ctx))
	requireNoSecret(t, logs, secrets, enqErr)
}

func TestRedisPassword(t *testing.T) {
	t.Parallel()
	const pw = "pw-Zq81-requirepass"
	srv := redistest.StartRedis(t, "--requirepass", pw)
	opt, err := redis.ParseURL(fmt.Sprintf("redis://:%s@%s/0", pw, srv.Addr()))
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &redistest.Logs{}
	runSmallGraph(t, rdb, logs)
	requireNoSecret(t, logs, []string{pw})

	bad := *opt
	bad.Password = "pw-wrong-55b1"
	wrongPassword(t, &bad, []string{pw, bad.Password})
}

func TestRedisACLUser(t *testing.T) {
	t.Parallel()
	const adminPW, userPW = "pw-admin-7c2e", "pw-user-e41d"
	srv := redistest.StartRedis(t, "--requirepass", adminPW)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: adminPW})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := context.Background()
	args := []any{"ACL", "SETUSER", "trellis", ">" + userPW}
	for _, f := range strings.Fields(aclRule()) {
		args = append(args, f)
	}
	require.NoError(t, admin.Do(ctx, args...).Err())

	opt, err := redis.ParseURL(fmt.Sprintf("redis://trellis:%s@%s/0", userPW, srv.Addr()))
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &redistest.Logs{}
	runSmallGraph(t, rdb, logs)
	requireNoSecret(t, logs, []string{userPW, adminPW})

	// the user reaches nothing else
	err = rdb.Set(ctx, "other:key", "1", 0).Err()
	require.ErrorContains(t, err, "NOPERM")
	err = rdb.HSet(ctx, "other:key", "f", "1").Err()
	require.ErrorContains(t, err, "NOPERM", "keys outside trellis:* are refused")
	require.ErrorContains(t, rdb.FlushAll(ctx).Err(), "NOPERM")
	require.ErrorContains(t, rdb.ConfigGet(ctx, "requirepass").Err(), "NOPERM")

	bad := *opt
	bad.Password = "pw-wrong-0a9f"
	wrongPassword(t, &bad, []string{userPW, adminPW, bad.Password})
}

func TestRedisTLS(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("redis-server", "--version").CombinedOutput()
	require.NoError(t, err)
	t.Logf("%s", strings.TrimSpace(string(out)))

	dir := t.TempDir()
	pki := newPKI(t, dir)
	const pw = "pw-tls-3b7a"
	srv := redistest.StartRedisAt(t, redistest.FreePort(t), dir, "--tls-port", "0",
		"--tls-cert-file", pki.serverCert, "--tls-key-file", pki.serverKey,
		"--tls-ca-cert-file", pki.caCert, "--tls-auth-clients", "yes", "--requirepass", pw)

	opt, err := redis.ParseURL(fmt.Sprintf("rediss://:%s@%s/0", pw, srv.Addr()))
	require.NoError(t, err)
	require.NotNil(t, opt.TLSConfig, "rediss:// turns TLS on")
	opt.TLSConfig.RootCAs = pki.pool
	opt.TLSConfig.Certificates = []tls.Certificate{pki.client}
	opt.TLSConfig.MinVersion = tls.VersionTLS12
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &redistest.Logs{}
	runSmallGraph(t, rdb, logs)
	requireNoSecret(t, logs, []string{pw})

	ctx := context.Background()
	try := func(o *redis.Options) error {
		c := redis.NewClient(o)
		defer c.Close()
		return c.Ping(ctx).Err()
	}
	plain := *opt
	plain.TLSConfig = nil
	plain.MaxRetries = -1
	require.Error(t, try(&plain), "plain TCP to the TLS port fails")

	noCert := *opt
	noCert.TLSConfig = opt.TLSConfig.Clone()
	noCert.TLSConfig.Certificates = nil
	noCert.MaxRetries = -1
	require.Error(t, try(&noCert), "a client without a certificate is refused")

	otherCA := *opt
	otherCA.TLSConfig = opt.TLSConfig.Clone()
	otherCA.TLSConfig.RootCAs = x509.NewCertPool()
	otherCA.MaxRetries = -1
	err = try(&otherCA)
	require.ErrorContains(t, err, "certificate", "a server the CA did not sign is refused")
	require.NotContains(t, err.Error(), pw)

	bad := *opt
	bad.TLSConfig = opt.TLSConfig.Clone()
	bad.Password = "pw-wrong-c0de"
	wrongPassword(t, &bad, []string{pw, bad.Password})
}

type pki struct {
	caCert, serverCert, serverKey string
	pool                          *x509.CertPool
	client                        tls.Certificate
}

// newPKI writes a self-signed CA, a server certificate for 127.0.0.1 and a
// client certificate into dir.
func newPKI(t *testing.T, dir string) *pki {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trellis test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		require.NoError(t, err)
		return der, k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		return b
	}
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caCert = write("ca.crt", "CERTIFICATE", caDER)
	sDER, sKey := issue(2, x509.ExtKeyUsageServerAuth)
	p.serverCert = write("server.crt", "CERTIFICATE", sDER)
	p.serverKey = write("server.key", "EC PRIVATE KEY", keyDER(sKey))
	cDER, cKey := issue(3, x509.ExtKeyUsageClientAuth)
	p.client, err = tls.X509KeyPair(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER(cKey)}))
	require.NoError(t, err)
	return p
}
