package fleet

import (
	"context"
	"strings"
	"testing"
	"time"
)

// fakeReader answers WhoWasOn from a fixed list.
type fakeReader []Observed

func (r fakeReader) WhoWasOn(_ context.Context, _ string, t time.Time) ([]Observed, error) {
	var out []Observed
	for _, o := range r {
		if !o.Start.After(t) && (o.Open || o.EndBefore.After(t)) {
			out = append(out, o)
		}
	}
	return out, nil
}

// TestCompareFindsEachKindOfMismatch: Compare reports a missing interval,
// an extra one, a moved start and an end outside the bounds, and nothing
// for a correct store.
func TestCompareFindsEachKindOfMismatch(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	h := &HostTruth{Hostname: "FS01", MachineGUID: "g", Intervals: []*Interval{
		{Kind: Logon, Key: "0x1", Start: at(-5), FirstSeen: at(0), LastPresent: at(10), FirstAbsent: at(11)},
		{Kind: Server, Key: `WS1\alice`, Start: at(1), FirstSeen: at(2), LastPresent: at(20)},
	}}
	good := fakeReader{
		{Kind: Logon, Key: "0x1", Start: at(-5), LastSeen: at(10), EndBefore: at(11)},
		{Kind: Server, Key: `WS1\alice`, Start: at(1), Open: true, LastSeen: at(20)},
	}
	for _, tc := range []struct {
		name   string
		r      fakeReader
		nWrong int
		what   string // in one of the mismatches
	}{
		{"correct", good, 0, ""},
		{"missing", good[1:], 2, "missing: logon 0x1"}, // present at both moments asked
		{"extra", append(good[:2:2], Observed{Kind: Logon, Key: "0x9", Start: at(-1), Open: true}), 2, "extra: the store has logon 0x9"},
		// extra at both moments, and its start differs at the second
		{"start moved", fakeReader{good[0], {Kind: Server, Key: `WS1\alice`, Start: at(0), Open: true}}, 3, "start differs: server WS1\\alice"},
		{"end late", fakeReader{{Kind: Logon, Key: "0x1", Start: at(-5), LastSeen: at(10), EndBefore: at(12)}, good[1]}, 1, "end outside the bounds"},
		{"still open", fakeReader{{Kind: Logon, Key: "0x1", Start: at(-5), Open: true}, good[1]}, 1, "the store holds it open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Compare(context.Background(), tc.r, []*HostTruth{h})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Mismatches) != tc.nWrong {
				t.Errorf("%d mismatches, want %d: %v", len(c.Mismatches), tc.nWrong, c.Mismatches)
			}
			found := tc.what == ""
			for _, m := range c.Mismatches {
				found = found || strings.Contains(m.What, tc.what)
			}
			if !found {
				t.Errorf("no mismatch says %q: %v", tc.what, c.Mismatches)
			}
		})
	}
}
