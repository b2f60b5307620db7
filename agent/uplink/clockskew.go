package uplink

import (
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
)

// The collector measures the host's clock skew on every batch
// (IngestResponse.clock_skew: the batch's sent_at minus the collector's
// clock on receipt, positive when the host's clock is ahead) and the agent
// logs it when it is large: the host's times (its reports' taken_at, its
// sessions' starts) are off by as much, and a clock more than an hour ahead
// has its reports' times corrected by the collector (docs/agent.md, "The
// host's clock").
const (
	// ClockSkewWarning is the skew, either way, from which the agent logs
	// a warning.
	ClockSkewWarning = time.Minute
	// ClockSkewWarnEvery is how often the warning is repeated while the
	// skew stays beyond ClockSkewWarning and moves less than it.
	ClockSkewWarnEvery = time.Hour
)

// skewWatch logs the clock skew the collector measures: a warning when it
// goes beyond ClockSkewWarning, again every ClockSkewWarnEvery or when it
// moved by ClockSkewWarning since the last warning, and once when it comes
// back within.
type skewWatch struct {
	mu       sync.Mutex
	warned   bool
	warnedAt time.Time // by the host's clock
	last     time.Duration
}

// observe takes the skew of one answer (nil: the collector measured none)
// at now, the host's clock.
func (w *skewWatch) observe(log *slog.Logger, d *durationpb.Duration, now time.Time) {
	if d == nil || d.CheckValid() != nil {
		return
	}
	skew := d.AsDuration()
	w.mu.Lock()
	defer w.mu.Unlock()
	if abs(skew) <= ClockSkewWarning {
		if w.warned {
			w.warned = false
			log.Info("uplink: the host's clock agrees with the collector's again", "clock_skew", skew.Round(time.Millisecond))
		}
		return
	}
	if w.warned && abs(skew-w.last) < ClockSkewWarning && now.Sub(w.warnedAt) < ClockSkewWarnEvery && !now.Before(w.warnedAt) {
		return
	}
	w.warned, w.warnedAt, w.last = true, now, skew
	way := "ahead of"
	if skew < 0 {
		way = "behind"
	}
	log.Warn("uplink: the host's clock is "+way+" the collector's by more than "+ClockSkewWarning.String()+
		": the host's reported times are off by as much; reports more than an hour ahead are stored with a "+
		"corrected time. Check the host's time synchronisation (w32tm /query /status)",
		"clock_skew", skew.Round(time.Millisecond), "host_time", now.UTC().Format(time.RFC3339))
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
