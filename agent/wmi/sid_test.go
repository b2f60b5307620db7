package wmi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// fakeLookup is a lookupSIDFunc: SIDs by DOMAIN\name as given (exact
// case), a hang per account, errors per account; it records its calls.
type fakeLookup struct {
	mu    sync.Mutex
	sids  map[string]string
	errs  map[string]error
	hang  map[string]chan struct{}
	calls []string
}

func newFakeLookup() *fakeLookup {
	return &fakeLookup{sids: map[string]string{}, errs: map[string]error{}, hang: map[string]chan struct{}{}}
}

func (f *fakeLookup) lookup(domain, name string) (string, error) {
	k := domain + `\` + name
	f.mu.Lock()
	f.calls = append(f.calls, k)
	hang := f.hang[k]
	f.mu.Unlock()
	if hang != nil {
		<-hang
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.errs[k]; err != nil {
		if err == errPanic {
			panic("lookup of " + k)
		}
		return "", err
	}
	for key, sid := range f.sids {
		if strings.EqualFold(key, k) {
			return sid, nil
		}
	}
	return "", fmt.Errorf("LookupAccountName %s: %w", k, errAccountNotFound)
}

func (f *fakeLookup) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeLookup) set(k, sid string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sids[k] = sid
	f.errs[k] = err
}

func newTestResolver(t *testing.T, f *fakeLookup) (*sidResolver, *clock.Manual) {
	clk := clock.NewManual(testStart)
	r := newSIDResolver(f.lookup, clk, testLogger(t))
	t.Cleanup(r.close)
	return r, clk
}

// sessionsOf returns one logon session per "DOMAIN\name" (or nil account
// for "").
func sessionsOf(accounts ...string) []*sessionauditv1.LogonSession {
	var out []*sessionauditv1.LogonSession
	for i, a := range accounts {
		s := &sessionauditv1.LogonSession{LogonId: fmt.Sprint(1000 + i)}
		if a != "" {
			domain, name, _ := strings.Cut(a, `\`)
			s.Account = &sessionauditv1.Account{Domain: domain, Name: name}
		}
		out = append(out, s)
	}
	return out
}

func sidsOf(ss []*sessionauditv1.LogonSession) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.GetAccount().GetSid())
	}
	return out
}

const (
	aliceSID  = "S-1-5-21-1004336348-1177238915-682003330-1001"
	systemSID = "S-1-5-18"
)

// TestSIDsJoinedAndCached: every session's account gets its SID; an
// account met again, in any case, is not looked up again; sessions
// without an account are left alone.
func TestSIDsJoinedAndCached(t *testing.T) {
	f := newFakeLookup()
	f.sids[`CONTOSO\alice`] = aliceSID
	f.sids[`NT AUTHORITY\SYSTEM`] = systemSID
	r, _ := newTestResolver(t, f)

	ss := sessionsOf(`CONTOSO\alice`, `NT AUTHORITY\SYSTEM`, "", `contoso\ALICE`)
	if late := r.fill(context.Background(), ss, time.Second); late != 0 {
		t.Errorf("late = %d", late)
	}
	if got, want := strings.Join(sidsOf(ss), ","), aliceSID+","+systemSID+",,"+aliceSID; got != want {
		t.Errorf("SIDs %s, want %s", got, want)
	}
	if calls := f.called(); len(calls) != 2 {
		t.Errorf("lookups %v, want one per account (case does not matter)", calls)
	}

	ss = sessionsOf(`CONTOSO\Alice`, `NT AUTHORITY\SYSTEM`)
	r.fill(context.Background(), ss, time.Second)
	if got := sidsOf(ss); got[0] != aliceSID || got[1] != systemSID {
		t.Errorf("second snapshot: SIDs %v", got)
	}
	if calls := f.called(); len(calls) != 2 {
		t.Errorf("lookups %v: the cache was not used", calls)
	}
}

// TestSIDNotFoundIsCachedAndRetried: an account without a SID is reported
// without one, not looked up at every snapshot, and looked up again after
// sidNotFoundTTL (other failures after sidErrorTTL).
func TestSIDNotFoundIsCachedAndRetried(t *testing.T) {
	f := newFakeLookup()
	f.errs[`CONTOSO\dc-down`] = errors.New("RPC server unavailable")
	r, clk := newTestResolver(t, f)
	fill := func() []string {
		ss := sessionsOf(`Window Manager\DWM-9`, `CONTOSO\dc-down`)
		r.fill(context.Background(), ss, time.Second)
		return sidsOf(ss)
	}
	if got := fill(); got[0] != "" || got[1] != "" {
		t.Errorf("SIDs %v, want none", got)
	}
	fill()
	if calls := f.called(); len(calls) != 2 {
		t.Errorf("lookups %v: failures are looked up again at every snapshot", calls)
	}
	clk.Advance(sidErrorTTL)
	fill()
	if calls := f.called(); len(calls) != 3 || calls[2] != `CONTOSO\dc-down` {
		t.Errorf("after %v: lookups %v, want CONTOSO\\dc-down again, not the missing account", sidErrorTTL, calls)
	}
	f.set(`Window Manager\DWM-9`, "S-1-5-90-0-9", nil)
	clk.Advance(sidNotFoundTTL)
	if got := fill(); got[0] != "S-1-5-90-0-9" {
		t.Errorf("after %v: SID %q, want the account looked up again and found", sidNotFoundTTL, got[0])
	}
	if st := r.Stats(); st.Lookups != 5 || st.Failed != 4 {
		t.Errorf("stats %+v", st)
	}
}

// TestSIDKeptWhenTheRefreshFails: a SID found once is used while it is
// looked up again, and kept when that lookup fails.
func TestSIDKeptWhenTheRefreshFails(t *testing.T) {
	f := newFakeLookup()
	f.sids[`CONTOSO\alice`] = aliceSID
	r, clk := newTestResolver(t, f)
	r.fill(context.Background(), sessionsOf(`CONTOSO\alice`), time.Second)

	clk.Advance(sidTTL)
	release := make(chan struct{})
	f.mu.Lock()
	f.hang[`CONTOSO\alice`] = release
	f.errs[`CONTOSO\alice`] = errors.New("domain controller out of reach")
	f.mu.Unlock()
	ss := sessionsOf(`CONTOSO\alice`)
	start := time.Now()
	r.fill(context.Background(), ss, time.Minute)
	if time.Since(start) > 10*time.Second {
		t.Error("the snapshot waited for the refresh of a SID it had")
	}
	if ss[0].GetAccount().GetSid() != aliceSID {
		t.Errorf("SID %q during the refresh, want the one known", ss[0].GetAccount().GetSid())
	}
	close(release)
	waitLookups(t, r, 2)
	ss = sessionsOf(`CONTOSO\alice`)
	r.fill(context.Background(), ss, time.Second)
	if ss[0].GetAccount().GetSid() != aliceSID {
		t.Errorf("SID %q after a failed refresh, want the one known", ss[0].GetAccount().GetSid())
	}
}

// TestSlowLookupDoesNotHoldTheSnapshot: a lookup that hangs delays a
// snapshot by the budget at most; its SID comes in a later snapshot.
func TestSlowLookupDoesNotHoldTheSnapshot(t *testing.T) {
	f := newFakeLookup()
	f.sids[`CONTOSO\alice`] = aliceSID
	f.sids[`CONTOSO\bob`] = "S-1-5-21-1-2-3-1002"
	release := make(chan struct{})
	f.hang[`CONTOSO\alice`] = release
	r, _ := newTestResolver(t, f)

	ss := sessionsOf(`CONTOSO\alice`, `CONTOSO\bob`, `CONTOSO\alice`)
	start := time.Now()
	late := r.fill(context.Background(), ss, 30*time.Millisecond)
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("waited %v for a hung lookup, budget 30ms", waited)
	}
	if late != 2 { // alice (once) and bob, queued behind her
		t.Errorf("late = %d, want 2", late)
	}
	if got := sidsOf(ss); got[0] != "" {
		t.Errorf("SIDs %v while the lookup hangs", got)
	}
	// The next snapshot does not wait for the same hung lookup again.
	ss = sessionsOf(`CONTOSO\alice`, `CONTOSO\bob`)
	start = time.Now()
	if late := r.fill(context.Background(), ss, time.Minute); late != 2 {
		t.Errorf("second snapshot: late = %d, want 2", late)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the second snapshot waited %v for a lookup an earlier one waited for", waited)
	}

	close(release)
	waitLookups(t, r, 2)
	ss = sessionsOf(`CONTOSO\alice`, `CONTOSO\bob`)
	if late := r.fill(context.Background(), ss, 30*time.Millisecond); late != 0 {
		t.Errorf("late = %d after the lookups returned", late)
	}
	if got := sidsOf(ss); got[0] != aliceSID || got[1] == "" {
		t.Errorf("SIDs %v after the lookups returned", got)
	}
	if calls := f.called(); len(calls) != 2 {
		t.Errorf("lookups %v, want each account once", calls)
	}
	if st := r.Stats(); st.Late != 4 {
		t.Errorf("stats %+v, want Late 4 (2 accounts, 2 snapshots)", st)
	}
}

// TestSIDLookupPanicIsRecovered: a lookup that panics leaves the account
// without a SID, is logged, and the resolver goes on.
func TestSIDLookupPanicIsRecovered(t *testing.T) {
	f := newFakeLookup()
	f.errs[`CONTOSO\bad`] = errPanic
	f.sids[`CONTOSO\alice`] = aliceSID
	log, logs := bufferLogger()
	r := newSIDResolver(f.lookup, clock.NewManual(testStart), log)
	defer r.close()
	ss := sessionsOf(`CONTOSO\bad`, `CONTOSO\alice`)
	r.fill(context.Background(), ss, 5*time.Second)
	if got := sidsOf(ss); got[0] != "" || got[1] != aliceSID {
		t.Errorf("SIDs %v", got)
	}
	if out := logs.String(); !strings.Contains(out, "SID lookup panicked") || !strings.Contains(out, `CONTOSO\\bad`) {
		t.Errorf("the panic is not logged:\n%s", out)
	}
}

// TestSIDCacheBounded: beyond its bound the cache forgets the accounts not
// met in the latest snapshot.
func TestSIDCacheBounded(t *testing.T) {
	f := newFakeLookup()
	for i := range 5 {
		f.sids[fmt.Sprintf(`CONTOSO\u%d`, i)] = fmt.Sprintf("S-1-5-21-1-2-3-%d", 2000+i)
	}
	r, _ := newTestResolver(t, f)
	r.max = 3
	r.fill(context.Background(), sessionsOf(`CONTOSO\u0`, `CONTOSO\u1`, `CONTOSO\u2`), time.Second)
	r.fill(context.Background(), sessionsOf(`CONTOSO\u3`, `CONTOSO\u4`), time.Second)
	r.mu.Lock()
	n := len(r.cache)
	_, kept := r.cache[sidKey("CONTOSO", "u4")]
	r.mu.Unlock()
	if n != 2 || !kept {
		t.Errorf("cache holds %d entries (u4 kept: %v), want the 2 of the latest snapshot", n, kept)
	}
}

// TestSnapshotCarriesSIDs: the WMI source's snapshot has the SIDs of its
// accounts.
func TestSnapshotCarriesSIDs(t *testing.T) {
	f := newFakeWMI(t)
	f.sids = map[string]string{`CONTOSO\alice`: aliceSID}
	s, _ := newTestSource(t, f, Options{})
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ls := range snap.GetLogonSessions() {
		if a := ls.GetAccount(); a != nil {
			got = append(got, a.GetDomain()+`\`+a.GetName()+"="+a.GetSid())
		}
	}
	if strings.Join(got, ",") != `CONTOSO\alice=`+aliceSID {
		t.Errorf("accounts %v, want CONTOSO\\alice with its SID", got)
	}
	if _, err := s.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sidLookups) != 1 {
		t.Errorf("lookups %v over two snapshots, want one", f.sidLookups)
	}
}

// waitLookups waits until r has made n lookups.
func waitLookups(t *testing.T, r *sidResolver, n int) {
	t.Helper()
	for i := 0; r.Stats().Lookups < n; i++ {
		if i > 5000 {
			t.Fatalf("%d lookups, want %d", r.Stats().Lookups, n)
		}
		time.Sleep(time.Millisecond)
	}
}
