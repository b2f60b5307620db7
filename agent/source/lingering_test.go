package source

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

func TestLingeringType(t *testing.T) {
	for _, tt := range []struct {
		raw  *uint32
		want bool
	}{
		{nil, false}, {new(uint32(0)), false}, {new(uint32(2)), true}, {new(uint32(3)), false},
		{new(uint32(4)), false}, {new(uint32(5)), false}, {new(uint32(7)), false}, {new(uint32(9)), false},
		{new(uint32(10)), true}, {new(uint32(11)), true}, {new(uint32(12)), true}, {new(uint32(13)), true},
		{new(uint32(14)), false},
	} {
		if got := LingeringType(tt.raw); got != tt.want {
			t.Errorf("LingeringType(%v) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestCountSessionProcesses(t *testing.T) {
	counts, bad := CountSessionProcesses([]SessionProcessRow{
		{Antecedent: `\\.\root\cimv2:Win32_LogonSession.LogonId="1001"`, Dependent: `\\.\root\cimv2:Win32_Process.Handle="4"`},
		{Antecedent: `\\.\root\cimv2:Win32_LogonSession.LogonId="1001"`, Dependent: `\\.\root\cimv2:Win32_Process.Handle="8"`},
		{Antecedent: `\\WS01\root\cimv2:Win32_LogonSession.LogonId="1002"`, Dependent: `\\.\root\cimv2:Win32_Process.Handle="9"`},
		{Antecedent: `\\.\root\cimv2:Win32_Process.Handle="1"`},
		{Antecedent: `not a path`},
		{Antecedent: `\\.\root\cimv2:Win32_LogonSession.LogonId=""`},
	})
	if counts["1001"] != 2 || counts["1002"] != 1 || len(counts) != 2 || bad != 3 {
		t.Fatalf("counts %v bad %d, want 1001:2 1002:1 and 3 bad", counts, bad)
	}
}

// TestLingeringRule runs passes over one session and checks its
// lingering_since after each.
func TestLingeringRule(t *testing.T) {
	t0 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	type pass struct {
		at      time.Duration // TakenAt - t0
		present bool          // the session is in the pass
		counts  map[string]int
		want    time.Duration // lingering since t0 + want; -1: not lingering
	}
	none, one, uncounted := map[string]int{}, map[string]int{"7": 1}, map[string]int(nil)
	const live = time.Duration(-1)
	for _, tt := range []struct {
		name   string
		typ    *uint32
		start  time.Duration // StartTime - t0; 1: absent
		passes []pass
	}{
		{"interactive with processes: live", new(uint32(2)), -time.Hour,
			[]pass{{0, true, one, live}, {time.Minute, true, one, live}}},
		{"interactive without process: lingering from the first pass that saw it so, kept while so", new(uint32(2)), -time.Hour,
			[]pass{{0, true, one, live}, {time.Minute, true, none, time.Minute}, {2 * time.Minute, true, none, time.Minute}}},
		{"a process clears it; a later lingering starts again", new(uint32(10)), -time.Hour,
			[]pass{{0, true, none, 0}, {time.Minute, true, one, live}, {2 * time.Minute, true, none, 2 * time.Minute}}},
		{"a pass that could not count keeps the verdict", new(uint32(11)), -time.Hour,
			[]pass{{0, true, uncounted, live}, {time.Minute, true, none, time.Minute}, {2 * time.Minute, true, uncounted, time.Minute}, {3 * time.Minute, true, one, live}, {4 * time.Minute, true, uncounted, live}}},
		{"a session gone is forgotten", new(uint32(12)), -time.Hour,
			[]pass{{0, true, none, 0}, {time.Minute, false, none, live}, {2 * time.Minute, true, none, 2 * time.Minute}}},
		{"younger than LingerGrace: not yet", new(uint32(13)), -time.Minute,
			[]pass{{0, true, none, live}, {time.Minute, true, none, time.Minute}}},
		{"no StartTime: no grace", new(uint32(2)), 1,
			[]pass{{0, true, none, 0}}},
		{"network logon without process: live", new(uint32(3)), -time.Hour,
			[]pass{{0, true, none, live}}},
		{"service logon without process: live", new(uint32(5)), -time.Hour,
			[]pass{{0, true, none, live}}},
		{"no logon type: live", nil, -time.Hour,
			[]pass{{0, true, none, live}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var l Lingering
			for i, p := range tt.passes {
				s := &sessionauditv1.LogonSession{LogonId: "7", LogonTypeRaw: tt.typ,
					LingeringSince: timestamppb.New(t0.Add(-99 * time.Hour))} // stale: Mark sets or clears it
				if tt.start != 1 {
					s.StartTime = timestamppb.New(t0.Add(tt.start))
				}
				var list []*sessionauditv1.LogonSession
				if p.present {
					list = append(list, s)
				}
				l.Mark(list, p.counts, t0.Add(p.at))
				if !p.present {
					continue
				}
				switch {
				case p.want == live && s.LingeringSince != nil:
					t.Fatalf("pass %d: lingering since %v, want live", i, s.LingeringSince.AsTime())
				case p.want != live && (s.LingeringSince == nil || !s.LingeringSince.AsTime().Equal(t0.Add(p.want))):
					t.Fatalf("pass %d: lingering since %v, want %v", i, s.LingeringSince, t0.Add(p.want))
				}
			}
		})
	}
}
