package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A host's clock skew, measured on every batch: Batch.sent_at (the host's
// clock) minus the collector's clock when the batch arrived, network delay
// included; positive when the host's clock is ahead. The collector
//
//   - gives it to the store with each report, which corrects by it a
//     taken_at more than store.MaxClockSkew ahead (store/clockskew.go);
//   - returns it in IngestResponse.clock_skew (the agent logs it);
//   - records it on the host (store.RecordClockSkew: HostStatus.clock_skew),
//     when it changed by store.ClockSkewResolution or more, else every
//     store.ClockSkewRefresh at most, and logs a warning when it goes past
//     ClockSkewWarning.
//
// docs/design/0002-storage.md, "Clocks ahead of the collector".

// ClockSkewWarning is the skew, either way, from which the collector logs
// a warning for the host and the agent logs one too.
const ClockSkewWarning = time.Minute

// clockSkewWriteTimeout bounds the write of a skew, outside the ingest.
const clockSkewWriteTimeout = 2 * time.Second

// maxSkewEntries bounds skewCache; beyond it the cache starts again empty
// (each agent then writes its skew once more, which the store's condition
// makes cheap).
const maxSkewEntries = 500_000

// batchClockSkew returns the skew measured on b, received at received, and
// whether b carries a valid sent_at; it sets the skew on every report.
func batchClockSkew(b *pb.Batch, received time.Time, reports []store.Report) (time.Duration, bool) {
	sent := b.GetSentAt()
	if sent == nil || sent.CheckValid() != nil || sent.AsTime().Before(store.Earliest) {
		return 0, false
	}
	skew := sent.AsTime().Sub(received)
	for i := range reports {
		reports[i].ClockSkew = skew
	}
	return skew, true
}

// skewCache is what this collector last recorded of each agent's skew, so
// that it writes a host row only when the skew changed or grew old.
type skewCache struct {
	mu sync.Mutex
	m  map[string]recordedSkew
}

type recordedSkew struct {
	skew time.Duration
	at   time.Time
}

// clockSkewAnswered puts the skew measured on the batch in the answer and
// records it for the host when it is due. It runs once a batch is answered
// with success.
func (s *Server) clockSkewAnswered(ctx context.Context, log *slog.Logger, a agentCaller, skew time.Duration, received time.Time, resp *pb.IngestResponse) {
	resp.ClockSkew = durationpb.New(skew)
	s.skews.mu.Lock()
	prev, known := s.skews.m[a.AgentID]
	due := !known || absDuration(skew-prev.skew) >= store.ClockSkewResolution || received.Sub(prev.at) >= store.ClockSkewRefresh ||
		received.Before(prev.at)
	if due {
		if s.skews.m == nil || len(s.skews.m) >= maxSkewEntries {
			s.skews.m = make(map[string]recordedSkew)
		}
		// Also when the write below fails: it is tried again after
		// ClockSkewRefresh, not at every batch.
		s.skews.m[a.AgentID] = recordedSkew{skew, received}
	}
	s.skews.mu.Unlock()
	if !due {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), clockSkewWriteTimeout)
	defer cancel()
	if _, err := s.store.RecordClockSkew(wctx, a.MachineGUID, skew, received); err != nil {
		log.Warn("cannot record the host's clock skew", "clock_skew", skew, "err", err)
	}
	notable := absDuration(skew) > ClockSkewWarning
	wasNotable := known && absDuration(prev.skew) > ClockSkewWarning
	switch {
	case notable && !wasNotable:
		way := "ahead of"
		if skew < 0 {
			way = "behind"
		}
		log.Warn("host clock skew: the host's clock is "+way+" the collector's by more than "+ClockSkewWarning.String()+
			"; its reported times are off by as much (reports more than "+store.MaxClockSkew.String()+
			" ahead are stored with a corrected taken_at, and noted)", "clock_skew", skew)
	case !notable && wasNotable:
		log.Info("host clock skew back within "+ClockSkewWarning.String(), "clock_skew", skew, "previous_clock_skew", prev.skew)
	}
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
