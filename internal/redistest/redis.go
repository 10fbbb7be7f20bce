package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server process started by a test (or by the
// benchmark, with Start).
type Server struct {
	t    testing.TB // nil when started by Start
	Port int        // the port it listens on (the TLS port when it serves TLS only)
	Dir  string     // its working directory: AOF, RDB, nodes.conf and the log
	args []string
	// ready is the log line that says the server serves; default
	// "Ready to accept connections" (logged after the AOF is loaded).
	ready string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("redistest: no free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts redis-server on a free loopback port in a fresh temporary
// directory, without persistence unless extra says otherwise, for a
// program rather than a test (the benchmark's own Redis). Stop it with
// Stop, which also removes the directory.
func Start(extra ...string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "trellis-redis")
	if err != nil {
		return nil, err
	}
	s := newServer(nil, port, dir, extra)
	if err := s.start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Stop kills a server that Start started and removes its directory.
func (s *Server) Stop() {
	s.Kill()
	if s.t == nil {
		_ = os.RemoveAll(s.Dir)
	}
}

// StartRedis starts redis-server on a free loopback port in a fresh
// directory, without persistence unless extra (redis-server flags such as
// "--appendonly", "yes") says otherwise. It is killed at cleanup.
func StartRedis(t testing.TB, extra ...string) *Server {
	t.Helper()
	return StartRedisAt(t, FreePort(t), t.TempDir(), extra...)
}

// StartRedisAt starts redis-server on port with dir as its directory. When
// extra holds "--tls-port", port is the TLS port and plain TCP is off.
func StartRedisAt(t testing.TB, port int, dir string, extra ...string) *Server {
	t.Helper()
	s := newServer(t, port, dir, extra)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Kill() })
	return s
}

func newServer(t testing.TB, port int, dir string, extra []string) *Server {
	args := []string{"--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(dir, "redis.log"), "--daemonize", "no", "--protected-mode", "no"}
	if hasArg(extra, "--tls-port") {
		args = append(args, "--port", "0")
		extra = setArg(extra, "--tls-port", strconv.Itoa(port))
	} else {
		args = append(args, "--port", strconv.Itoa(port))
	}
	return &Server{t: t, Port: port, Dir: dir, args: append(args, extra...)}
}

func hasArg(args []string, name string) bool {
	for _, a := range args {
		if a == name {
			return true
		}
	}
	return false
}

func setArg(args []string, name, value string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == name && i+1 < len(out) {
			out[i+1] = value
		}
	}
	return out
}

// Addr is host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Log is what the server wrote to its log file so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return string(b)
}

// PID is the running process's ID, or 0.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) start() error {
	marker := s.ready
	if marker == "" {
		marker = "Ready to accept connections"
	}
	ready := strings.Count(s.Log(), marker)
	cmd := exec.Command("redis-server", s.args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	// Ready is logged after the AOF is loaded, so a restarted server has its
	// data back before the test goes on.
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(s.Log(), marker) <= ready {
		select {
		case <-exited:
			return fmt.Errorf("redistest: redis-server %v exited at start: %s\n%s", s.args, out.String(), tail(s.Log(), 2000))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redistest: redis-server on port %d not ready after 20s:\n%s", s.Port, tail(s.Log(), 2000))
		}
	}
	return nil
}

// Kill sends SIGKILL to the server and waits until it is gone. It does
// nothing when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// Restart starts the server again on the same port and directory, with the
// same flags; it returns once the server has loaded its data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// CLI runs redis-cli against the server (plain TCP only) and returns its output.
func (s *Server) CLI(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}, args...)
	out, err := exec.CommandContext(ctx, "redis-cli", all...).CombinedOutput()
	return string(out), err
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
