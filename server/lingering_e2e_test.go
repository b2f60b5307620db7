package server_test

import (
	"testing"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/rows"
)

// TestLingeringThroughQueryAPI: LogonSession.lingering_since, sent by the
// agent, is stored, follows a delta that clears it, and comes back in the
// query API's LogonSessionInterval and in the analysts' rows.
func TestLingeringThroughQueryAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	ac := e.agentClient(c, e.enroll(c, guidA))

	alice, bob := logon("0x1", "alice"), logon("0x2", "bob")
	bob.LingeringSince = at(1)
	ingest(t, ac, snapshot(1, guidA, 1, alice, bob))

	q, ctx := e.queryClient(c)
	who := func(min int) map[string]*pb.LogonSessionInterval {
		t.Helper()
		r, err := q.WhoWasOn(ctx, &pb.WhoWasOnRequest{Host: "ws-" + guidA[:4], At: at(min)})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*pb.LogonSessionInterval{}
		for _, l := range r.GetLogonSessions() {
			out[l.GetSession().GetLogonId()] = l
		}
		return out
	}
	got := who(1)
	if got["0x1"].GetSession().GetLingeringSince() != nil {
		t.Fatalf("alice: lingering since %v, want live", got["0x1"].GetSession().GetLingeringSince().AsTime())
	}
	if !got["0x2"].GetSession().GetLingeringSince().AsTime().Equal(at(1).AsTime()) || !got["0x2"].GetEnd().GetOpen() {
		t.Fatalf("bob: %v, want open, lingering since %v", got["0x2"], at(1).AsTime())
	}
	if r := rows.FromLogon(got["0x2"]); r.LingeringSince != rows.Time(at(1)) {
		t.Fatalf("row lingering_since %q, want %q", r.LingeringSince, rows.Time(at(1)))
	}

	live := logon("0x2", "bob")
	ingest(t, ac, delta(2, 1, 2, []*pb.LogonSession{live}))
	if l := who(2)["0x2"]; l.GetSession().GetLingeringSince() != nil {
		t.Fatalf("bob after a delta that clears it: lingering since %v", l.GetSession().GetLingeringSince().AsTime())
	}
	if r := rows.FromLogon(who(2)["0x2"]); r.LingeringSince != "" {
		t.Fatalf("row lingering_since %q, want empty", r.LingeringSince)
	}
}
