package store

import (
	"context"
	"testing"
	"time"
)

// TestLingeringSinceKeptAndShown: LogonSession.LingeringSince is stored on
// insert, set and cleared on the open interval as reports say (full
// snapshots and deltas), left alone by a delta that does not carry the
// session, kept when the interval closes, and shown by the queries.
func TestLingeringSinceKeptAndShown(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	boot := at(-24 * time.Hour)
	live := func() LogonSession { return logon("1001", at(-time.Hour), "CONTOSO", "alice") }
	lingering := func(since time.Time) LogonSession {
		ls := live()
		ls.LingeringSince = since
		return ls
	}
	bob := logon("1002", at(-30*time.Minute), "CONTOSO", "bob")
	bob.LingeringSince = at(-10 * time.Minute) // lingering when first reported

	open := func(step string) map[string]time.Time {
		t.Helper()
		p, err := s.OpenSessions(ctx, OpenSessionsQuery{})
		if err != nil {
			t.Fatalf("%s: OpenSessions: %v", step, err)
		}
		got := map[string]time.Time{}
		for _, l := range p.Items {
			got[l.Session.LogonID] = l.Session.LingeringSince
		}
		return got
	}
	check := func(step string, want map[string]time.Time) {
		t.Helper()
		got := open(step)
		if len(got) != len(want) {
			t.Fatalf("%s: open sessions %v, want %v", step, got, want)
		}
		for id, w := range want {
			if g, ok := got[id]; !ok || !g.Equal(w) {
				t.Fatalf("%s: LogonId %s lingering since %v, want %v", step, id, g, w)
			}
		}
	}

	mustIngest(t, s, "agent-1", full(1, at(0), boot, []LogonSession{live(), bob}, nil))
	check("inserted", map[string]time.Time{"1001": {}, "1002": at(-10 * time.Minute)})

	mustIngest(t, s, "agent-1", full(2, at(time.Minute), boot, []LogonSession{lingering(at(time.Minute)), bob}, nil))
	check("set on the open interval", map[string]time.Time{"1001": at(time.Minute), "1002": at(-10 * time.Minute)})

	d := Report{Sequence: 3, Kind: KindDelta, BaseSequence: 2, TakenAt: at(2 * time.Minute)}
	mustIngest(t, s, "agent-1", d)
	check("a delta without the session", map[string]time.Time{"1001": at(time.Minute), "1002": at(-10 * time.Minute)})

	d = Report{Sequence: 4, Kind: KindDelta, BaseSequence: 3, TakenAt: at(3 * time.Minute), LogonSessions: []LogonSession{live()}}
	mustIngest(t, s, "agent-1", d)
	check("cleared by a delta", map[string]time.Time{"1001": {}, "1002": at(-10 * time.Minute)})

	mustIngest(t, s, "agent-1", full(5, at(4*time.Minute), boot, []LogonSession{lingering(at(4 * time.Minute)), bob}, nil))
	mustIngest(t, s, "agent-1", full(6, at(5*time.Minute), boot, []LogonSession{bob}, nil))
	check("alice closed", map[string]time.Time{"1002": at(-10 * time.Minute)})

	p, err := s.LogonSessions(ctx, LogonSessionsQuery{Account: `contoso\alice`, StartTime: at(-2 * time.Hour), EndTime: at(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 || p.Items[0].End.Open || !p.Items[0].Session.LingeringSince.Equal(at(4*time.Minute)) {
		t.Fatalf("closed interval of alice: %+v, want one closed, lingering since +4m", p.Items)
	}
	w, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: "ws01", At: at(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Logon) != 1 || w.Logon[0].Session.LogonID != "1002" || !w.Logon[0].Session.LingeringSince.Equal(at(-10*time.Minute)) {
		t.Fatalf("WhoWasOn: %+v, want bob lingering since -10m", w.Logon)
	}
}
