package store

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// aheadTakenAt: a TakenAt far ahead is corrected by the batch's measured
// skew, never placed after its arrival, and kept after the report before
// it.
func TestAheadTakenAt(t *testing.T) {
	n := now
	tests := []struct {
		name       string
		stamped    time.Time
		skew       time.Duration
		prev, want time.Time
	}{
		{"corrected by the skew", n.Add(3*time.Hour - 2*time.Minute), 3 * time.Hour, time.Time{}, n.Add(-2 * time.Minute)},
		{"no skew measured: its arrival", n.Add(3 * time.Hour), 0, time.Time{}, n},
		{"skew too small to bring it back: its arrival", n.Add(3 * time.Hour), 30 * time.Minute, time.Time{}, n},
		{"host behind when it sent: its arrival", n.Add(3 * time.Hour), -10 * time.Minute, time.Time{}, n},
		{"after the report before it", n.Add(3*time.Hour - 2*time.Minute), 3 * time.Hour, n.Add(-time.Minute), n.Add(-time.Minute + time.Microsecond)},
		{"after a report placed at the arrival", n.Add(4 * time.Hour), 0, n, n.Add(time.Microsecond)},
		{"an absurd skew: its arrival", n.Add(2 * time.Hour), 100 * 365 * 24 * time.Hour, time.Time{}, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aheadTakenAt(tt.stamped, tt.skew, n, tt.prev); !got.Equal(tt.want) {
				t.Errorf("aheadTakenAt(%v, %v, prev %v) = %v, want %v", tt.stamped.Sub(n), tt.skew, tt.prev, got.Sub(n), tt.want.Sub(n))
			}
		})
	}
}

// A report stamped more than MaxClockSkew ahead is taken (it was refused,
// which blocked the host's delivery for good), with a corrected TakenAt
// and a note; its other times, by the host's clock, are bounded by its own
// time (the boot) or by the kept one (a start).
func TestCleanReportClockAhead(t *testing.T) {
	own := now.Add(3*time.Hour - 2*time.Minute) // the host's clock, 3 h ahead
	r := full(7, own, own.Add(-time.Hour), []LogonSession{logon("1001", own.Add(-30*time.Minute), "CONTOSO", "alice")},
		[]ServerSession{server("PC1", "bob", 600)})
	r.ClockSkew = 3 * time.Hour
	c, notes, err := cleanReport(r, guid, now)
	if err != nil {
		t.Fatalf("a report 3 h ahead was refused: %v", err)
	}
	if want := now.Add(-2 * time.Minute); !c.TakenAt.Equal(want) {
		t.Errorf("TakenAt %v, want %v (corrected by the skew)", c.TakenAt, want)
	}
	if !c.stampedTakenAt().Equal(own) {
		t.Errorf("stamped TakenAt %v, want %v", c.stampedTakenAt(), own)
	}
	if !c.Host.LastBootTime.Equal(own.Add(-time.Hour)) {
		t.Errorf("boot %v, want %v: a boot before the report's own time is no absurd time", c.Host.LastBootTime, own.Add(-time.Hour))
	}
	if !c.LogonSessions[0].StartTime.Equal(c.TakenAt) {
		t.Errorf("start %v, want the kept observation %v (no start after it)", c.LogonSessions[0].StartTime, c.TakenAt)
	}
	var fields []string
	for _, n := range notes {
		fields = append(fields, n.Field)
		if n.Field == "TakenAt" && !strings.Contains(n.Change, "3h0m0s ahead when it sent the batch") {
			t.Errorf("TakenAt note %q does not give the measured skew", n.Change)
		}
	}
	if strings.Join(fields, ",") != "TakenAt,LogonSessions[0].StartTime" {
		t.Errorf("noted %v, want TakenAt and the start", fields)
	}
	// Year 9999, nothing measured: placed at the arrival.
	r = full(8, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), boot1, nil, nil)
	if c, notes, err := cleanReport(r, guid, now); err != nil || !c.TakenAt.Equal(now) || len(notes) != 1 {
		t.Errorf("a report of 9999: %v, %v, %v; want TakenAt %v and one note", c.TakenAt, notes, err, now)
	}
	// A heartbeat so far ahead is left to Ingest, which stores its note.
	if c, notes, err := cleanReport(Report{Sequence: 9, Kind: KindHeartbeat, BaseSequence: 8, TakenAt: now.Add(2 * time.Hour)}, guid, now); err != nil ||
		!c.TakenAt.Equal(now) || len(notes) != 1 {
		t.Errorf("a heartbeat 2 h ahead: %v, %v, %v", c.TakenAt, notes, err)
	}
}

// TestIngestClockAhead: a host whose clock is 3 h fast delivers a backlog
// (it used to be refused, and stayed at the head of the spool for good):
// the reports are stored at the times the measured skew gives, in order and
// live, with notes; sent again after a lost answer they are duplicates, not
// "another report at the mark"; once the host's clock is fixed, correctly
// stamped reports apply live, not late.
func TestIngestClockAhead(t *testing.T) {
	url := storetestNewDatabase(t)
	ctx := context.Background()
	var clock atomic.Int64
	set := func(tm time.Time) { clock.Store(tm.UnixNano()) }
	c0 := t0
	set(c0)
	s, err := Open(ctx, url, WithClock(func() time.Time { return time.Unix(0, clock.Load()).UTC() }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.EnsurePartitionsBetween(ctx, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	const fast = 3 * time.Hour
	host := func(d time.Duration) time.Time { return c0.Add(d + fast) } // the host's clock
	alice := logon("1001", host(-25*time.Minute), "CONTOSO", "alice")
	backlog := func(skew time.Duration) []Report {
		rs := []Report{
			full(1, host(-20*time.Minute), host(-48*time.Hour), []LogonSession{alice}, []ServerSession{server("PC1", "bob", 300)}),
			{Sequence: 2, Kind: KindDelta, BaseSequence: 1, TakenAt: host(-10 * time.Minute), EndedLogonIDs: []string{"1001"}},
			{Sequence: 3, Kind: KindHeartbeat, BaseSequence: 2, TakenAt: host(-time.Minute)},
		}
		for i := range rs {
			rs[i].ClockSkew = skew
		}
		return rs
	}
	res := mustIngest(t, s, "agent-1", backlog(fast)...)
	if len(res.Applied) != 3 || len(res.Late) != 0 || res.Acknowledged != 3 {
		t.Fatalf("backlog 3 h ahead: applied %v, late %v, acknowledged %d; want 1-3 applied live", res.Applied, res.Late, res.Acknowledged)
	}
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		// Its start, by the host's clock, is after the corrected
		// observation: the observation is the start.
		{Key: bootKey(host(-48*time.Hour), "1001"), Start: c0.Add(-20 * time.Minute), LastSeen: c0.Add(-20 * time.Minute),
			EndBefore: c0.Add(-10 * time.Minute), Account: `CONTOSO\alice`},
	})
	// A server session's start is the observation minus ActiveTime: right.
	assertRows(t, "server sessions", serverRows(t, s), []row{{Key: "PC1/bob", Start: c0.Add(-25 * time.Minute)}})
	if got := hostState(t, s); !got.LastSeen.Equal(c0.Add(-time.Minute)) {
		t.Errorf("host last_seen %v, want %v", got.LastSeen, c0.Add(-time.Minute))
	}
	var notes int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM ingest_note WHERE field = 'TakenAt' AND note LIKE '%3h0m0s ahead when it sent the batch%'`).Scan(&notes); err != nil || notes != 3 {
		t.Errorf("%d TakenAt notes stored (%v), want 3", notes, err)
	}

	// The answer was lost: the agent sends the batch again a minute later,
	// its skew measured a little differently. Duplicates, no resync.
	set(c0.Add(time.Minute))
	res, err = s.Ingest(ctx, "agent-1", guid, backlog(fast+200*time.Millisecond))
	if err != nil || len(res.Duplicates) != 3 || res.Acknowledged != 3 {
		t.Fatalf("the batch sent again: %+v, %v; want three duplicates", res, err)
	}

	// The host's clock is fixed: correctly stamped reports are live.
	set(c0.Add(2 * time.Minute))
	res = mustIngest(t, s, "agent-1", Report{Sequence: 4, Kind: KindHeartbeat, BaseSequence: 2, TakenAt: c0.Add(2 * time.Minute)})
	if len(res.Late) != 0 || !hostState(t, s).LastSeen.Equal(c0.Add(2*time.Minute)) {
		t.Errorf("first report after the clock was fixed: late %v, host %+v; want live", res.Late, hostState(t, s))
	}

	// Reports stamped ahead but sent after the clock was fixed (no skew
	// measured): placed at their arrival, in order, live.
	set(c0.Add(10 * time.Minute))
	res = mustIngest(t, s, "agent-1",
		Report{Sequence: 5, Kind: KindDelta, BaseSequence: 2, TakenAt: host(3 * time.Minute), LogonSessions: []LogonSession{logon("1002", time.Time{}, "CONTOSO", "carol")}},
		Report{Sequence: 6, Kind: KindHeartbeat, BaseSequence: 5, TakenAt: host(4 * time.Minute)})
	if len(res.Late) != 0 || len(res.Applied) != 2 {
		t.Fatalf("reports ahead without a skew: applied %v, late %v", res.Applied, res.Late)
	}
	if got := hostState(t, s).LastSeen; !got.Equal(c0.Add(10*time.Minute + time.Microsecond)) {
		t.Errorf("host last_seen %v, want the arrival plus a microsecond, %v", got, c0.Add(10*time.Minute+time.Microsecond))
	}
	set(c0.Add(11 * time.Minute))
	if res := mustIngest(t, s, "agent-1", Report{Sequence: 7, Kind: KindHeartbeat, BaseSequence: 5, TakenAt: c0.Add(11 * time.Minute)}); len(res.Late) != 0 {
		t.Errorf("a correct report after them is late: %v", res.Late)
	}
}

// RecordClockSkew writes a host's skew when it is new, changed by a second
// or more, or ten minutes old; Hosts lists it.
func TestRecordClockSkew(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	if ok, err := s.RecordClockSkew(ctx, guid, time.Hour, now); ok || err != nil {
		t.Errorf("unknown host: %v, %v; want nothing written, no error", ok, err)
	}
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, nil, nil))
	skew := func() (time.Duration, time.Time) {
		t.Helper()
		p, err := s.Hosts(ctx, HostsQuery{})
		if err != nil || len(p.Items) != 1 {
			t.Fatalf("Hosts: %v, %v", p.Items, err)
		}
		return p.Items[0].ClockSkew, p.Items[0].ClockSkewAt
	}
	if d, at := skew(); d != 0 || !at.IsZero() {
		t.Errorf("never measured: %v at %v, want none", d, at)
	}
	m0 := now
	for i, tc := range []struct {
		skew    time.Duration
		at      time.Time
		written bool
		want    time.Duration
		wantAt  time.Time
	}{
		{3*time.Hour + 1500*time.Microsecond, m0, true, 3*time.Hour + time.Millisecond, m0},
		{3*time.Hour + 400*time.Millisecond, m0.Add(time.Minute), false, 3*time.Hour + time.Millisecond, m0},
		{3*time.Hour + 400*time.Millisecond, m0.Add(ClockSkewRefresh), true, 3*time.Hour + 400*time.Millisecond, m0.Add(ClockSkewRefresh)},
		{-2 * time.Second, m0.Add(ClockSkewRefresh + time.Minute), true, -2 * time.Second, m0.Add(ClockSkewRefresh + time.Minute)},
		{5 * time.Hour, m0.Add(time.Minute), false, -2 * time.Second, m0.Add(ClockSkewRefresh + time.Minute)},
	} {
		ok, err := s.RecordClockSkew(ctx, strings.ToUpper(guid), tc.skew, tc.at)
		if err != nil || ok != tc.written {
			t.Errorf("step %d: RecordClockSkew(%v, %v) = %v, %v; want %v", i, tc.skew, tc.at.Sub(m0), ok, err, tc.written)
		}
		if d, at := skew(); d != tc.want || !at.Equal(tc.wantAt) {
			t.Errorf("step %d: Hosts says %v at %v, want %v at %v", i, d, at.Sub(m0), tc.want, tc.wantAt.Sub(m0))
		}
	}
	var fe *FieldError
	if _, err := s.RecordClockSkew(ctx, "not a guid", 0, now); !errors.As(err, &fe) {
		t.Errorf("a bad GUID: %v, want a *FieldError", err)
	}
}
