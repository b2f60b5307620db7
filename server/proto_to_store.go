package server

// The conversions from the protocol's reports into the store's types, with
// the checks that need the proto's field names. Their opposite, the store's
// answers into query messages, is in store_to_proto.go.

import (
	"fmt"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ReportError is a report the collector refuses to convert: it breaks the
// protocol. It names the report's sequence and the field.
type ReportError struct {
	// Sequence is the refused report's sequence number.
	Sequence uint64
	// Field is the path of the offending field, e.g.
	// "delta.logon_sessions_upserted[2].logon_type".
	Field string
	// Reason says what is wrong.
	Reason string
}

// Error names the report, the field and the reason.
func (e *ReportError) Error() string {
	return fmt.Sprintf("report %d: %s: %s", e.Sequence, e.Field, e.Reason)
}

// ReportFromProto converts one protocol report into the store's form. It
// refuses (with a *ReportError) what the protocol forbids: no content, a
// missing or invalid time, an enum that contradicts its raw WMI number.
// Values the store can repair (NUL bytes, huge strings) pass through; the
// store sanitizes them and records that it did.
func ReportFromProto(r *pb.Report) (store.Report, error) {
	c := converter{seq: r.GetSequence()}
	out := store.Report{Sequence: r.GetSequence()}
	if out.Sequence == 0 {
		return out, c.fail("sequence", "must be at least 1")
	}
	switch content := r.GetContent().(type) {
	case *pb.Report_Snapshot:
		s := content.Snapshot
		out.Kind = store.KindSnapshot
		out.TakenAt = c.requiredTime("snapshot.taken_at", s.GetTakenAt())
		if s.GetHost() == nil {
			c.failf("snapshot.host", "is required in a snapshot")
		}
		out.Host = c.host("snapshot.host", s.GetHost())
		out.LogonSessions = c.logonSessions("snapshot.logon_sessions", s.GetLogonSessions())
		out.ServerSessions = c.serverSessions("snapshot.server_sessions", s.GetServerSessions())
		out.CollectionErrors = collectionErrors(s.GetErrors())
		out.Part, out.PartsTotal = s.GetPart(), s.GetPartsTotal()
		if out.PartsTotal == 1 || out.Part > out.PartsTotal || (out.PartsTotal > 0 && out.Part == 0) {
			c.failf("snapshot.part", "part %d of %d: must be 1..parts_total, with parts_total at least 2 (or both 0)", out.Part, out.PartsTotal)
		}
	case *pb.Report_Delta:
		d := content.Delta
		out.Kind = store.KindDelta
		out.BaseSequence = d.GetBaseSequence()
		out.TakenAt = c.requiredTime("delta.taken_at", d.GetTakenAt())
		out.Host = c.host("delta.host", d.GetHost())
		out.LogonSessions = c.logonSessions("delta.logon_sessions_upserted", d.GetLogonSessionsUpserted())
		out.ServerSessions = c.serverSessions("delta.server_sessions_upserted", d.GetServerSessionsUpserted())
		for _, k := range d.GetLogonSessionsEnded() {
			out.EndedLogonIDs = append(out.EndedLogonIDs, k.GetLogonId())
		}
		for _, k := range d.GetServerSessionsEnded() {
			out.EndedServerSessions = append(out.EndedServerSessions, store.ServerSessionKey{
				ComputerName: k.GetComputerName(), UserName: k.GetUserName(),
			})
		}
		out.CollectionErrors = collectionErrors(d.GetErrors())
	case *pb.Report_Heartbeat:
		h := content.Heartbeat
		out.Kind = store.KindHeartbeat
		out.BaseSequence = h.GetBaseSequence()
		out.TakenAt = c.requiredTime("heartbeat.taken_at", h.GetTakenAt())
	default:
		c.failf("content", "is empty or of a kind this collector does not know")
	}
	if (out.Kind == store.KindDelta || out.Kind == store.KindHeartbeat) && out.BaseSequence >= out.Sequence {
		c.failf(out.Kind.String()+".base_sequence", "is %d, not below the report's own sequence", out.BaseSequence)
	}
	out.LostBefore = c.lostReports(r)
	if c.err != nil {
		return store.Report{}, c.err
	}
	return out, nil
}

// converter converts the parts of one report, keeping the first error.
type converter struct {
	seq uint64
	err *ReportError
}

func (c *converter) fail(field, reason string) *ReportError {
	if c.err == nil {
		c.err = &ReportError{Sequence: c.seq, Field: field, Reason: reason}
	}
	return c.err
}

func (c *converter) failf(field, format string, args ...any) {
	c.fail(field, fmt.Sprintf(format, args...))
}

// requiredTime converts a timestamp that must be present.
func (c *converter) requiredTime(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		c.failf(field, "is required")
		return time.Time{}
	}
	return c.optionalTime(field, ts)
}

// optionalTime converts a timestamp; absent gives the zero time.
func (c *converter) optionalTime(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		c.failf(field, "invalid timestamp: %v", err)
		return time.Time{}
	}
	return ts.AsTime().UTC()
}

func (c *converter) host(field string, h *pb.Host) *store.Host {
	if h == nil {
		return nil
	}
	return &store.Host{
		MachineGUID:  h.GetMachineGuid(),
		Hostname:     h.GetHostname(),
		Domain:       h.GetDomain(),
		OSCaption:    h.GetOsCaption(),
		OSVersion:    h.GetOsVersion(),
		OSBuild:      h.GetOsBuild(),
		LastBootTime: c.optionalTime(field+".last_boot_time", h.GetLastBootTime()),
		AgentVersion: h.GetAgentVersion(),
		SMBIOSUUID:   h.GetSmbiosUuid(),
	}
}

func (c *converter) logonSessions(field string, in []*pb.LogonSession) []store.LogonSession {
	if len(in) == 0 {
		return nil
	}
	out := make([]store.LogonSession, len(in))
	for i, s := range in {
		f := fmt.Sprintf("%s[%d]", field, i)
		ls := store.LogonSession{
			LogonID:               s.GetLogonId(),
			AuthenticationPackage: s.GetAuthenticationPackage(),
			Caption:               s.GetCaption(),
			Description:           s.GetDescription(),
			Name:                  s.GetName(),
			Status:                s.GetStatus(),
			StartTime:             c.optionalTime(f+".start_time", s.GetStartTime()),
			InstallDate:           c.optionalTime(f+".install_date", s.GetInstallDate()),
			LingeringSince:        c.optionalTime(f+".lingering_since", s.GetLingeringSince()),
		}
		ls.LogonType = c.logonType(f, s)
		if a := s.GetAccount(); a != nil {
			ls.Account = &store.Account{Domain: a.GetDomain(), Name: a.GetName(), SID: a.GetSid()}
		}
		out[i] = ls
	}
	return out
}

// logonType returns the raw WMI LogonType; see rawEnum.
func (c *converter) logonType(field string, s *pb.LogonSession) *uint32 {
	return rawEnum(c, field+".logon_type", s.LogonTypeRaw, s.GetLogonType(), pb.LogonTypeFromWMI, pb.LogonType.WMIValue)
}

func (c *converter) serverSessions(field string, in []*pb.ServerSession) []store.ServerSession {
	if len(in) == 0 {
		return nil
	}
	out := make([]store.ServerSession, len(in))
	for i, s := range in {
		f := fmt.Sprintf("%s[%d]", field, i)
		out[i] = store.ServerSession{
			ComputerName:    s.GetComputerName(),
			UserName:        s.GetUserName(),
			ClientType:      s.GetClientType(),
			TransportName:   s.GetTransportName(),
			Caption:         s.GetCaption(),
			Description:     s.GetDescription(),
			Name:            s.GetName(),
			Status:          s.GetStatus(),
			ActiveTime:      s.ActiveTime,
			IdleTime:        s.IdleTime,
			ResourcesOpened: s.ResourcesOpened,
			SessionType:     c.sessionType(f, s),
			InstallDate:     c.optionalTime(f+".install_date", s.GetInstallDate()),
		}
	}
	return out
}

// sessionType returns the raw WMI SessionType; see rawEnum.
func (c *converter) sessionType(field string, s *pb.ServerSession) *uint32 {
	return rawEnum(c, field+".session_type", s.SessionTypeRaw, s.GetSessionType(), pb.ServerSessionTypeFromWMI, pb.ServerSessionType.WMIValue)
}

// rawEnum returns the raw WMI number of an enum property, which is
// authoritative. When only the enum is set (an agent that did not fill the
// raw field) the number is derived from it; when both are set they must
// agree. The enum's zero value means "not set".
func rawEnum[E ~int32](c *converter, field string, raw *uint32, enum E, fromWMI func(uint32) E, toWMI func(E) (uint32, bool)) *uint32 {
	if raw != nil {
		if enum != 0 && fromWMI(*raw) != enum {
			c.failf(field, "%v contradicts the raw value %d", enum, *raw)
		}
		v := *raw
		return &v
	}
	if v, ok := toWMI(enum); ok {
		return &v
	}
	if enum != 0 {
		c.failf(field, "unknown value %d without a raw value", int32(enum))
	}
	return nil
}

// collectionErrors keeps what the store needs: which classes are incomplete.
// An INVALID_VALUE error concerns one value; the class's list stays complete.
func collectionErrors(in []*pb.CollectionError) []store.CollectionError {
	if len(in) == 0 {
		return nil
	}
	out := make([]store.CollectionError, len(in))
	for i, e := range in {
		msg := e.GetMessage()
		if e.GetProperty() != "" {
			msg = fmt.Sprintf("%s (property %s, instance %q, value %q)", msg, e.GetProperty(), e.GetInstanceKey(), e.GetRawValue())
		}
		out[i] = store.CollectionError{
			Class:     e.GetWmiClass(),
			Message:   msg,
			ValueOnly: e.GetKind() == pb.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE,
		}
	}
	return out
}

// lostReports converts Report.lost_before: nil when absent. First and last
// must name reports before r (the store records them as a coverage gap).
func (c *converter) lostReports(r *pb.Report) *store.LostReports {
	lb := r.GetLostBefore()
	if lb == nil {
		return nil
	}
	switch {
	case lb.GetFirstSequence() == 0:
		c.failf("lost_before.first_sequence", "must be at least 1")
	case lb.GetLastSequence() < lb.GetFirstSequence():
		c.failf("lost_before.last_sequence", "is %d, below first_sequence %d", lb.GetLastSequence(), lb.GetFirstSequence())
	case lb.GetLastSequence() >= r.GetSequence():
		c.failf("lost_before.last_sequence", "is %d, not below the report's own sequence", lb.GetLastSequence())
	}
	reason := store.GapLostReports // unspecified, or a reason newer than this collector
	switch lb.GetReason() {
	case pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE:
		reason = store.GapSpoolDamage
	case pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_OVERFLOW:
		reason = store.GapSpoolOverflow
	case pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_WRITE_FAILED:
		reason = store.GapSpoolWriteFailed
	}
	return &store.LostReports{FirstSequence: lb.GetFirstSequence(), LastSequence: lb.GetLastSequence(), Reason: reason}
}
