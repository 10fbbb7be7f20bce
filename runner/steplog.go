package runner

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
)

// stepLog collects what one step run logs through its StepContext.Logger,
// as text lines, so the job's page can show them. It keeps the first max
// bytes (flow.Config.MaxLogs) and notes what it dropped.
type stepLog struct {
	max     int
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int
	text    slog.Handler // formats the records kept; made on first use
}

func (l *stepLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len()+len(p) > l.max {
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

func (l *stepLog) handler() slog.Handler {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.text == nil {
		l.text = slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	return l.text
}

// jobLogger returns a logger for one run of a job: base's handler with the
// job's attributes and, when keep is set, a copy of every record at Info or
// above into keep (the step's own log, shown with the job). It formats
// nothing until a record is logged, so a run that logs nothing costs a
// couple of small allocations.
func jobLogger(base *slog.Logger, keep *stepLog, attrs ...slog.Attr) *slog.Logger {
	return slog.New(&jobHandler{base: base.Handler(), attrs: attrs, keep: keep})
}

type jobHandler struct {
	base  slog.Handler
	attrs []slog.Attr
	keep  *stepLog
}

func (h *jobHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return (h.keep != nil && l >= slog.LevelInfo) || h.base.Enabled(ctx, l)
}

func (h *jobHandler) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	if h.base.Enabled(ctx, rec.Level) {
		withJob := rec.Clone()
		withJob.AddAttrs(h.attrs...)
		err = h.base.Handle(ctx, withJob)
	}
	if h.keep != nil && rec.Level >= slog.LevelInfo {
		_ = h.keep.handler().Handle(ctx, rec)
	}
	return err
}

// WithAttrs and WithGroup (rare in steps) build the handlers for real.
func (h *jobHandler) WithAttrs(as []slog.Attr) slog.Handler { return h.full().WithAttrs(as) }
func (h *jobHandler) WithGroup(name string) slog.Handler    { return h.full().WithGroup(name) }

func (h *jobHandler) full() slog.Handler {
	base := h.base.WithAttrs(h.attrs)
	if h.keep == nil {
		return base
	}
	return slog.NewMultiHandler(base, h.keep.handler())
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
