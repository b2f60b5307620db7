package run

import (
	"errors"

	"github.com/sessionaudit/sessionaudit/agent/spool"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// The collector's high-water mark can be ahead of the spool: a spool
// restored from an older copy (a VM snapshot) numbers new reports with
// sequences the collector already stored. The pump then moves the spool
// past the mark (spool.Rebase, uplink.ChainQueue) and wakes the poll loop
// (pollNow); the poll loop numbers its next report from the spool's
// NextSequence, as a full Snapshot (renumber).

// pollNow makes the poll loop poll at once; it does not block.
func (a *loop) pollNow() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// renumber moves the tracker's numbering up to the spool's when the spool
// was moved past it, with a full Snapshot next; it reports whether it did.
func (a *loop) renumber() bool {
	next := a.spool.NextSequence()
	if next <= a.tracker.NextSequence() {
		return false
	}
	a.log.Warn("numbering reports above the collector's high-water mark: the next report is a full snapshot",
		"next_sequence", next, "was", a.tracker.NextSequence())
	a.tracker.Renumber(next)
	return true
}

// spoolReport makes the report of snap and appends it to the spool; it
// returns nil when there is none (logged). A snapshot too large for one
// report is spooled as its parts (change.Tracker.NextReports); the last is
// returned.
func (a *loop) spoolReport(snap *pb.Snapshot) *pb.Report {
	a.renumber()
	for retried := false; ; retried = true {
		reps, err := a.tracker.NextReports(snap)
		if err != nil {
			a.log.Error("snapshot not usable: no report this poll", "err", err)
			return nil
		}
		if len(reps) > 1 {
			a.log.Info("snapshot split in parts", "parts", len(reps),
				"first_sequence", reps[0].GetSequence(), "last_sequence", reps[len(reps)-1].GetSequence())
		}
		rep := reps[0]
		err = a.spool.Append(rep)
		for i := 1; i < len(reps) && (err == nil || errors.As(err, new(*spool.KeptError))); i++ {
			rep = reps[i]
			err = a.spool.Append(rep)
		}
		if kept, ok := errors.AsType[*spool.KeptError](err); ok {
			a.log.Warn("report spooled, but the spool could not finish its bookkeeping; it tries again at the next report",
				"sequence", rep.GetSequence(), "err", kept.Err)
			err = nil
		}
		if err == nil {
			if lb := rep.GetLostBefore(); lb.GetReason() == pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_WRITE_FAILED {
				a.log.Warn("spool writes again: the reports it could not write are lost; this report names them "+
					"and the collector records a coverage gap",
					"first_sequence", lb.GetFirstSequence(), "last_sequence", lb.GetLastSequence(),
					"lost_reports", lb.GetLastSequence()-lb.GetFirstSequence()+1, "sequence", rep.GetSequence())
			}
			return rep
		}
		// The pump may have moved the spool past the report's number
		// since renumber: number it again, once.
		if !retried && a.renumber() {
			continue
		}
		a.tracker.RequestResync()
		first, last := a.spool.Unwritten()
		a.log.Error("cannot spool the report: it is lost; the next report spooled names it, the collector records "+
			"a coverage gap, and the next report will be a full snapshot",
			"sequence", rep.GetSequence(), "kind", rep.ContentName(), "unwritten_first_sequence", first,
			"unwritten_reports", unwrittenCount(first, last), "err", err)
		return nil
	}
}

// unwrittenCount is the number of reports first..last (0 when first is 0).
func unwrittenCount(first, last uint64) uint64 {
	if first == 0 {
		return 0
	}
	return last - first + 1
}
