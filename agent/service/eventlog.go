package service

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

// teeHandler passes every record to h and copies those at minLevel or
// above, formatted as text, to warn or errs (by level).
type teeHandler struct {
	h          slog.Handler
	warn, errs slog.Handler
}

// newTeeHandler returns a handler that logs to h and writes records of
// level Warn to warnW and Error and above to errW, one line each.
func newTeeHandler(h slog.Handler, warnW, errW io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: minLevel, ReplaceAttr: dropTime}
	return &teeHandler{h: h, warn: slog.NewTextHandler(warnW, opts), errs: slog.NewTextHandler(errW, opts)}
}

// dropTime leaves the time out: the event log records its own.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func (t *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.h.Enabled(ctx, l) || l >= minLevel
}

func (t *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if t.h.Enabled(ctx, r.Level) {
		err = t.h.Handle(ctx, r)
	}
	switch {
	case r.Level >= slog.LevelError:
		_ = t.errs.Handle(ctx, r)
	case r.Level >= minLevel:
		_ = t.warn.Handle(ctx, r)
	}
	return err
}

func (t *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &teeHandler{h: t.h.WithAttrs(as), warn: t.warn.WithAttrs(as), errs: t.errs.WithAttrs(as)}
}

func (t *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{h: t.h.WithGroup(name), warn: t.warn.WithGroup(name), errs: t.errs.WithGroup(name)}
}

// lineWriter calls write with each Write's text, without the final newline.
type lineWriter func(msg string) error

func (w lineWriter) Write(p []byte) (int, error) {
	if err := w(strings.TrimSuffix(string(p), "\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}
