package server

import "github.com/sessionaudit/sessionaudit/store"

// acknowledgeRejected returns the acknowledgement of a batch whose reports
// (in increasing sequence order) the store took as res says: its
// high-water mark, moved over the reports the store rejected right above
// it. Such a report is acknowledged without its content (the store
// rejected it for good: sent again, it would be rejected again, and the
// agent would resend it forever); the loss is logged and counted
// (sessionaudit_reports_total{outcome="rejected"}). A report the store did
// not reach (after a resync) stops the walk: it is not acknowledged.
func acknowledgeRejected(reports []store.Report, res store.IngestResult) uint64 {
	ack := res.Acknowledged
	if len(res.Rejected) == 0 {
		return ack
	}
	rejected := make(map[uint64]bool, len(res.Rejected))
	for _, r := range res.Rejected {
		rejected[r.Sequence] = true
	}
	for _, r := range reports {
		switch {
		case r.Sequence <= ack:
		case rejected[r.Sequence]:
			ack = r.Sequence
		default:
			return ack
		}
	}
	return ack
}
