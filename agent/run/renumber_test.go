package run

import (
	"context"
	"strconv"
	"testing"

	"github.com/sessionaudit/sessionaudit/agent/spool"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
)

// The spool is what the pump delivers from: it sends the spool's
// incarnation and moves it past the collector's mark.
var _ uplink.ChainQueue = (*spool.Spool)(nil)

// TestRenumberAfterRebase: after the pump moved the spool past the
// collector's high-water mark (a spool restored from an older copy), the
// next report is a Snapshot numbered above it, and the chain goes on from
// there.
func TestRenumberAfterRebase(t *testing.T) {
	a, reports := newTestLoop(t, 5, nil)
	ctx := context.Background()
	for range 3 {
		a.poll(ctx)
	}
	if n, err := a.spool.Rebase(100); err != nil || n != 3 {
		t.Fatalf("Rebase(100) = %d, %v; want the 3 reports dropped", n, err)
	}
	a.pollNow() // no poll loop here: must not block
	a.poll(ctx)
	a.poll(ctx)
	var got []string
	for _, r := range (*reports)[3:] {
		got = append(got, r.ContentName()+"#"+strconv.FormatUint(r.GetSequence(), 10))
	}
	if want := "snapshot#101 heartbeat#102"; join(got) != want {
		t.Errorf("reports after the rebase: %s; want %s", join(got), want)
	}
	if next := a.spool.NextSequence(); next != 103 {
		t.Errorf("spool next sequence %d; want 103", next)
	}
}
