package config

import (
	"context"
	"slices"
	"sync"
	"time"
)

// DefaultReloadInterval is how often the agent reads its layers again.
// Group Policy itself refreshes every 90 minutes or so, and on gpupdate.
const DefaultReloadInterval = time.Minute

// Update is what a Watcher delivers: the settings and warnings of a reload
// whose result differs from the previous one.
type Update struct {
	Settings Settings
	Warnings []Warning
}

// Watcher reads its layers again on every tick and delivers the result
// when the settings (values or origins) or the warnings changed.
type Watcher struct {
	layers  []Layer
	updates chan Update

	mu       sync.Mutex
	current  Settings
	warnings []Warning
}

// NewWatcher loads the settings from layers (highest first, as Load) and
// returns a Watcher whose Current is that result.
func NewWatcher(layers ...Layer) *Watcher {
	s, ws := Load(layers...)
	return &Watcher{layers: layers, updates: make(chan Update), current: s, warnings: ws}
}

// Current returns the settings and warnings of the last load.
func (w *Watcher) Current() (Settings, []Warning) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current, w.warnings
}

// Updates returns the channel on which Run delivers changes. It is closed
// when Run returns.
func (w *Watcher) Updates() <-chan Update { return w.updates }

// Run reloads on every value received from ticks (in production
// time.NewTicker(DefaultReloadInterval).C) until ctx is done, and sends an
// Update on Updates when the result changed; it waits for the receiver
// (ticks meanwhile are not queued). It returns ctx's error.
func (w *Watcher) Run(ctx context.Context, ticks <-chan time.Time) error {
	defer close(w.updates)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticks:
		}
		s, ws := Load(w.layers...)
		w.mu.Lock()
		changed := !s.Equal(w.current) || !sameWarnings(ws, w.warnings)
		if changed {
			w.current, w.warnings = s, ws
		}
		w.mu.Unlock()
		if !changed {
			continue
		}
		select {
		case w.updates <- Update{Settings: s, Warnings: ws}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sameWarnings reports whether a and b say the same things.
func sameWarnings(a, b []Warning) bool {
	return slices.EqualFunc(a, b, func(x, y Warning) bool { return x.String() == y.String() })
}
