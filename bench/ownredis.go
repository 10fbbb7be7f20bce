package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/trellisflow/trellis/internal/redistest"
)

// ownRedis starts a redis-server of this machine on a free loopback port,
// without persistence, for a run that nobody else's traffic disturbs. The
// returned func stops it, by its PID.
func ownRedis(ctx context.Context) (url string, stop func(), err error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "", nil, fmt.Errorf("-own-redis: redis-server is not installed")
	}
	srv, err := redistest.Start()
	if err != nil {
		return "", nil, fmt.Errorf("-own-redis: %w", err)
	}
	return fmt.Sprintf("redis://%s/0", srv.Addr()), srv.Stop, nil
}

// loadAverage is the 1-minute load average, or "" where /proc has none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
