package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMachineGUIDOneForm: the collector and the store read a machine GUID
// through the same normaliser (identity.ParseMachineGUID), so a GUID with
// spaces, braces or capitals in a batch's key or in the report's host is
// the same host, and one that is not a GUID is refused, naming the field.
// Before, the collector trimmed spaces and the store did not: a GUID with
// a space passed one check and failed the other.
func TestMachineGUIDOneForm(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	spelled := " {" + strings.ToUpper(guid) + "} "
	r := full(1, at(0), boot1, []LogonSession{logon("1001", at(-time.Hour), "CONTOSO", "alice")}, nil)
	r.Host.MachineGUID = spelled
	res, err := s.Ingest(ctx, "agent-1", spelled, []Report{r})
	if err != nil {
		t.Fatalf("Ingest with the GUID %q: %v", spelled, err)
	}
	if len(res.Rejected) > 0 {
		t.Fatalf("Ingest with the GUID %q rejected %+v", spelled, res.Rejected)
	}
	// Stored under the canonical form: the ordinary helpers find it.
	if h := hostState(t, s); !h.LastSeen.Equal(at(0)) {
		t.Errorf("host %s last seen = %v, want %v", guid, h.LastSeen, at(0))
	}
	p, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: guid, At: at(0)})
	if err != nil || len(p.Logon) != 1 {
		t.Fatalf("WhoWasOn(%s) = %d sessions, %v; want 1", guid, len(p.Logon), err)
	}

	for _, bad := range []string{"", "not-a-guid", "{}", "00000000-0000-0000-0000-000000000000"} {
		_, err := s.Ingest(ctx, "agent-1", bad, []Report{full(2, at(time.Minute), boot1, nil, nil)})
		if err == nil || !strings.Contains(err.Error(), "machineGUID") {
			t.Errorf("Ingest with the GUID %q: %v, want an error naming machineGUID", bad, err)
		}
	}
}
