package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
)

// metric returns the value of one sample line of the collector's metrics.
func metric(t *testing.T, c *collector, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	c.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "absent"
}

// TestHeartbeatGroups: heartbeats of many agents arriving together are
// stored in groups, each acknowledged with its own sequence and applied to
// its own host; a duplicate and a resync still get their full answers.
func TestHeartbeatGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, func(cfg *server.Config) { cfg.EnrollPerSecond, cfg.EnrollBurst = 1000, 1000 })
	const agents, rounds = 24, 5
	clients := make([]pb.CollectorServiceClient, agents)
	for i := range clients {
		a := e.enroll(c, fmt.Sprintf("%04x0000-0000-0000-0000-%012d", i+0x1000, i))
		clients[i] = e.agentClient(c, a)
		ingest(t, clients[i], snapshot(1, a.guid, 0, logon("1", "u")))
	}
	for round := 1; round <= rounds; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, agents)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seq := uint64(round + 1)
				resp, err := clients[i].Ingest(context.Background(), batch(heartbeat(seq, 1, round)))
				switch {
				case err != nil:
					errs <- fmt.Errorf("agent %d round %d: %v", i, round, err)
				case resp.GetAcknowledgedSequence() != seq || resp.GetResyncRequired():
					errs <- fmt.Errorf("agent %d round %d: acknowledged %d resync %v, want %d", i, round, resp.GetAcknowledgedSequence(), resp.GetResyncRequired(), seq)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	if got, want := metric(t, c, "sessionaudit_heartbeat_group_size_sum"), fmt.Sprint(agents*rounds); got != want {
		t.Errorf("heartbeats stored in groups = %s, want %s", got, want)
	}
	groups := metric(t, c, "sessionaudit_heartbeat_group_size_count")
	t.Logf("%d heartbeats in %s groups", agents*rounds, groups)

	// Every host's last report is the last round's.
	q, qctx := e.queryClient(c)
	hosts, err := q.ListHosts(qctx, &pb.ListHostsRequest{PageSize: 100})
	if err != nil || len(hosts.GetHosts()) != agents {
		t.Fatalf("ListHosts = %d hosts, %v", len(hosts.GetHosts()), err)
	}
	who, err := q.WhoWasOn(qctx, &pb.WhoWasOnRequest{Host: hosts.GetHosts()[0].GetHost().GetMachineGuid(), At: at(rounds)})
	if err != nil || len(who.GetLogonSessions()) != 1 || !who.GetLogonSessions()[0].GetEnd().GetOpen() ||
		!who.GetLogonSessions()[0].GetEnd().GetLastSeen().AsTime().Equal(at(rounds).AsTime()) {
		t.Errorf("WhoWasOn after the heartbeats = %v, %v; want the session open, last seen at round %d", who, err, rounds)
	}

	// A duplicate: acknowledged again, through the ordinary path.
	if resp := ingest(t, clients[0], heartbeat(rounds+1, 1, rounds)); resp.GetAcknowledgedSequence() != rounds+1 {
		t.Errorf("duplicate heartbeat acknowledged %d, want %d", resp.GetAcknowledgedSequence(), rounds+1)
	}
	// A heartbeat on a state the store does not have: resync.
	if resp := ingest(t, clients[0], heartbeat(rounds+2, rounds, rounds+1)); !resp.GetResyncRequired() {
		t.Errorf("heartbeat on an unknown base: %v, want resync_required", resp)
	}
	// Both were offered to a group first, which left them to the ordinary
	// path.
	if got := metric(t, c, "sessionaudit_heartbeat_group_size_sum"); got != fmt.Sprint(agents*rounds+2) {
		t.Errorf("heartbeats offered to groups after the duplicate and the resync = %s, want %d", got, agents*rounds+2)
	}
}
