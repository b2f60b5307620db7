package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkIngest measures one Ingest call carrying a full snapshot of a busy
// host: 100 logon and 20 server sessions, half of them replaced since the
// previous snapshot (100 + 20 session changes per call). The figures in
// docs/benchmarks.md come from cmd/storebench, which also runs the raw COPY
// baseline and the queries on a year of history.
func BenchmarkIngest(b *testing.B) {
	url := newBenchDatabase(b)
	ctx := context.Background()
	s, err := Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	if err := s.EnsurePartitions(ctx, base); err != nil {
		b.Fatal(err)
	}
	snap := func(seq int) Report {
		var ls []LogonSession
		from := seq * 50
		for i := from; i < from+100; i++ {
			ls = append(ls, LogonSession{LogonID: fmt.Sprint(i), LogonType: u32(3), AuthenticationPackage: "Kerberos",
				StartTime: base.Add(time.Duration(i) * time.Millisecond), Account: &Account{Domain: "CONTOSO", Name: fmt.Sprintf("user%d", i%50)}})
		}
		var ss []ServerSession
		for i := seq * 10; i < seq*10+20; i++ {
			ss = append(ss, ServerSession{ComputerName: fmt.Sprintf("PC%d", i), UserName: "svc", ActiveTime: u32(uint32(3600 - i))})
		}
		return Report{Sequence: uint64(seq + 1), Kind: KindSnapshot, TakenAt: base.Add(time.Duration(seq) * time.Second),
			Host: &Host{Hostname: "bench", LastBootTime: base.Add(-time.Hour)}, LogonSessions: ls, ServerSessions: ss}
	}
	if _, err := s.Ingest(ctx, "bench-agent", "bench-host", []Report{snap(0)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if _, err := s.Ingest(ctx, "bench-agent", "bench-host", []Report{snap(i)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(120*b.N)/b.Elapsed().Seconds(), "changes/s")
}

// BenchmarkWhoWasOn measures the point-in-time query on a small history
// (200 hosts, a few thousand intervals); see cmd/storebench for 10 million.
func BenchmarkWhoWasOn(b *testing.B) {
	url := newBenchDatabase(b)
	ctx := context.Background()
	s, err := Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	base := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)
	if err := s.EnsurePartitions(ctx, base); err != nil {
		b.Fatal(err)
	}
	for h := 0; h < 200; h++ {
		var reports []Report
		for r := 0; r < 10; r++ {
			obs := base.Add(time.Duration(r) * time.Hour)
			reports = append(reports, Report{Sequence: uint64(r + 1), Kind: KindSnapshot, TakenAt: obs,
				Host: &Host{Hostname: fmt.Sprintf("ws%03d", h), LastBootTime: base.Add(-time.Hour)},
				LogonSessions: []LogonSession{
					{LogonID: "999", StartTime: base.Add(-time.Hour)},
					{LogonID: fmt.Sprint(1000 + r), StartTime: obs.Add(-time.Minute), Account: &Account{Domain: "C", Name: fmt.Sprint("u", h)}},
				}})
		}
		if _, err := s.Ingest(ctx, fmt.Sprint("agent", h), fmt.Sprintf("host-%03d", h), reports); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: fmt.Sprintf("host-%03d", i%200), At: base.Add(time.Duration(i%9)*time.Hour + 30*time.Minute)})
		if err != nil || len(p.Logon) != 2 {
			b.Fatalf("WhoWasOn: %d sessions, %v", len(p.Logon), err)
		}
	}
}

func newBenchDatabase(b *testing.B) string {
	b.Helper()
	return storetestNewDatabase(b)
}

// BenchmarkHeartbeats measures how many agents' heartbeats the store takes
// per second, 64 agents at a time (as 64 concurrent Ingest calls would
// offer them): one Ingest transaction each, or IngestHeartbeats grouping
// them into one statement. docs/benchmarks.md quotes the ratio.
func BenchmarkHeartbeats(b *testing.B) {
	const agents = 64
	url := newBenchDatabase(b)
	ctx := context.Background()
	s, err := Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	if err := s.EnsurePartitions(ctx, base); err != nil {
		b.Fatal(err)
	}
	guidOf := func(a int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", a) }
	for a := range agents {
		r := Report{Sequence: 1, Kind: KindSnapshot, TakenAt: base, Host: &Host{Hostname: fmt.Sprint("hb", a), LastBootTime: base.Add(-time.Hour)},
			LogonSessions: []LogonSession{{LogonID: "1", LogonType: u32(2), StartTime: base.Add(-time.Minute)}}}
		if _, err := s.Ingest(ctx, fmt.Sprint("agent-", a), guidOf(a), []Report{r}); err != nil {
			b.Fatal(err)
		}
	}
	seq := uint64(1)
	next := func() []Heartbeat {
		seq++
		hbs := make([]Heartbeat, agents)
		for a := range hbs {
			hbs[a] = Heartbeat{AgentID: fmt.Sprint("agent-", a), MachineGUID: guidOf(a), Sequence: seq, BaseSequence: 1,
				TakenAt: base.Add(time.Duration(seq) * time.Millisecond)}
		}
		return hbs
	}
	b.Run("Ingest", func(b *testing.B) {
		for range b.N {
			hbs := next()
			errs := make(chan error, agents)
			for _, h := range hbs {
				go func() {
					_, err := s.Ingest(ctx, h.AgentID, h.MachineGUID, []Report{{Kind: KindHeartbeat, Sequence: h.Sequence,
						BaseSequence: h.BaseSequence, TakenAt: h.TakenAt}})
					errs <- err
				}()
			}
			for range hbs {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(agents*b.N)/b.Elapsed().Seconds(), "heartbeats/s")
	})
	b.Run("IngestHeartbeats", func(b *testing.B) {
		for range b.N {
			applied, err := s.IngestHeartbeats(ctx, next())
			if err != nil {
				b.Fatal(err)
			}
			for i, ok := range applied {
				if !ok {
					b.Fatalf("heartbeat %d not applied", i)
				}
			}
		}
		b.ReportMetric(float64(agents*b.N)/b.Elapsed().Seconds(), "heartbeats/s")
	})
}
