package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// StartSentinel starts a Redis Sentinel on a free loopback port that
// monitors the primary at masterAddr under name, with quorum 1 and a
// failover that starts one second after the primary stops answering.
func StartSentinel(t testing.TB, name, masterHost string, masterPort int) *Server {
	t.Helper()
	dir := t.TempDir()
	port := FreePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
logfile %s
sentinel monitor %s %s %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, port, dir, filepath.Join(dir, "redis.log"), name, masterHost, masterPort, name, name, name)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatalf("redistest: write sentinel.conf: %v", err)
	}
	s := &Server{t: t, Port: port, Dir: dir, args: []string{conf, "--sentinel"}, ready: "+monitor master"}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Kill() })
	return s
}
