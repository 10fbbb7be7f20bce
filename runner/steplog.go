package runner

import (
	"bytes"
	"log/slog"
	"sync"
)

// maxStepLog caps the log records kept with a job.
const maxStepLog = 8 << 10

// stepLog collects what one step run logs through its StepContext.Logger,
// as text lines, so the job's page can show them. It keeps the first
// maxStepLog bytes and notes what it dropped.
type stepLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int
}

func (l *stepLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len()+len(p) > maxStepLog {
		l.dropped++
		return len(p), nil
	}
	return l.buf.Write(p)
}

func (l *stepLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped > 0 {
		return l.buf.String() + "… " + itoa(l.dropped) + " more records not kept\n"
	}
	return l.buf.String()
}

// logger returns the step's logger: the runner's, plus a copy of every
// record at Info or above into the job's log.
func (l *stepLog) logger(base *slog.Logger) *slog.Logger {
	capture := slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})
	return slog.New(slog.NewMultiHandler(base.Handler(), capture))
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for n >= 10 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	i--
	b[i] = byte('0' + n)
	return string(b[i:])
}
