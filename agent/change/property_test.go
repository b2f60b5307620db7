package change_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/agent/source"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// TestReportsReproduceSnapshots is the tracker's property test: over
// simulated hosts of every profile, with reboots and failing classes, the
// reports, applied in order from the first snapshot by a collector-side
// State, reproduce every snapshot, modulo what the Tracker documents:
// classes that failed keep their previous content; server sessions' volatile
// properties are as of their last upsert, and their derived start is within
// the tolerance; an account missing from a snapshot is carried over.
func TestReportsReproduceSnapshots(t *testing.T) {
	const tolerance = 15 * time.Second
	for _, p := range simulate.Profiles {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", p, seed), func(t *testing.T) {
				start := time.Date(2025, 1, 6, 6, 0, 0, 0, time.UTC)
				c := clock.NewManual(start)
				sim, err := simulate.New(simulate.Config{Seed: seed, Profile: p, Clock: c, RebootsPerWeek: 5, FaultRate: 0.03})
				if err != nil {
					t.Fatal(err)
				}
				tr, err := change.NewTracker(change.Options{FirstSequence: 1000, Clock: c, ResyncInterval: 4 * time.Hour, StartTolerance: tolerance})
				if err != nil {
					t.Fatal(err)
				}
				collector := change.NewState()
				rng := rand.New(rand.NewPCG(seed, 99))
				counts := map[string]int{}
				wantSeq := uint64(1000)
				for step := range 1500 {
					c.Advance(time.Duration(30+rng.IntN(270)) * time.Second)
					snap, err := sim.Snapshot(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if rng.IntN(200) == 0 {
						tr.RequestResync()
					}
					r, err := tr.Next(snap)
					if err != nil {
						t.Fatal(err)
					}
					if r.GetSequence() != wantSeq {
						t.Fatalf("step %d: sequence %d, want %d", step, r.GetSequence(), wantSeq)
					}
					wantSeq++
					counts[fmt.Sprintf("%T", r.GetContent())]++
					if err := collector.Apply(r); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					if err := reproduces(collector, snap, tolerance); err != nil {
						t.Fatalf("step %d (%T): %v\nsnapshot: %v", step, r.GetContent(), err, prototext.Format(snap))
					}
				}
				for _, k := range []string{"*sessionauditv1.Report_Snapshot", "*sessionauditv1.Report_Delta", "*sessionauditv1.Report_Heartbeat"} {
					if counts[k] == 0 {
						t.Errorf("no %s in %v", k, counts)
					}
				}
				t.Logf("%v", counts)
			})
		}
	}
}

// reproduces checks that the collector's state matches snap as the Tracker
// documents.
func reproduces(st *change.State, snap *sessionauditv1.Snapshot, tolerance time.Duration) error {
	incomplete := source.IncompleteClasses(snap.GetErrors())
	got := st.Snapshot()
	if !got.GetTakenAt().AsTime().Equal(snap.GetTakenAt().AsTime()) {
		return fmt.Errorf("taken_at %v, want %v", got.GetTakenAt().AsTime(), snap.GetTakenAt().AsTime())
	}
	if !incomplete[source.ClassOperatingSystem] && !incomplete[source.ClassComputerSystem] && !proto.Equal(got.GetHost(), snap.GetHost()) {
		return fmt.Errorf("host %v, want %v", got.GetHost(), snap.GetHost())
	}
	if !incomplete[source.ClassLogonSession] {
		want := snap.GetLogonSessions()
		if len(got.GetLogonSessions()) != len(want) {
			return fmt.Errorf("%d logon sessions, want %d", len(got.GetLogonSessions()), len(want))
		}
		for i, g := range got.GetLogonSessions() {
			w := want[i]
			if w.Account == nil && g.Account != nil {
				if !incomplete[source.ClassLoggedOnUser] {
					return fmt.Errorf("session %s: account %v carried over though Win32_LoggedOnUser did not fail", g.GetLogonId(), g.Account)
				}
				g = proto.Clone(g).(*sessionauditv1.LogonSession)
				g.Account = nil
			}
			if !proto.Equal(g, w) {
				return fmt.Errorf("logon session %d: %v, want %v", i, g, w)
			}
		}
	}
	if !incomplete[source.ClassServerSession] {
		want := snap.GetServerSessions()
		if len(got.GetServerSessions()) != len(want) {
			return fmt.Errorf("%d server sessions, want %d", len(got.GetServerSessions()), len(want))
		}
		starts := st.ServerSessionStarts()
		for i, g := range got.GetServerSessions() {
			w := want[i]
			gs, ws := stable(g), stable(w)
			if !proto.Equal(gs, ws) {
				return fmt.Errorf("server session %d: %v, want %v", i, g, w)
			}
			wantStart, ok := change.ServerSessionStart(snap.GetTakenAt().AsTime(), w)
			gotStart, gotOK := starts[source.KeyOfServerSession(g)]
			if ok != gotOK {
				return fmt.Errorf("server session %d: start known %v, want %v", i, gotOK, ok)
			}
			if d := gotStart.Sub(wantStart); ok && (d > tolerance || d < -tolerance) {
				return fmt.Errorf("server session %d: start %v, want %v ± %v", i, gotStart, wantStart, tolerance)
			}
		}
	}
	return nil
}

func stable(s *sessionauditv1.ServerSession) *sessionauditv1.ServerSession {
	c := proto.Clone(s).(*sessionauditv1.ServerSession)
	c.ActiveTime, c.IdleTime, c.ResourcesOpened = nil, nil, nil
	return c
}
