package store

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/limits"
)

var now = t0.Add(30 * 24 * time.Hour)

// Reports that cannot be stored meaningfully are refused, naming the field.
func TestCleanReportRejects(t *testing.T) {
	ok := full(5, at(0), boot1, nil, nil)
	tests := []struct {
		name   string
		edit   func(r *Report)
		field  string
		reason string
	}{
		{"sequence zero", func(r *Report) { r.Sequence = 0 }, "Sequence", "0 is not"},
		{"sequence overflows bigint", func(r *Report) { r.Sequence = math.MaxInt64 + 1 }, "Sequence", "overflows"},
		{"unknown kind", func(r *Report) { r.Kind = 9 }, "Kind", "unknown"},
		{"observed in 1601", func(r *Report) { r.TakenAt = time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC) }, "TakenAt", "before"},
		{"observed missing", func(r *Report) { r.TakenAt = time.Time{} }, "TakenAt", "missing"},
		{"delta base not before it", func(r *Report) { r.Kind, r.BaseSequence = KindDelta, 5 }, "BaseSequence", "not before"},
		{"heartbeat base zero", func(r *Report) { r.Kind, r.BaseSequence = KindHeartbeat, 0 }, "BaseSequence", "names no report"},
		{"other host", func(r *Report) { r.Host.MachineGUID = "00000000-0000-0000-0000-000000000000" }, "Host.MachineGUID", "differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			h := *ok.Host
			r.Host = &h
			tt.edit(&r)
			_, _, err := cleanReport(r, guid, now)
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("err = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Reason, tt.reason) {
				t.Errorf("err = %v; want field %s, reason containing %q", err, tt.field, tt.reason)
			}
		})
	}
}

// Values that can be repaired are repaired, and each change is noted.
func TestCleanReportSanitizes(t *testing.T) {
	huge := strings.Repeat("é", limits.MaxStringBytes) // 2 bytes each
	tests := []struct {
		name  string
		ls    LogonSession
		ss    *ServerSession
		host  *Host
		check func(t *testing.T, r Report)
		field string
		note  string
	}{
		{name: "NUL in a string", ls: LogonSession{LogonID: "1", Caption: "a\x00b"},
			check: func(t *testing.T, r Report) { eq(t, r.LogonSessions[0].Caption, "ab") },
			field: "LogonSessions[0].Caption", note: "removed 1 NUL"},
		{name: "invalid UTF-8", ls: LogonSession{LogonID: "1", AuthenticationPackage: "NTLM\xff"},
			check: func(t *testing.T, r Report) { eq(t, r.LogonSessions[0].AuthenticationPackage, "NTLM\uFFFD") },
			field: "LogonSessions[0].AuthenticationPackage", note: "invalid UTF-8"},
		{name: "huge string", ls: LogonSession{LogonID: "1", Description: huge},
			check: func(t *testing.T, r Report) {
				d := r.LogonSessions[0].Description
				if len(d) > limits.MaxStringBytes || !strings.HasPrefix(huge, d) {
					t.Errorf("truncated to %d bytes, not a rune-aligned prefix", len(d))
				}
			},
			field: "LogonSessions[0].Description", note: "truncated from 2048 to 1024"},
		{name: "StartTime in 1601", ls: LogonSession{LogonID: "1", StartTime: time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)},
			check: func(t *testing.T, r Report) {
				if !r.LogonSessions[0].StartTime.IsZero() {
					t.Error("absurd StartTime kept")
				}
			},
			field: "LogonSessions[0].StartTime", note: "absurd time"},
		{name: "StartTime in 9999", ls: LogonSession{LogonID: "1", StartTime: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
			field: "LogonSessions[0].StartTime", note: "absurd time"},
		{name: "StartTime after the observation (end before start)", ls: LogonSession{LogonID: "1", StartTime: at(time.Minute)},
			check: func(t *testing.T, r Report) { eq(t, r.LogonSessions[0].StartTime.String(), at(0).String()) },
			field: "LogonSessions[0].StartTime", note: "after the observation"},
		{name: "empty LogonID", ls: LogonSession{LogonID: ""},
			check: func(t *testing.T, r Report) { eq(t, len(r.LogonSessions), 0) },
			field: "LogonSessions[0].LogonID", note: "session dropped"},
		{name: "LogonID with NUL", ls: LogonSession{LogonID: "99\x009"},
			check: func(t *testing.T, r Report) { eq(t, len(r.LogonSessions), 0) },
			field: "LogonSessions[0].LogonID", note: "not a storable key"},
		{name: "account without name", ls: LogonSession{LogonID: "1", Account: &Account{Domain: "X"}},
			check: func(t *testing.T, r Report) {
				if r.LogonSessions[0].Account != nil {
					t.Error("empty account kept")
				}
			},
			field: "LogonSessions[0].Account.Name", note: "without account"},
		{name: "ActiveTime reaching before 1990", ls: LogonSession{LogonID: "1"},
			ss: &ServerSession{ComputerName: "PC", UserName: "u", ActiveTime: u32(math.MaxUint32)},
			check: func(t *testing.T, r Report) {
				if r.ServerSessions[0].ActiveTime != nil {
					t.Error("absurd ActiveTime kept")
				}
			},
			field: "ServerSessions[0].ActiveTime", note: "treated as absent"},
		{name: "boot in 1601", ls: LogonSession{LogonID: "1"},
			host:  &Host{LastBootTime: time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)},
			check: func(t *testing.T, r Report) { eq(t, r.Host.LastBootTime.IsZero(), true) },
			field: "Host.LastBootTime", note: "absurd time"},
		{name: "boot after the observation", ls: LogonSession{LogonID: "1"},
			host:  &Host{LastBootTime: at(time.Hour)},
			field: "Host.LastBootTime", note: "absurd time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Report{Sequence: 1, Kind: KindSnapshot, TakenAt: at(0), Host: tt.host, LogonSessions: []LogonSession{tt.ls}}
			if tt.ss != nil {
				r.ServerSessions = []ServerSession{*tt.ss}
			}
			c, notes, err := cleanReport(r, guid, now)
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
			for _, n := range notes {
				if n.Field == tt.field && strings.Contains(n.Change, tt.note) && n.Sequence == 1 {
					return
				}
			}
			t.Errorf("no note %s: %q in %+v", tt.field, tt.note, notes)
		})
	}
}

func eq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

// Through the store: one bad report is rejected by field without failing the
// batch; sanitized values are stored and their notes recorded.
func TestIngestBadInput(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	bad := logon("1001", at(-time.Hour), "CON\x00TOSO", "al\xffice")
	bad.Caption = strings.Repeat("x", 5000)
	res, err := s.Ingest(ctx, "agent-1", guid, []Report{
		full(1, at(0), boot1, []LogonSession{bad}, []ServerSession{server("PC\x00", "u", 10)}),
		{Sequence: 2, Kind: KindSnapshot, TakenAt: time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)},
		full(3, at(time.Minute), boot1, []LogonSession{bad}, []ServerSession{server("PC\x00", "u", 70)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Sequence != 2 || !strings.Contains(res.Rejected[0].Err.Error(), "TakenAt") {
		t.Fatalf("Rejected = %+v, want report 2 for TakenAt", res.Rejected)
	}
	if len(res.Applied) != 2 || res.Acknowledged != 3 {
		t.Fatalf("Applied = %v, Acknowledged = %d", res.Applied, res.Acknowledged)
	}
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), Account: "CONTOSO\\al\uFFFDice"},
	})
	assertRows(t, "server sessions", serverRows(t, s), []row{{Key: "PC/u", Start: at(-10 * time.Second)}})
	var notes int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM ingest_note WHERE agent_id = 'agent-1' AND sequence IN (1, 3)`).Scan(&notes); err != nil {
		t.Fatal(err)
	}
	if notes != len(res.Sanitized) || notes < 8 {
		t.Errorf("%d notes stored, %d returned; want the same, at least 8", notes, len(res.Sanitized))
	}
	// Call parameters are checked too.
	for _, tc := range []struct{ agent, guid, field string }{
		{"", guid, "agentID"}, {"a\x00", guid, "agentID"}, {"agent", "", "machineGUID"}, {"agent", strings.Repeat("g", 200), "machineGUID"},
	} {
		_, err := s.Ingest(ctx, tc.agent, tc.guid, nil)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("Ingest(%q, %q): err = %v, want a FieldError for %s", tc.agent, tc.guid, err, tc.field)
		}
	}
}

// A note names its element by list and index, and fields after a list are
// named at the report's level again.
func TestCleanReportNoteFields(t *testing.T) {
	r := Report{Sequence: 1, Kind: KindSnapshot, TakenAt: at(0)}
	r.LogonSessions = []LogonSession{{LogonID: "1"}, {LogonID: "2", Status: "o\x00k"}}
	r.ServerSessions = []ServerSession{{ComputerName: "PC", UserName: "u"}, {ComputerName: "PC\x00", UserName: "u"}}
	r.EndedLogonIDs = []string{"3", ""}
	r.EndedServerSessions = []ServerSessionKey{{ComputerName: "A", UserName: "b\xff"}}
	r.CollectionErrors = []CollectionError{{Class: ClassServerSession, Message: "m\x00"}}
	_, notes, err := cleanReport(r, guid, now)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range notes {
		got = append(got, n.Field)
	}
	want := "LogonSessions[1].Status,ServerSessions[1].ComputerName,EndedLogonIDs[1],EndedServerSessions[0].UserName,CollectionErrors[0].Message"
	if strings.Join(got, ",") != want {
		t.Errorf("noted fields %v, want %s", got, want)
	}
}
