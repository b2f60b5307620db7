package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// hostState is what a heartbeat changes: the host's observation times and
// the agent's high-water mark.
func hbState(t *testing.T, s *Store, guid, agent string) string {
	t.Helper()
	var lastSeen, logonSeen, serverSeen *time.Time
	var hostAgent *string
	var hwm int64
	err := s.pool.QueryRow(context.Background(), `SELECT h.last_seen, h.logon_seen_at, h.server_seen_at, h.agent_id, a.applied_sequence
		FROM host h JOIN agent a ON a.host_id = h.host_id WHERE h.machine_guid = $1 AND a.agent_id = $2`, guid, agent).
		Scan(&lastSeen, &logonSeen, &serverSeen, &hostAgent, &hwm)
	if err != nil {
		t.Fatal(err)
	}
	f := func(p *time.Time) string {
		if p == nil {
			return "null"
		}
		return p.UTC().Sub(t0).String()
	}
	if hostAgent == nil || *hostAgent != agent {
		t.Errorf("host %s: agent_id = %v, want %s", guid, hostAgent, agent)
	}
	return fmt.Sprintf("last_seen=%s logon_seen=%s server_seen=%s hwm=%d", f(lastSeen), f(logonSeen), f(serverSeen), hwm)
}

// TestIngestHeartbeatsEqualsIngest checks that IngestHeartbeats has Ingest's
// effect on the plain case, and leaves everything else to Ingest.
func TestIngestHeartbeatsEqualsIngest(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	guids := []string{guid, "11111111-0000-0000-0000-000000000002"}
	agents := []string{"agent-ingest", "agent-grouped"}
	incomplete := full(1, at(0), at(-time.Hour), []LogonSession{logon("1", at(-time.Minute), "C", "alice")}, nil)
	incomplete.CollectionErrors = []CollectionError{{Class: ClassServerSession, Message: "WMI timeout"}}
	for i := range guids {
		r := incomplete
		h := *r.Host
		h.MachineGUID = guids[i]
		r.Host = &h
		if _, err := s.Ingest(ctx, agents[i], guids[i], []Report{r}); err != nil {
			t.Fatal(err)
		}
	}
	hb := func(seq uint64, min int) Report {
		return Report{Kind: KindHeartbeat, Sequence: seq, BaseSequence: 1, TakenAt: at(time.Duration(min) * time.Minute)}
	}
	for seq := uint64(2); seq <= 4; seq++ {
		r := hb(seq, int(seq))
		if _, err := s.Ingest(ctx, agents[0], guids[0], []Report{r}); err != nil {
			t.Fatal(err)
		}
		applied, err := s.IngestHeartbeats(ctx, []Heartbeat{{AgentID: agents[1], MachineGUID: guids[1], Sequence: r.Sequence,
			BaseSequence: r.BaseSequence, TakenAt: r.TakenAt}})
		if err != nil || !slices.Equal(applied, []bool{true}) {
			t.Fatalf("IngestHeartbeats(seq %d) = %v, %v; want applied", seq, applied, err)
		}
	}
	a, b := hbState(t, s, guids[0], agents[0]), hbState(t, s, guids[1], agents[1])
	if a != b {
		t.Errorf("after heartbeats:\n Ingest:           %s\n IngestHeartbeats: %s", a, b)
	}
	if want := "last_seen=4m0s logon_seen=4m0s server_seen=null hwm=4"; a != want {
		t.Errorf("state = %q, want %s (server sessions stay incomplete)", a, want)
	}
	// The same WhoWasOn on both hosts.
	for i, g := range guids {
		p, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: g, At: at(3 * time.Minute)})
		if err != nil || len(p.Logon) != 1 || !p.Logon[0].End.Open {
			t.Errorf("host %d: WhoWasOn = %+v, %v", i, p, err)
		}
	}

	// Not the plain case: each is left to Ingest, and changes nothing.
	before := hbState(t, s, guids[1], agents[1])
	for name, h := range map[string]Heartbeat{
		"duplicate":       {agents[1], guids[1], 4, 1, at(5 * time.Minute), 0},
		"resync":          {agents[1], guids[1], 5, 3, at(5 * time.Minute), 0},
		"late":            {agents[1], guids[1], 5, 1, at(4 * time.Minute), 0},
		"unknown agent":   {"agent-new", guids[1], 5, 1, at(5 * time.Minute), 0},
		"wrong host":      {agents[0], guids[1], 5, 1, at(5 * time.Minute), 0},
		"unknown host":    {agents[1], "22222222-0000-0000-0000-000000000002", 5, 1, at(5 * time.Minute), 0},
		"invalid":         {agents[1], guids[1], 5, 5, at(5 * time.Minute), 0},
		"future":          {agents[1], guids[1], 5, 1, at(90 * 24 * time.Hour), 0},
		"bad guid":        {agents[1], "'; DROP TABLE host; --", 5, 1, at(5 * time.Minute), 0},
		"new incarnation": {agents[1], guids[1], 5, 1, at(5 * time.Minute), 77},
	} {
		applied, err := s.IngestHeartbeats(ctx, []Heartbeat{h})
		if err != nil || applied[0] {
			t.Errorf("%s: IngestHeartbeats = %v, %v; want not applied", name, applied, err)
		}
	}
	if after := hbState(t, s, guids[1], agents[1]); after != before {
		t.Errorf("refused heartbeats changed the state:\n before %s\n after  %s", before, after)
	}

	// Several agents in one call; a second heartbeat of the same agent is
	// left for later.
	applied, err := s.IngestHeartbeats(ctx, []Heartbeat{
		{agents[0], guids[0], 5, 1, at(5 * time.Minute), 0},
		{agents[1], guids[1], 5, 1, at(5 * time.Minute), 0},
		{agents[1], guids[1], 6, 1, at(6 * time.Minute), 0},
	})
	if err != nil || !slices.Equal(applied, []bool{true, true, false}) {
		t.Fatalf("grouped call = %v, %v; want [true true false]", applied, err)
	}
	for i := range guids {
		if got := hbState(t, s, guids[i], agents[i]); got != "last_seen=5m0s logon_seen=5m0s server_seen=null hwm=5" {
			t.Errorf("host %d after the grouped call: %s", i, got)
		}
	}
	// Ingest takes over where IngestHeartbeats left off.
	res, err := s.Ingest(ctx, agents[1], guids[1], []Report{hb(6, 6)})
	if err != nil || res.Acknowledged != 6 {
		t.Fatalf("Ingest after grouped heartbeats: %+v, %v", res, err)
	}
}
