package change

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/sessionaudit/sessionaudit/proto/limits"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// PartLimits bound one report of a snapshot split in parts (Split).
type PartLimits struct {
	// Sessions is the most sessions (logon and server together) per part;
	// default limits.MaxPartSessions.
	Sessions int
	// Bytes is about the most encoded bytes of sessions per part; default
	// limits.MaxPartBytes. A part always holds at least one session.
	Bytes int
}

func (l PartLimits) withDefaults() PartLimits {
	if l.Sessions <= 0 {
		l.Sessions = limits.MaxPartSessions
	}
	if l.Bytes <= 0 {
		l.Bytes = limits.MaxPartBytes
	}
	return l
}

// NextReports is Next, with a Snapshot too large for one report split in
// parts (Split with the default PartLimits): the parts take consecutive
// sequences, and the following Delta or Heartbeat is based on the last one.
// It returns the reports in order, to spool in order.
func (t *Tracker) NextReports(snap *sessionauditv1.Snapshot) ([]*sessionauditv1.Report, error) {
	r, err := t.Next(snap)
	if err != nil {
		return nil, err
	}
	parts := Split(r, PartLimits{})
	if n := len(parts); n > 1 {
		t.next = parts[n-1].GetSequence() + 1
		t.state.StateSequence = parts[n-1].GetSequence()
	}
	return parts, nil
}

// Split returns r alone when it is not a Snapshot or when its sessions fit
// in one part; otherwise the parts of the snapshot
// (sessionauditv1.Snapshot.part): reports numbered r.sequence,
// r.sequence+1, ..., each with the snapshot's host and taken_at, the logon
// sessions then the server sessions divided in order so that no part holds
// more than l.Sessions sessions or (about) l.Bytes encoded bytes of them,
// and the collection errors in the first part. The first part carries r's
// lost_before.
func Split(r *sessionauditv1.Report, l PartLimits) []*sessionauditv1.Report {
	snap := r.GetSnapshot()
	if snap == nil {
		return []*sessionauditv1.Report{r}
	}
	l = l.withDefaults()
	type part struct {
		logon  []*sessionauditv1.LogonSession
		server []*sessionauditv1.ServerSession
	}
	var parts []*part
	cur := &part{}
	n, size := 0, 0
	next := func(sz int) {
		if n > 0 && (n+1 > l.Sessions || size+sz > l.Bytes) {
			parts = append(parts, cur)
			cur, n, size = &part{}, 0, 0
		}
		n++
		size += sz
	}
	for _, s := range snap.GetLogonSessions() {
		next(proto.Size(s) + 4)
		cur.logon = append(cur.logon, s)
	}
	for _, s := range snap.GetServerSessions() {
		next(proto.Size(s) + 4)
		cur.server = append(cur.server, s)
	}
	parts = append(parts, cur)
	if len(parts) == 1 {
		return []*sessionauditv1.Report{r}
	}
	out := make([]*sessionauditv1.Report, len(parts))
	for i, p := range parts {
		s := &sessionauditv1.Snapshot{
			Host: snap.GetHost(), TakenAt: snap.GetTakenAt(),
			LogonSessions: p.logon, ServerSessions: p.server,
			Part: uint32(i + 1), PartsTotal: uint32(len(parts)),
		}
		rep := &sessionauditv1.Report{Sequence: r.GetSequence() + uint64(i), Content: &sessionauditv1.Report_Snapshot{Snapshot: s}}
		if i == 0 {
			s.Errors = snap.GetErrors()
			s.ServerSessionBuild = snap.GetServerSessionBuild()
			rep.LostBefore = r.GetLostBefore()
		}
		out[i] = rep
	}
	return out
}

// CapErrors returns errs when they are at most limits.MaxCollectionErrors;
// otherwise limits.MaxCollectionErrors-1 of them and one summary error.
// Every error that makes a class's list incomplete (QUERY_FAILED, TIMEOUT,
// DISABLED: at most a few, one per class) is kept, then the others in
// order; the summary is of kind INVALID_VALUE (it makes no list incomplete)
// and says "N more errors of kinds ..." with a count per kind and class.
func CapErrors(errs []*sessionauditv1.CollectionError) []*sessionauditv1.CollectionError {
	maxErrs := limits.MaxCollectionErrors
	if len(errs) <= maxErrs {
		return errs
	}
	keep := make([]*sessionauditv1.CollectionError, 0, maxErrs)
	var dropped []*sessionauditv1.CollectionError
	for _, e := range errs {
		if e.GetKind() != sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE &&
			e.GetKind() != sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_UNSPECIFIED {
			keep = append(keep, e)
		}
	}
	for _, e := range errs {
		if e.GetKind() == sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE ||
			e.GetKind() == sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_UNSPECIFIED {
			if len(keep) < maxErrs-1 {
				keep = append(keep, e)
			} else {
				dropped = append(dropped, e)
			}
		}
	}
	// More than maxErrs-1 incomplete-kind errors cannot come from one
	// snapshot (one per class); drop the excess all the same.
	if len(keep) > maxErrs-1 {
		dropped = append(dropped, keep[maxErrs-1:]...)
		keep = keep[:maxErrs-1]
	}
	type kc struct{ kind, class string }
	counts := map[kc]int{}
	for _, e := range dropped {
		counts[kc{strings.TrimPrefix(e.GetKind().String(), "COLLECTION_ERROR_KIND_"), e.GetWmiClass()}]++
	}
	keys := make([]kc, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b kc) int { return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.class, b.class)) })
	var b strings.Builder
	fmt.Fprintf(&b, "%d more errors of kinds ", len(dropped))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s: %d", k.kind, k.class, counts[k])
	}
	msg := b.String()
	if len(msg) > 1000 {
		msg = msg[:1000] // ASCII: kinds and WMI class names
	}
	return append(keep, &sessionauditv1.CollectionError{
		Kind:    sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE,
		Message: msg,
	})
}
