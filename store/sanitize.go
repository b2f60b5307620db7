package store

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionaudit/sessionaudit/proto/limits"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// sanitizer cleans one report's values and records every change as a Note.
// The rules are in docs/design/0002-storage.md ("Bad input").
type sanitizer struct {
	seq   uint64
	notes []Note
	// list and index name the element being cleaned ("LogonSessions", 3);
	// field names are relative to it. The full name is only built for a
	// note, so that clean values cost no string building.
	list  string
	index int
}

// at makes field names relative to element i of list ("" for the report).
func (z *sanitizer) at(list string, i int) { z.list, z.index = list, i }

func (z *sanitizer) note(field, format string, args ...any) {
	switch {
	case z.list != "" && field != "":
		field = fmt.Sprintf("%s[%d].%s", z.list, z.index, field)
	case z.list != "":
		field = fmt.Sprintf("%s[%d]", z.list, z.index) // the element itself
	}
	z.notes = append(z.notes, Note{Sequence: z.seq, Field: field, Change: fmt.Sprintf(format, args...)})
}

// cleanString makes s storable in a PostgreSQL text column: valid UTF-8,
// without NUL, at most max bytes. It reports what it changed.
func cleanString(s string, max int) (string, []string) {
	var changes []string
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
		changes = append(changes, "replaced invalid UTF-8 with U+FFFD")
	}
	if n := strings.Count(s, "\x00"); n > 0 {
		s = strings.ReplaceAll(s, "\x00", "")
		changes = append(changes, fmt.Sprintf("removed %d NUL bytes", n))
	}
	if len(s) > max {
		orig := len(s)
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
		changes = append(changes, fmt.Sprintf("truncated from %d to %d bytes", orig, cut))
	}
	return s, changes
}

func (z *sanitizer) str(field, s string) string {
	s, changes := cleanString(s, limits.MaxStringBytes)
	for _, c := range changes {
		z.note(field, "%s", c)
	}
	return s
}

// validMachineGUID returns raw as the store keys a machine GUID: the one
// canonical form of the protocol (identity.ParseMachineGUID), or a
// *FieldError naming field.
func validMachineGUID(field, raw string) (string, error) {
	g, err := identity.ParseMachineGUID(raw)
	if err != nil {
		return "", &FieldError{Field: field, Reason: err.Error()}
	}
	return g, nil
}

// validKey checks an identifier given as a call parameter.
func validKey(field, s string) error {
	switch {
	case s == "":
		return &FieldError{Field: field, Reason: "empty"}
	case len(s) > limits.MaxKeyBytes:
		return &FieldError{Field: field, Reason: fmt.Sprintf("%d bytes, longer than %d", len(s), limits.MaxKeyBytes)}
	case !utf8.ValidString(s):
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	case strings.ContainsRune(s, 0):
		return &FieldError{Field: field, Reason: "contains a NUL byte"}
	}
	return nil
}

// optTime returns t truncated to PostgreSQL's microseconds, or the zero time
// (with a note) when t is absurd: before Earliest or after latest.
func (z *sanitizer) optTime(field string, t, latest time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	if t.Before(Earliest) || t.After(latest) {
		z.note(field, "absurd time %s dropped (accepted: %s to %s)",
			t.UTC().Format(time.RFC3339), Earliest.Format(time.RFC3339), latest.UTC().Format(time.RFC3339))
		return time.Time{}
	}
	return pgTime(t)
}

// pgTime is t in UTC at PostgreSQL's precision.
func pgTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// cleanReport validates r and returns a sanitized copy. A value that can be
// repaired is repaired and noted; a report that cannot be stored meaningfully
// is refused with a *FieldError naming the field.
func cleanReport(r Report, machineGUID string, now time.Time) (Report, []Note, error) {
	return cleanReportAfter(r, machineGUID, now, time.Time{})
}

// cleanReportAfter is cleanReport for a report that follows, in its batch,
// one whose clean TakenAt is prev (zero: none), which a TakenAt the store
// corrects must stay after (aheadTakenAt).
func cleanReportAfter(r Report, machineGUID string, now, prev time.Time) (Report, []Note, error) {
	z := &sanitizer{seq: r.Sequence}
	fail := func(field, format string, args ...any) (Report, []Note, error) {
		return Report{}, nil, &FieldError{Sequence: r.Sequence, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if r.Sequence == 0 {
		return fail("Sequence", "0 is not a sequence (they start at 1)")
	}
	if r.Sequence > math.MaxInt64 {
		return fail("Sequence", "%d overflows the stored range (at most %d)", r.Sequence, int64(math.MaxInt64))
	}
	switch r.Kind {
	case KindSnapshot:
	case KindDelta, KindHeartbeat:
		if r.BaseSequence == 0 {
			return fail("BaseSequence", "0 names no report: a %s needs the report it applies to", r.Kind)
		}
		if r.BaseSequence >= r.Sequence {
			return fail("BaseSequence", "%d is not before the report's sequence %d", r.BaseSequence, r.Sequence)
		}
	default:
		return fail("Kind", "unknown report kind %d", r.Kind)
	}
	switch {
	case r.TakenAt.IsZero():
		return fail("TakenAt", "missing")
	case r.TakenAt.Before(Earliest):
		return fail("TakenAt", "%s is before %s", r.TakenAt.UTC().Format(time.RFC3339), Earliest.Format(time.RFC3339))
	}
	if err := checkLostBefore(&r); err != nil {
		return Report{}, nil, err
	}
	out := Report{
		Sequence:     r.Sequence,
		Kind:         r.Kind,
		TakenAt:      pgTime(r.TakenAt),
		BaseSequence: r.BaseSequence,
		LostBefore:   r.LostBefore,
		Part:         r.Part,
		PartsTotal:   r.PartsTotal,
	}
	// own is the report's time by the host's clock, the clock of its other
	// times (boot, starts): their sanity bounds are relative to it. obs is
	// the time the store keeps, corrected when the host's clock was too far
	// ahead (clockskew.go): a future TakenAt would freeze last_seen, which
	// never moves back.
	own := out.TakenAt
	if r.TakenAt.After(now.Add(MaxClockSkew)) {
		out.TakenAt, out.stamped = aheadTakenAt(own, r.ClockSkew, now, prev), own
		z.note("TakenAt", "%s", aheadNote(own, out.TakenAt, r.ClockSkew, now))
	}
	obs := out.TakenAt
	if r.Kind == KindHeartbeat {
		// A heartbeat carries nothing else; anything else given is ignored.
		out.CollectionErrors = cleanErrors(z, r.CollectionErrors)
		return out, z.notes, nil
	}
	if r.Host != nil {
		h := *r.Host
		smbios, _ := identity.CanonicalSMBIOSUUID(h.SMBIOSUUID) // malformed: none
		// A clone's host is named by its clone host key (identity.BoundHost).
		if h.MachineGUID != "" && !identity.BoundHost(machineGUID, identity.NormalizeMachineGUID(h.MachineGUID), smbios) {
			return fail("Host.MachineGUID", "%q differs from the host the batch is for (%q)", h.MachineGUID, machineGUID)
		}
		h.MachineGUID = machineGUID
		h.Hostname = z.str("Host.Hostname", h.Hostname)
		h.Domain = z.str("Host.Domain", h.Domain)
		h.OSCaption = z.str("Host.OSCaption", h.OSCaption)
		h.OSVersion = z.str("Host.OSVersion", h.OSVersion)
		h.OSBuild = z.str("Host.OSBuild", h.OSBuild)
		h.AgentVersion = z.str("Host.AgentVersion", h.AgentVersion)
		h.LastBootTime = z.optTime("Host.LastBootTime", h.LastBootTime, own.Add(BootJitter))
		out.Host = &h
	}
	seen := make(map[string]bool, len(r.LogonSessions))
	out.LogonSessions = make([]LogonSession, 0, len(r.LogonSessions))
	for i, ls := range r.LogonSessions {
		z.at("LogonSessions", i)
		id, changes := cleanString(ls.LogonID, limits.MaxKeyBytes)
		switch {
		case ls.LogonID == "":
			z.note("LogonID", "empty: session dropped")
			continue
		case len(changes) > 0:
			z.note("LogonID", "%q is not a storable key (%s): session dropped", ls.LogonID, strings.Join(changes, ", "))
			continue
		case seen[id]:
			z.note("LogonID", "%q appears twice: later copy dropped", id)
			continue
		}
		seen[id] = true
		c := LogonSession{
			LogonID:               id,
			LogonType:             ls.LogonType,
			AuthenticationPackage: z.str("AuthenticationPackage", ls.AuthenticationPackage),
			Caption:               z.str("Caption", ls.Caption),
			Description:           z.str("Description", ls.Description),
			Name:                  z.str("Name", ls.Name),
			Status:                z.str("Status", ls.Status),
			StartTime:             z.optTime("StartTime", ls.StartTime, own.Add(MaxClockSkew)),
			InstallDate:           z.optTime("InstallDate", ls.InstallDate, own.Add(MaxClockSkew)),
		}
		if c.StartTime.After(obs) {
			z.note("StartTime", "%s is after the observation: set to the observation time %s",
				c.StartTime.Format(time.RFC3339Nano), obs.Format(time.RFC3339Nano))
			c.StartTime = obs
		}
		c.LingeringSince = z.optTime("LingeringSince", ls.LingeringSince, own.Add(MaxClockSkew))
		if c.LingeringSince.After(obs) {
			z.note("LingeringSince", "%s is after the observation: set to the observation time %s",
				c.LingeringSince.Format(time.RFC3339Nano), obs.Format(time.RFC3339Nano))
			c.LingeringSince = obs
		}
		if ls.Account != nil {
			a := Account{
				Domain: z.str("Account.Domain", ls.Account.Domain),
				Name:   z.str("Account.Name", ls.Account.Name),
				SID:    z.str("Account.SID", ls.Account.SID),
			}
			if a.Name == "" {
				z.note("Account.Name", "empty: session stored without account")
			} else {
				c.Account = &a
			}
		}
		out.LogonSessions = append(out.LogonSessions, c)
	}
	out.ServerSessions = make([]ServerSession, 0, len(r.ServerSessions))
	for i, ss := range r.ServerSessions {
		z.at("ServerSessions", i)
		c := ss
		c.ComputerName = z.str("ComputerName", ss.ComputerName)
		c.UserName = z.str("UserName", ss.UserName)
		c.ClientType = z.str("ClientType", ss.ClientType)
		c.TransportName = z.str("TransportName", ss.TransportName)
		c.Caption = z.str("Caption", ss.Caption)
		c.Description = z.str("Description", ss.Description)
		c.Name = z.str("Name", ss.Name)
		c.Status = z.str("Status", ss.Status)
		c.InstallDate = z.optTime("InstallDate", ss.InstallDate, own.Add(MaxClockSkew))
		if ss.ActiveTime != nil && obs.Add(-time.Duration(*ss.ActiveTime)*time.Second).Before(Earliest) {
			z.note("ActiveTime", "%d s puts the start before %s: treated as absent", *ss.ActiveTime, Earliest.Format(time.RFC3339))
			c.ActiveTime = nil
		}
		out.ServerSessions = append(out.ServerSessions, c)
	}
	for i, id := range r.EndedLogonIDs {
		z.at("EndedLogonIDs", i)
		c, changes := cleanString(id, limits.MaxKeyBytes)
		if id == "" || len(changes) > 0 {
			z.note("", "%q is not a storable key: ignored", id)
			continue
		}
		out.EndedLogonIDs = append(out.EndedLogonIDs, c)
	}
	for i, k := range r.EndedServerSessions {
		z.at("EndedServerSessions", i)
		out.EndedServerSessions = append(out.EndedServerSessions, ServerSessionKey{
			ComputerName: z.str("ComputerName", k.ComputerName),
			UserName:     z.str("UserName", k.UserName),
		})
	}
	out.CollectionErrors = cleanErrors(z, r.CollectionErrors)
	return out, z.notes, nil
}

// cleanErrors cleans a report's collection errors; it leaves z at the
// report's level.
func cleanErrors(z *sanitizer, errs []CollectionError) []CollectionError {
	var out []CollectionError
	for i, e := range errs {
		z.at("CollectionErrors", i)
		out = append(out, CollectionError{
			Class:     z.str("Class", e.Class),
			Message:   z.str("Message", e.Message),
			ValueOnly: e.ValueOnly,
		})
	}
	z.at("", 0)
	return out
}

// incomplete reports whether r's list of class is incomplete.
func (r *Report) incomplete(class string) bool {
	for _, e := range r.CollectionErrors {
		if !e.ValueOnly && strings.EqualFold(e.Class, class) {
			return true
		}
	}
	return false
}
