package server

import (
	"errors"
	"testing"

	"github.com/sessionaudit/sessionaudit/store"
)

// TestStoreRejectedReportAcknowledged: a report that passed the collector's
// checks but that the store rejected (the two drifted apart) is
// acknowledged without its content, so that the agent moves on instead of
// resending it forever; a report the store did not reach (a resync stopped
// the call before it) is not. No input is known to make them drift (the
// fuzz test FuzzValidateBatch holds them together; the store's clock
// behind the collector's did it until the store corrected reports stamped
// far ahead instead of rejecting them), so this calls acknowledgeRejected
// on what the store would answer.
func TestStoreRejectedReportAcknowledged(t *testing.T) {
	reports := []store.Report{{Sequence: 1}, {Sequence: 2}, {Sequence: 3}, {Sequence: 4}}
	rejected := func(seqs ...uint64) []store.RejectedReport {
		var out []store.RejectedReport
		for _, q := range seqs {
			out = append(out, store.RejectedReport{Sequence: q, Err: errors.New("rejected")})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		res  store.IngestResult
		want uint64
	}{
		{"nothing rejected", store.IngestResult{Acknowledged: 4}, 4},
		{"the last rejected", store.IngestResult{Acknowledged: 3, Rejected: rejected(4)}, 4},
		{"rejected between applied ones", store.IngestResult{Acknowledged: 4, Rejected: rejected(2)}, 4},
		{"the first two rejected, then a resync", store.IngestResult{Acknowledged: 0, Rejected: rejected(1, 2)}, 2},
		{"rejected right above the mark, then a resync", store.IngestResult{Acknowledged: 1, Rejected: rejected(2)}, 2},
		{"a report the store did not reach is not acknowledged", store.IngestResult{Acknowledged: 1, Rejected: rejected(3)}, 1},
	} {
		if got := acknowledgeRejected(reports, tc.res); got != tc.want {
			t.Errorf("%s: acknowledged %d, want %d", tc.name, got, tc.want)
		}
	}
}
