package service

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestTeeHandler: every record reaches the main handler; warnings and
// errors are copied, one line each and without the time, to their writer.
func TestTeeHandler(t *testing.T) {
	var main, warn, errs bytes.Buffer
	log := slog.New(newTeeHandler(slog.NewTextHandler(&main, nil), lineWriterTo(&warn), lineWriterTo(&errs)))
	log = log.With("agent", "a-1")
	log.Info("agent starting")
	log.Warn("uplink: retrying", "attempt", 2)
	log.WithGroup("g").Error("cannot start", "err", "disk full")
	if n := strings.Count(main.String(), "\n"); n != 3 {
		t.Errorf("main handler got %d lines; want 3:\n%s", n, main.String())
	}
	if got, want := warn.String(), "level=WARN msg=\"uplink: retrying\" agent=a-1 attempt=2\n"; got != want {
		t.Errorf("warning line %q; want %q", got, want)
	}
	if got, want := errs.String(), "level=ERROR msg=\"cannot start\" agent=a-1 g.err=\"disk full\"\n"; got != want {
		t.Errorf("error line %q; want %q", got, want)
	}
}

func lineWriterTo(b *bytes.Buffer) lineWriter {
	return func(msg string) error {
		b.WriteString(msg + "\n")
		return nil
	}
}
