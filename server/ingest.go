package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
	"github.com/sessionaudit/sessionaudit/proto/limits"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Ingest implements CollectorService.Ingest: validate the whole batch,
// refuse it whole if any report breaks the protocol, then hand it to the
// store under the agent's in-flight limit and the collector's store slots,
// and acknowledge what the store committed.
func (c *collectorService) Ingest(ctx context.Context, req *pb.IngestRequest) (resp *pb.IngestResponse, err error) {
	s := c.s
	a, _ := agentFrom(ctx)
	log := s.log.With("agent", a.AgentID, "machine_guid", a.MachineGUID)
	received := s.cfg.Now()

	reports, err := s.validateBatch(req.GetBatch(), a.MachineGUID)
	if err != nil {
		s.metrics.batches.WithLabelValues(resultInvalid).Inc()
		log.Warn("batch refused", "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// The host's clock skew (clockskew.go): to the store with the reports,
	// in the answer, and recorded for the host.
	if skew, ok := batchClockSkew(req.GetBatch(), received, reports); ok {
		defer func() {
			if err == nil && resp != nil {
				s.clockSkewAnswered(ctx, log, a, skew, received, resp)
			}
		}()
	}

	if !s.inFlight.acquire(a.AgentID) {
		s.metrics.batches.WithLabelValues(resultTooMany).Inc()
		return nil, status.Errorf(codes.ResourceExhausted, "agent %s has %d batches in flight already; wait for their responses", a.AgentID, s.cfg.MaxInFlightPerAgent)
	}
	defer s.inFlight.release(a.AgentID)

	// A heartbeat stamped far ahead goes to Ingest, which corrects it.
	if hb, ok := plainHeartbeat(a, reports); ok && !s.cfg.NoHeartbeatGroups && !hb.TakenAt.After(received.Add(store.MaxClockSkew)) {
		hb.Incarnation = req.GetBatch().GetIncarnation()
		applied, queued, err := s.heartbeats.submit(ctx, hb)
		switch {
		case !queued:
			// The queue is full: the ordinary path, and its pushback.
		case err != nil && ctx.Err() != nil:
			log.Info("heartbeat abandoned by the caller", "err", err)
			return nil, status.FromContextError(ctx.Err()).Err()
		case errors.Is(err, errHeartbeatBusy):
			s.metrics.batches.WithLabelValues(resultUnavailable).Inc()
			log.Warn("heartbeat pushed back: every store slot busy", "slots", s.cfg.MaxConcurrentIngests)
			return nil, s.unavailable("the collector is busy; keep the batch and retry after the delay")
		case err != nil:
			s.metrics.batches.WithLabelValues(resultUnavailable).Inc()
			return nil, s.unavailable("the store could not commit the batch; keep it and retry after the delay")
		case applied:
			s.storeCommitted()
			s.count(reports, store.IngestResult{Applied: []uint64{hb.Sequence}, Acknowledged: hb.Sequence})
			s.metrics.batches.WithLabelValues(resultOK).Inc()
			warnDropped(log, req)
			return s.ingestResponse(hb.Sequence, false), nil
		}
		// Not applied: a duplicate, resync, late or first report, which
		// the ordinary path answers in full.
	}

	// A store slot: wait a little for one, then push back rather than queue
	// without bound.
	wait := time.NewTimer(s.cfg.IngestQueueWait)
	select {
	case s.ingestSlots <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		s.metrics.batches.WithLabelValues(resultUnavailable).Inc()
		log.Warn("batch pushed back: every store slot busy", "slots", s.cfg.MaxConcurrentIngests)
		return nil, s.unavailable("the collector is busy; keep the batch and retry after the delay")
	case <-ctx.Done():
		wait.Stop()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	defer func() { <-s.ingestSlots }()

	sctx, cancel := context.WithTimeout(ctx, s.cfg.IngestTimeout)
	defer cancel()
	start := time.Now()
	res, err := s.store.IngestIncarnation(sctx, a.AgentID, a.MachineGUID, req.GetBatch().GetIncarnation(), reports)
	s.metrics.ingest.Observe(time.Since(start).Seconds())

	resync := errors.Is(err, store.ErrResyncRequired)
	if r := res.Restart; r != nil && (err == nil || resync) {
		log.Warn("agent's spool replaced (deleted or lost, and made anew): its reports are numbered again in a new incarnation",
			"incarnation", fmt.Sprintf("%016x", r.Incarnation), "previous_incarnation", fmt.Sprintf("%016x", r.Previous),
			"previous_acknowledged", r.PreviousMark)
	}
	if d, ok := errors.AsType[*store.DivergedError](err); ok {
		log.Warn("agent's spool went back to an older copy (a restored VM snapshot?): a report numbered at the "+
			"high-water mark is not the one stored; asking for a snapshot above it", "sequence", d.Sequence,
			"taken_at", d.TakenAt, "stored_taken_at", d.Stored)
	}
	switch {
	case resync:
		log.Info("resync required", "err", err, "acknowledged", res.Acknowledged)
	case errors.Is(err, store.ErrInvalidInput):
		// The store refused the call's own parameters (the identity from
		// the certificate): nothing was stored.
		s.metrics.batches.WithLabelValues(resultInvalid).Inc()
		log.Error("store refused the batch's identity", "err", err)
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	case err != nil && ctx.Err() != nil:
		// The agent gave up (or the collector is stopping): nothing to
		// answer, and not the store's fault.
		log.Info("batch abandoned by the caller", "err", err)
		return nil, status.FromContextError(ctx.Err()).Err()
	case err != nil:
		s.metrics.storeErrors.Inc()
		// A batch that keeps failing is set aside after a while
		// (quarantine.go), so that the host's later reports get through.
		if resp, ok := s.quarantineIfStuck(ctx, log, a, req.GetBatch(), reports, err); ok {
			return resp, nil
		}
		s.metrics.batches.WithLabelValues(resultUnavailable).Inc()
		log.Error("store failed to ingest a batch: pushing back", "err", err, "reports", len(reports))
		return nil, s.unavailable("the store could not commit the batch; keep it and retry after the delay")
	}
	s.storeCommitted()

	s.count(reports, res)
	s.ingestFindings(ctx, log, a, res)
	result := resultOK
	switch {
	case resync:
		result = resultResync
	case len(res.Rejected) > 0:
		result = resultStoreRejected
	}
	// Validation above mirrors the store's rules, so this should not
	// happen; the rest of the batch is committed and cannot be taken back,
	// so the refused reports are acknowledged (the agent would otherwise
	// resend them forever) and logged as errors.
	ack := acknowledgeRejected(reports, res)
	for _, r := range res.Rejected {
		log.Error("store rejected a report: acknowledged without its content", "sequence", r.Sequence, "acknowledged", ack, "err", r.Err)
	}
	for _, g := range res.Gaps {
		s.metrics.coverageGaps.WithLabelValues(string(g.Reason)).Inc()
		s.metrics.lostReports.WithLabelValues(string(g.Reason)).Add(float64(g.LostReports()))
		var lost any = g.LostReports()
		if g.FirstSequence == 0 {
			lost = "unknown" // a replaced spool: what it still held is not known
		}
		log.Warn("agent lost reports: coverage gap recorded; the reports after it are stored",
			"reason", g.Reason, "first_sequence", g.FirstSequence, "last_sequence", g.LastSequence,
			"lost_reports", lost, "gap_start", g.StartTime.Format(time.RFC3339), "gap_end", g.EndTime.Format(time.RFC3339))
	}
	s.metrics.batches.WithLabelValues(result).Inc()
	for _, n := range res.Sanitized {
		log.Debug("value sanitized", "sequence", n.Sequence, "field", n.Field, "change", n.Change)
	}
	log.Debug("batch stored", "reports", len(reports), "applied", len(res.Applied), "duplicates", len(res.Duplicates),
		"late", len(res.Late), "acknowledged", res.Acknowledged, "dropped_reports", req.GetBatch().GetDroppedReports())
	warnDropped(log, req)
	return s.ingestResponse(ack, resync), nil
}

// warnDropped logs, once the batch is stored, that the agent's spool
// overflowed and dropped reports before it (the batch says how many).
func warnDropped(log *slog.Logger, req *pb.IngestRequest) {
	if d := req.GetBatch().GetDroppedReports(); d > 0 {
		log.Warn("agent dropped reports from its spool", "dropped_reports", d)
	}
}

func (s *Server) ingestResponse(acknowledged uint64, resync bool) *pb.IngestResponse {
	resp := &pb.IngestResponse{AcknowledgedSequence: acknowledged, ResyncRequired: resync}
	if s.cfg.MinIngestInterval > 0 {
		resp.MinInterval = durationpb.New(s.cfg.MinIngestInterval)
	}
	return resp
}

// count updates the report and session counters after a commit.
func (s *Server) count(reports []store.Report, res store.IngestResult) {
	kind := make(map[uint64]store.ReportKind, len(reports))
	for _, r := range reports {
		kind[r.Sequence] = r.Kind
	}
	applied := make(map[uint64]bool, len(res.Applied))
	for _, q := range res.Applied {
		applied[q] = true
		s.metrics.reports.WithLabelValues(kind[q].String(), "applied").Inc()
	}
	for _, q := range res.Duplicates {
		s.metrics.reports.WithLabelValues(kind[q].String(), "duplicate").Inc()
	}
	for _, r := range res.Rejected {
		s.metrics.reports.WithLabelValues(kind[r.Sequence].String(), "rejected").Inc()
	}
	var logon, server int
	for _, r := range reports {
		if applied[r.Sequence] {
			logon += len(r.LogonSessions)
			server += len(r.ServerSessions)
		}
	}
	s.metrics.sessions.WithLabelValues("logon").Add(float64(logon))
	s.metrics.sessions.WithLabelValues("server").Add(float64(server))
}

// validateBatch converts a batch and checks it against the protocol's rules
// and the collector's limits, so that the store refuses nothing: the batch
// is taken whole or refused whole. The error names the report and field.
func (s *Server) validateBatch(b *pb.Batch, machineGUID string) ([]store.Report, error) {
	if b == nil {
		return nil, errors.New("batch: is required")
	}
	in := b.GetReports()
	switch {
	case len(in) == 0:
		return nil, errors.New("batch.reports: is empty")
	case len(in) > s.cfg.MaxReportsPerBatch:
		return nil, fmt.Errorf("batch.reports: %d reports, more than the limit of %d", len(in), s.cfg.MaxReportsPerBatch)
	}
	out := make([]store.Report, 0, len(in))
	var prev uint64
	for i, pr := range in {
		if err := checkReportLimits(pr, s.cfg.MaxSessionsPerSnapshot, s.cfg.MaxStringBytes); err != nil {
			return nil, fmt.Errorf("batch.reports[%d]: %w", i, err)
		}
		r, err := ReportFromProto(pr)
		if err != nil {
			return nil, fmt.Errorf("batch.reports[%d]: %w", i, err)
		}
		fail := func(field, format string, args ...any) error {
			return fmt.Errorf("batch.reports[%d]: %w", i, &ReportError{Sequence: r.Sequence, Field: field, Reason: fmt.Sprintf(format, args...)})
		}
		kind := protoKind(r.Kind)
		switch {
		case r.Sequence <= prev:
			return nil, fail("sequence", "%d does not follow %d: reports must be in increasing sequence order", r.Sequence, prev)
		case r.Sequence > math.MaxInt64:
			return nil, fail("sequence", "%d is above the largest sequence, %d", r.Sequence, int64(math.MaxInt64))
		case r.Kind != store.KindSnapshot && r.BaseSequence == 0:
			return nil, fail(kind+".base_sequence", "is required in a %s", kind)
		case r.TakenAt.Before(store.Earliest):
			return nil, fail(kind+".taken_at", "%s is before %s", r.TakenAt.Format(time.RFC3339), store.Earliest.Format(time.RFC3339))
		}
		// A taken_at more than store.MaxClockSkew ahead is not refused (that
		// blocked the host's delivery for good): the store corrects it.
		if r.Host != nil && r.Host.MachineGUID != "" && !reportBoundTo(r.Host, machineGUID) {
			// C1: identity comes from the certificate only; a clone's names
			// its clone host key (0003-security.md, "Machine identity that
			// survives cloning").
			return nil, fail(kind+".host.machine_guid", "%q is not the machine this agent's certificate is bound to (%s)", r.Host.MachineGUID, machineGUID)
		}
		prev = r.Sequence
		out = append(out, r)
	}
	return out, nil
}

// reportBoundTo reports whether the machine GUID and SMBIOS UUID of a
// report's host are those of the certificate's host: the machine GUID, or
// the clone host key of the two (identity.BoundHost).
func reportBoundTo(h *store.Host, certHost string) bool {
	smbios, err := identity.CanonicalSMBIOSUUID(h.SMBIOSUUID)
	if err != nil {
		smbios = ""
	}
	return identity.BoundHost(certHost, identity.NormalizeMachineGUID(h.MachineGUID), smbios)
}

// checkReportLimits refuses a report with more sessions than max or a
// string longer than maxString bytes, before conversion.
func checkReportLimits(r *pb.Report, max, maxString int) error {
	seq := r.GetSequence()
	fail := func(field, format string, args ...any) error {
		return &ReportError{Sequence: seq, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	var host *pb.Host
	var logon []*pb.LogonSession
	var server []*pb.ServerSession
	var errs []*pb.CollectionError
	var build *pb.ServerSessionBuild
	var prefix, logonField, serverField string
	n := 0
	// Keys are never truncated (that could merge two sessions): one too
	// long for the store is refused here, naming its field.
	longKey := func(field, v string) error {
		if len(v) > limits.MaxKeyBytes {
			return fail(field, "%d bytes, more than %d, the longest key the store keeps", len(v), limits.MaxKeyBytes)
		}
		return nil
	}
	long := func(field, v string) error {
		if len(v) > maxString {
			return fail(field, "%d bytes, more than %d", len(v), maxString)
		}
		return nil
	}
	longServerKey := func(prefix, computer, user string) error {
		for _, p := range [][2]string{{"computer_name", computer}, {"user_name", user}} {
			if len(p[1]) > limits.MaxStringBytes {
				return fail(prefix+p[0], "%d bytes, more than %d, the longest server session key the store keeps", len(p[1]), limits.MaxStringBytes)
			}
			if err := long(prefix+p[0], p[1]); err != nil {
				return err
			}
		}
		return nil
	}
	switch c := r.GetContent().(type) {
	case *pb.Report_Snapshot:
		prefix, logonField, serverField = "snapshot", "logon_sessions", "server_sessions"
		host, logon, server, errs = c.Snapshot.GetHost(), c.Snapshot.GetLogonSessions(), c.Snapshot.GetServerSessions(), c.Snapshot.GetErrors()
		build = c.Snapshot.GetServerSessionBuild()
	case *pb.Report_Delta:
		prefix, logonField, serverField = "delta", "logon_sessions_upserted", "server_sessions_upserted"
		d := c.Delta
		host, logon, server, errs = d.GetHost(), d.GetLogonSessionsUpserted(), d.GetServerSessionsUpserted(), d.GetErrors()
		build = d.GetServerSessionBuild()
		n += len(d.GetLogonSessionsEnded()) + len(d.GetServerSessionsEnded())
		for i, k := range d.GetLogonSessionsEnded() {
			if err := longKey(fmt.Sprintf("delta.logon_sessions_ended[%d].logon_id", i), k.GetLogonId()); err != nil {
				return err
			}
		}
		for i, k := range d.GetServerSessionsEnded() {
			f := fmt.Sprintf("delta.server_sessions_ended[%d].", i)
			if err := longServerKey(f, k.GetComputerName(), k.GetUserName()); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	n += len(logon) + len(server)
	if n > max {
		return fail(prefix, "%d sessions, more than the limit of %d per report", n, max)
	}
	if len(errs) > 100 {
		return fail(prefix+".errors", "%d collection errors, more than 100", len(errs))
	}
	if host != nil {
		if field, n := longHostString(host, maxString); field != "" {
			return fail(prefix+".host."+field, "%d bytes, more than %d", n, maxString)
		}
	}
	for i, ls := range logon {
		f := fmt.Sprintf("%s.%s[%d].", prefix, logonField, i)
		if err := longKey(f+"logon_id", ls.GetLogonId()); err != nil {
			return err
		}
		for _, p := range [][2]string{
			{"logon_id", ls.GetLogonId()}, {"authentication_package", ls.GetAuthenticationPackage()},
			{"caption", ls.GetCaption()}, {"description", ls.GetDescription()}, {"name", ls.GetName()},
			{"status", ls.GetStatus()}, {"account.domain", ls.GetAccount().GetDomain()},
			{"account.name", ls.GetAccount().GetName()}, {"account.sid", ls.GetAccount().GetSid()},
		} {
			if err := long(f+p[0], p[1]); err != nil {
				return err
			}
		}
	}
	for i, ss := range server {
		f := fmt.Sprintf("%s.%s[%d].", prefix, serverField, i)
		if err := longServerKey(f, ss.GetComputerName(), ss.GetUserName()); err != nil {
			return err
		}
		for _, p := range [][2]string{
			{"computer_name", ss.GetComputerName()}, {"user_name", ss.GetUserName()},
			{"client_type", ss.GetClientType()}, {"transport_name", ss.GetTransportName()},
			{"caption", ss.GetCaption()}, {"description", ss.GetDescription()}, {"name", ss.GetName()},
			{"status", ss.GetStatus()}, {"smb.scope_name", ss.GetSmb().GetScopeName()},
			{"smb.cluster_node_name", ss.GetSmb().GetClusterNodeName()},
			{"smb.client_computer_name", ss.GetSmb().GetClientComputerName()},
			{"smb.client_user_name", ss.GetSmb().GetClientUserName()}, {"smb.dialect", ss.GetSmb().GetDialect()},
			{"smb.transport_name", ss.GetSmb().GetTransportName()},
		} {
			if err := long(f+p[0], p[1]); err != nil {
				return err
			}
		}
	}
	for _, p := range [][2]string{{"source", build.GetSource()}, {"fallback_reason", build.GetFallbackReason()}} {
		if err := long(prefix+".server_session_build."+p[0], p[1]); err != nil {
			return err
		}
	}
	for i, e := range errs {
		f := fmt.Sprintf("%s.errors[%d].", prefix, i)
		for _, p := range [][2]string{
			{"wmi_class", e.GetWmiClass()}, {"property", e.GetProperty()}, {"instance_key", e.GetInstanceKey()},
			{"raw_value", e.GetRawValue()}, {"message", e.GetMessage()},
		} {
			if err := long(f+p[0], p[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// protoKind names a report kind as the protocol's oneof does, for field
// paths.
func protoKind(k store.ReportKind) string {
	if k == store.KindSnapshot {
		return "snapshot"
	}
	return k.String()
}
