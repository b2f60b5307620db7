package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The interval rules of docs/design/0002-storage.md ("Interval rules", "Late
// reports"), tested without a database: each case applies reports to a
// host's state in memory and checks what the rules decide to write
// (hostIntervals.changes) and the host's times afterwards. Every case name
// cites the rule it checks.

// ivBoot is the host's boot in the scenarios (t0 is the base time, at(d) is
// t0+d: helpers_test.go).
var ivBoot = t0.Add(-24 * time.Hour)

// Sessions of the scenarios.
var (
	ivAlice = logon("1001", at(-time.Hour), "CONTOSO", "alice")
	ivBob   = logon("1002", at(-30*time.Minute), "CONTOSO", "bob")
	ivCarol = logon("1003", at(30*time.Second), "CONTOSO", "carol")
	// ivDave has no StartTime.
	ivDave = logon("1004", time.Time{}, "CONTOSO", "dave")
	ivSys  = logon("999", ivBoot.Add(time.Second), "NT AUTHORITY", "SYSTEM")
)

// ivServer is a server session of computer and user without ActiveTime.
func ivServer(computer, user string) ServerSession {
	ss := server(computer, user, 0)
	ss.ActiveTime = nil
	return ss
}

func ivLogons(ls ...LogonSession) []LogonSession    { return ls }
func ivServers(ss ...ServerSession) []ServerSession { return ss }

// ivFull is a full snapshot of the host booted at ivBoot.
func ivFull(seq uint64, obs time.Time, ls []LogonSession, ss []ServerSession) Report {
	return full(seq, obs, ivBoot, ls, ss)
}

// ivFailed is r with collection errors for classes (a class prefixed by
// "value:" is a ValueOnly error).
func ivFailed(r Report, classes ...string) Report {
	for _, c := range classes {
		class, valueOnly := strings.CutPrefix(c, "value:")
		r.CollectionErrors = append(r.CollectionErrors, CollectionError{Class: class, Message: "0x80041033", ValueOnly: valueOnly})
	}
	return r
}

func ivDelta(seq uint64, obs time.Time) Report {
	return Report{Sequence: seq, Kind: KindDelta, BaseSequence: seq - 1, TakenAt: obs}
}

func ivHeartbeat(seq, base uint64, obs time.Time) Report {
	return Report{Sequence: seq, Kind: KindHeartbeat, BaseSequence: base, TakenAt: obs}
}

// ivDict plays the store's dictionary: an id for every label and account
// the scenario names (accounts matched without regard to case), and the
// names back for the descriptions.
type ivDict struct {
	ids      resolved
	labels   map[int32]string
	accounts map[int32]string
	rows     int64 // the last interval id handed out
}

func newIVDict(batches ...[]Report) *ivDict {
	d := &ivDict{ids: resolved{labels: map[string]int32{}, accounts: map[string]int32{}},
		labels: map[int32]string{}, accounts: map[int32]string{}}
	byName := map[string]int32{}
	for _, b := range batches {
		labels, accounts := dictionaryKeys(b)
		for _, l := range labels {
			if _, ok := d.ids.labels[l]; !ok {
				id := int32(len(d.ids.labels) + 1)
				d.ids.labels[l], d.labels[id] = id, l
			}
		}
		for _, a := range accounts {
			name := a.Domain + `\` + a.Name
			id, ok := byName[strings.ToLower(name)]
			if !ok {
				id = int32(len(byName) + 1)
				byName[strings.ToLower(name)], d.accounts[id] = id, name
			}
			d.ids.accounts[accountKey(a)] = id
		}
	}
	return d
}

// stored applies the given reports, each as one Ingest call, to a new
// host, and returns the state the next call starts from.
func (d *ivDict) stored(given []Report) *hostIntervals {
	h := newHostIntervals()
	h.ids, h.boot = d.ids, unknownBoot
	st := &h
	for i := range given {
		r := given[i]
		st.apply(&r)
		st = d.reload(st)
	}
	return st
}

// reload is what Ingest would load after writing h: every interval stored
// (with an id, and only the columns loadState and loadClosed read), the host's
// facts, boot and times, the agent's incomplete classes. It loads every
// closed interval, where loadClosed reads those closedQuery names.
func (d *ivDict) reload(h *hostIntervals) *hostIntervals {
	n := newHostIntervals()
	n.ids, n.facts, n.boot = h.ids, h.facts, h.currentBoot()
	n.facts.MachineGUID, n.facts.LastBootTime = "", time.Time{}
	n.lastSeen, n.logonSeenAt, n.serverSeenAt = h.lastSeen, h.logonSeenAt, h.serverSeenAt
	n.bootSince = h.bootSince
	n.incomplete = slices.Clone(h.incomplete)
	for _, r := range h.logonRows {
		if r.id == 0 {
			d.rows++
			r.id = d.rows
		}
		n.addLogon(&logonRow{id: r.id, boot: r.boot, sess: LogonSession{LogonID: r.sess.LogonID, StartTime: r.sess.StartTime},
			accountID: r.accountID, lastSeen: r.lastSeen, endBefore: r.endBefore, storedEnd: r.endBefore})
	}
	for _, r := range h.serverRows {
		if r.id == 0 {
			d.rows++
			r.id = d.rows
		}
		n.addServer(&serverRow{id: r.id, start: r.start, peer: r.peer,
			lastSeen: r.lastSeen, endBefore: r.endBefore, storedEnd: r.endBefore})
	}
	return &n
}

// ivRel is t relative to t0 ("+1m", "-1h", "0"); "-" for the zero time,
// "?" for the unknown boot.
func ivRel(t time.Time) string {
	switch {
	case t.IsZero():
		return "-"
	case t.Equal(unknownBoot):
		return "?"
	case t.Equal(Earliest):
		return "Earliest"
	case t.Equal(t0):
		return "0"
	}
	d := t.Sub(t0)
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if d > 0 {
		s = "+" + s
	}
	return s
}

func ivBounds(last, end time.Time) string {
	if end.IsZero() {
		return "open"
	}
	return "last=" + ivRel(last) + " end<" + ivRel(end)
}

func (d *ivDict) logon(r *logonRow) string {
	acct := d.accounts[r.accountID]
	if acct == "" {
		acct = "-"
	}
	return fmt.Sprintf("logon %s@%s start=%s %s acct=%s", r.sess.LogonID, ivRel(r.boot), ivRel(r.sess.StartTime),
		ivBounds(r.lastSeen, r.endBefore), acct)
}

func (d *ivDict) server(r *serverRow) string {
	return fmt.Sprintf("server %s/%s start=%s %s", d.labels[r.peer.computer], d.labels[r.peer.user], ivRel(r.start),
		ivBounds(r.lastSeen, r.endBefore))
}

// writes describes the decisions of h.changes, sorted.
func (d *ivDict) writes(h *hostIntervals) []string {
	c := h.changes()
	var out []string
	for _, r := range c.newLogon {
		out = append(out, "insert "+d.logon(r))
	}
	for _, r := range c.updLogon {
		out = append(out, "update "+d.logon(r))
	}
	for _, r := range c.newServer {
		out = append(out, "insert "+d.server(r))
	}
	for _, r := range c.updServer {
		out = append(out, "update "+d.server(r))
	}
	slices.Sort(out)
	return out
}

// ivHost describes the host's boot, times, whether its facts changed and
// the incomplete classes of the agent's state.
func ivHost(h *hostIntervals) string {
	s := fmt.Sprintf("boot=%s last=%s logon=%s server=%s", ivRel(h.currentBoot()), ivRel(h.lastSeen),
		ivRel(h.logonSeenAt), ivRel(h.serverSeenAt))
	if !h.bootSince.IsZero() {
		s += " boot_since=" + ivRel(h.bootSince)
	}
	if h.factsChanged {
		s += " facts changed"
	}
	if len(h.incomplete) > 0 {
		s += " incomplete=" + strings.Join(h.incomplete, ",")
	}
	return s
}

// ivCase is one scenario: given reports stored by earlier calls, when
// reports applied in one call.
type ivCase struct {
	name  string // the rule of docs/design/0002-storage.md it checks
	given []Report
	when  []Report
	late  bool     // whether every report of when is late (else every one is live)
	want  []string // the writes decided (ivDict.writes), in any order
	host  string   // ivHost after the call; "" when not checked
	// notes are the anomalies noted in the call ("sequence field"), in
	// order; not checked when nil.
	notes []string
}

func runIVCases(t *testing.T, cases []ivCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newIVDict(c.given, c.when)
			h := d.stored(c.given)
			for i := range c.when {
				r := c.when[i]
				if late := h.apply(&r); late != c.late {
					t.Errorf("report %d observed at %s: late = %v, want %v", r.Sequence, ivRel(r.TakenAt), late, c.late)
				}
			}
			got := d.writes(h)
			want := slices.Sorted(slices.Values(c.want))
			if !slices.Equal(got, want) {
				t.Errorf("writes:\n  got:  %s\n  want: %s", strings.Join(got, "\n        "), strings.Join(want, "\n        "))
			}
			if c.host != "" {
				if got := ivHost(h); got != c.host {
					t.Errorf("host:\n  got:  %s\n  want: %s", got, c.host)
				}
			}
			if c.notes != nil {
				got := []string{}
				for _, n := range h.anomalies {
					got = append(got, fmt.Sprintf("%d %s", n.Sequence, n.Field))
				}
				if !slices.Equal(got, c.notes) {
					t.Errorf("anomalies noted: got %q, want %q (%+v)", got, c.notes, h.anomalies)
				}
			}
		})
	}
}

func TestIntervalRulesLogonIdentity(t *testing.T) {
	runIVCases(t, []ivCase{
		{
			name: "logon session identity: key (boot, LogonId), start = StartTime",
			when: []Report{ivFull(1, at(0), ivLogons(ivAlice), nil)},
			want: []string{`insert logon 1001@-24h start=-1h open acct=CONTOSO\alice`},
			host: "boot=-24h last=0 logon=0 server=0 facts changed",
		},
		{
			name:  "logon session identity: StartTime absent, start = the first observation that saw it",
			given: []Report{ivFull(1, at(0), nil, nil)},
			when:  []Report{ivFull(2, at(time.Minute), ivLogons(ivDave), nil), ivFull(3, at(2*time.Minute), ivLogons(ivDave), nil)},
			want:  []string{`insert logon 1004@-24h start=+1m open acct=CONTOSO\dave`},
		},
		{
			name:  "still seen: nothing written, the host's logon_seen_at and server_seen_at advance",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice, ivBob), ivServers(server("PC7", "bob", 100)))},
			when:  []Report{ivFull(2, at(time.Minute), ivLogons(ivAlice, ivBob), ivServers(server("PC7", "bob", 160)))},
			want:  nil,
			host:  "boot=-24h last=+1m logon=+1m server=+1m",
		},
		{
			name: "gone from a complete full snapshot: last_seen = logon_seen_at before the report, end_before = its TakenAt",
			given: []Report{
				ivFull(1, at(0), ivLogons(ivAlice, ivBob), ivServers(server("PC7", "bob", 100))),
				ivFull(2, at(time.Minute), ivLogons(ivAlice, ivBob), ivServers(server("PC7", "bob", 160))),
			},
			when: []Report{ivFull(3, at(2*time.Minute), ivLogons(ivAlice), nil)},
			want: []string{
				`update logon 1002@-24h start=-30m last=+1m end<+2m acct=CONTOSO\bob`,
				`update server PC7/bob start=-1m40s last=+1m end<+2m`,
			},
			host: "boot=-24h last=+2m logon=+2m server=+2m",
		},
		{
			name:  "ended in a Delta: last_seen = logon_seen_at before the report, end_before = its TakenAt",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice, ivBob), ivServers(server("PC7", "bob", 100)))},
			when: []Report{func() Report {
				r := ivDelta(2, at(time.Minute))
				r.EndedLogonIDs = []string{"1002"}
				r.EndedServerSessions = []ServerSessionKey{{ComputerName: "PC7", UserName: "bob"}}
				return r
			}()},
			want: []string{
				`update logon 1002@-24h start=-30m last=0 end<+1m acct=CONTOSO\bob`,
				`update server PC7/bob start=-1m40s last=0 end<+1m`,
			},
			host: "boot=-24h last=+1m logon=+1m server=+1m",
		},
		{
			name: "ended in a Delta: an ended LogonId that is not open changes nothing",
			given: []Report{
				ivFull(1, at(0), ivLogons(ivAlice), nil),
			},
			when: []Report{func() Report {
				r := ivDelta(2, at(time.Minute))
				r.EndedLogonIDs = []string{"4242"}
				return r
			}()},
			want: nil,
		},
		{
			name:  "ingest: a session that starts and ends within one call is written once, already closed (end_before > last_seen >= start)",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), nil)},
			when: []Report{
				ivFull(2, at(time.Minute), ivLogons(ivAlice, ivCarol), ivServers(server("PC7", "bob", 10))),
				ivFull(3, at(2*time.Minute), ivLogons(ivAlice), nil),
			},
			want: []string{
				`insert logon 1003@-24h start=+30s last=+1m end<+2m acct=CONTOSO\carol`,
				`insert server PC7/bob start=+50s last=+1m end<+2m`,
			},
		},
	})
}

func TestIntervalRulesIncompleteClass(t *testing.T) {
	runIVCases(t, []ivCase{
		{
			name:  "class incomplete: Win32_LogonSession failed, its absences end nothing and logon_seen_at stays",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100)))},
			when:  []Report{ivFailed(ivFull(2, at(time.Minute), nil, nil), ClassLogonSession)},
			want:  []string{`update server PC7/bob start=-1m40s last=0 end<+1m`},
			host:  "boot=-24h last=+1m logon=0 server=+1m incomplete=Win32_LogonSession",
		},
		{
			name:  "class incomplete: Win32_ServerSession failed (class matched without regard to case), its absences end nothing and server_seen_at stays",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100)))},
			when:  []Report{ivFailed(ivFull(2, at(time.Minute), nil, nil), "win32_serversession")},
			want:  []string{`update logon 1001@-24h start=-1h last=0 end<+1m acct=CONTOSO\alice`},
			host:  "boot=-24h last=+1m logon=+1m server=0 incomplete=Win32_ServerSession",
		},
		{
			name: "class incomplete: after an incomplete report, last_seen is the last complete observation",
			given: []Report{
				ivFull(1, at(0), ivLogons(ivAlice), nil),
				ivFailed(ivFull(2, at(time.Minute), nil, nil), ClassLogonSession),
			},
			when: []Report{ivFull(3, at(2*time.Minute), nil, nil)},
			want: []string{`update logon 1001@-24h start=-1h last=0 end<+2m acct=CONTOSO\alice`},
			host: "boot=-24h last=+2m logon=+2m server=+2m",
		},
		{
			name:  "class incomplete: a ValueOnly CollectionError leaves the list complete",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100)))},
			when:  []Report{ivFailed(ivFull(2, at(time.Minute), ivLogons(ivAlice), nil), "value:"+ClassServerSession)},
			want:  []string{`update server PC7/bob start=-1m40s last=0 end<+1m`},
			host:  "boot=-24h last=+1m logon=+1m server=+1m",
		},
		{
			name:  "class incomplete: Win32_LoggedOnUser failing only leaves accounts unknown",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice, ivBob), nil)},
			when: []Report{ivFailed(ivFull(2, at(time.Minute),
				ivLogons(logon("1001", at(-time.Hour), "", ""), logon("1003", at(30*time.Second), "", "")), nil), ClassLoggedOnUser)},
			want: []string{
				`insert logon 1003@-24h start=+30s open acct=-`,
				`update logon 1002@-24h start=-30m last=0 end<+1m acct=CONTOSO\bob`,
			},
			host: "boot=-24h last=+1m logon=+1m server=+1m",
		},
		{
			name:  "class incomplete (Win32_LoggedOnUser): an account known later fills in the unknown one",
			given: []Report{ivFailed(ivFull(1, at(0), ivLogons(logon("1003", at(30*time.Second), "", "")), nil), ClassLoggedOnUser)},
			when:  []Report{ivFull(2, at(time.Minute), ivLogons(ivCarol), nil)},
			want:  []string{`update logon 1003@-24h start=+30s open acct=CONTOSO\carol`},
		},
	})
}

func TestIntervalRulesNewBoot(t *testing.T) {
	given := []Report{ivFull(1, at(0), ivLogons(ivSys, ivAlice), ivServers(server("PC7", "bob", 60)))}
	rebooted := func(boot time.Time) Report {
		return full(2, at(10*time.Minute), boot, ivLogons(logon("999", boot.Add(time.Second), "NT AUTHORITY", "SYSTEM")), nil)
	}
	runIVCases(t, []ivCase{
		{
			name:  "new boot: ends every open logon and server session, end_before = the boot when it lies between last_seen and the observation",
			given: given,
			when:  []Report{rebooted(at(5 * time.Minute))},
			want: []string{
				`insert logon 999@+5m start=+5m1s open acct=NT AUTHORITY\SYSTEM`,
				`update logon 1001@-24h start=-1h last=0 end<+5m acct=CONTOSO\alice`,
				`update logon 999@-24h start=-23h59m59s last=0 end<+5m acct=NT AUTHORITY\SYSTEM`,
				`update server PC7/bob start=-1m last=0 end<+5m`,
			},
			host: "boot=+5m last=+10m logon=+10m server=+10m boot_since=+10m facts changed",
		},
		{
			name:  "new boot: end_before = the observation when the boot is not after last_seen",
			given: given,
			when:  []Report{rebooted(at(-2 * time.Minute))},
			want: []string{
				`insert logon 999@-2m start=-1m59s open acct=NT AUTHORITY\SYSTEM`,
				`update logon 1001@-24h start=-1h last=0 end<+10m acct=CONTOSO\alice`,
				`update logon 999@-24h start=-23h59m59s last=0 end<+10m acct=NT AUTHORITY\SYSTEM`,
				`update server PC7/bob start=-1m last=0 end<+10m`,
			},
			host: "boot=-2m last=+10m logon=+10m server=+10m boot_since=+10m facts changed",
		},
		{
			name:  "new boot: a LastBootTime within BootJitter is the same boot",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), nil)},
			when:  []Report{full(2, at(time.Minute), ivBoot.Add(BootJitter), ivLogons(ivAlice), nil)},
			want:  nil,
			host:  "boot=-24h last=+1m logon=+1m server=+1m",
		},
		{
			name:  "new boot: a LastBootTime more than BootJitter away is a new boot",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), nil)},
			when:  []Report{full(2, at(time.Minute), ivBoot.Add(BootJitter+time.Second), ivLogons(ivAlice), nil)},
			want: []string{
				`insert logon 1001@-23h59m54s start=-1h open acct=CONTOSO\alice`,
				`update logon 1001@-24h start=-1h last=0 end<+1m acct=CONTOSO\alice`,
			},
			host: "boot=-23h59m54s last=+1m logon=+1m server=+1m boot_since=+1m facts changed",
		},
		{
			name:  "new boot: the boot going from unknown to known re-keys the open sessions instead",
			given: []Report{full(1, at(0), time.Time{}, ivLogons(ivAlice), ivServers(server("PC7", "bob", 100)))},
			when:  []Report{ivFull(2, at(time.Minute), ivLogons(ivAlice), ivServers(server("PC7", "bob", 160)))},
			want:  []string{`update logon 1001@-24h start=-1h open acct=CONTOSO\alice`},
			host:  "boot=-24h last=+1m logon=+1m server=+1m facts changed",
		},
		{
			name:  "new boot (bad input): an absent LastBootTime leaves the boot unchanged",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), nil)},
			when:  []Report{full(2, at(time.Minute), time.Time{}, ivLogons(ivAlice), nil)},
			want:  nil,
			host:  "boot=-24h last=+1m logon=+1m server=+1m",
		},
	})
}

// TestIntervalRulesClosedImmutable checks that no report reopens an
// interval that ended before the host's current stay in its boot began
// (docs/design/0002-storage.md, "Closed intervals are immutable"): a
// compromised agent that reports an earlier boot again must not rewrite the
// history of that boot.
func TestIntervalRulesClosedImmutable(t *testing.T) {
	boot5 := at(5 * time.Minute)
	sys5 := logon("999", boot5.Add(time.Second), "NT AUTHORITY", "SYSTEM")
	// Booted at -24h with SYSTEM, alice and an SMB session; rebooted at +5m,
	// seen at +10m: the three intervals ended before +5m.
	rebooted := []Report{
		ivFull(1, at(0), ivLogons(ivSys, ivAlice), ivServers(server("PC7", "bob", 60))),
		full(2, at(10*time.Minute), boot5, ivLogons(sys5), nil),
	}
	// ... then reported the boot of -24h again at +11m.
	returned := append(slices.Clone(rebooted), full(3, at(11*time.Minute), ivBoot, ivLogons(ivSys), nil))
	runIVCases(t, []ivCase{
		{
			name:  "closed intervals are immutable: a boot moved back to one the host had left reopens none of its intervals; its sessions get new intervals from the observation, and it is noted",
			given: rebooted,
			when:  []Report{full(3, at(11*time.Minute), ivBoot, ivLogons(ivSys, ivAlice), ivServers(server("PC7", "bob", 720)))},
			want: []string{
				`insert logon 1001@-24h start=+11m open acct=CONTOSO\alice`,
				`insert logon 999@-24h start=+11m open acct=NT AUTHORITY\SYSTEM`,
				`insert server PC7/bob start=-1m open`,
				`update logon 999@+5m start=+5m1s last=+10m end<+11m acct=NT AUTHORITY\SYSTEM`,
			},
			host:  "boot=-24h last=+11m logon=+11m server=+11m boot_since=+11m facts changed",
			notes: []string{"3 Host.LastBootTime", "3 LogonSessions", "3 ServerSessions"},
		},
		{
			name:  "closed intervals are immutable: a boot moved back to a time the host never had (a clock stepped back) is a new boot, noted",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), nil)},
			when:  []Report{full(2, at(time.Minute), ivBoot.Add(-10*time.Second), ivLogons(ivAlice), nil)},
			want: []string{
				`insert logon 1001@-24h0m10s start=-1h open acct=CONTOSO\alice`,
				`update logon 1001@-24h start=-1h last=0 end<+1m acct=CONTOSO\alice`,
			},
			host:  "boot=-24h0m10s last=+1m logon=+1m server=+1m boot_since=+1m facts changed",
			notes: []string{"2 Host.LastBootTime"},
		},
		{
			name:  "closed intervals are immutable: in a later call, a session whose interval ended before the host returned to its boot gets a new interval",
			given: returned,
			when:  []Report{full(4, at(12*time.Minute), ivBoot, ivLogons(ivSys, ivAlice), nil)},
			want:  []string{`insert logon 1001@-24h start=+12m open acct=CONTOSO\alice`},
			notes: []string{"4 LogonSessions"},
		},
		{
			name: "closed intervals are immutable: an interval that ended during the current stay is still reopened (session seen again)",
			given: append(slices.Clone(returned),
				full(4, at(12*time.Minute), ivBoot, ivLogons(ivSys, ivAlice), nil),
				full(5, at(13*time.Minute), ivBoot, ivLogons(ivSys), nil)),
			when:  []Report{full(6, at(14*time.Minute), ivBoot, ivLogons(ivSys, ivAlice), nil)},
			want:  []string{`update logon 1001@-24h start=+12m open acct=CONTOSO\alice`},
			notes: []string{},
		},
		{
			name:  "closed intervals are immutable: a boot moved forward to one the host had left reopens none of its intervals either",
			given: returned,
			when:  []Report{full(4, at(12*time.Minute), boot5, ivLogons(sys5), nil)},
			want: []string{
				`insert logon 999@+5m start=+12m open acct=NT AUTHORITY\SYSTEM`,
				`update logon 999@-24h start=+11m last=+11m end<+12m acct=NT AUTHORITY\SYSTEM`,
			},
			host:  "boot=+5m last=+12m logon=+12m server=+12m boot_since=+12m facts changed",
			notes: []string{"4 LogonSessions"},
		},
		{
			name: "closed intervals are immutable: a server interval that ended before the current boot is not reopened by a session of this boot",
			given: []Report{
				ivFull(1, at(0), nil, ivServers(server("PC7", "bob", 60))),
				full(2, at(10*time.Minute), boot5, nil, nil),
			},
			when:  []Report{full(3, at(11*time.Minute), boot5, nil, ivServers(server("PC7", "bob", 720)))},
			want:  []string{`insert server PC7/bob start=-1m open`},
			notes: []string{"3 ServerSessions"},
		},
		{
			name: "closed intervals are immutable: when the start of the current stay is not known (stored before it was kept), the boot stands in",
			given: []Report{
				full(1, at(0), time.Time{}, nil, ivServers(server("PC7", "bob", 60))),
				full(2, at(time.Minute), time.Time{}, nil, nil),
				full(3, at(2*time.Minute), at(90*time.Second), nil, nil),
			},
			when:  []Report{full(4, at(3*time.Minute), at(90*time.Second), nil, ivServers(server("PC7", "bob", 240)))},
			want:  []string{`insert server PC7/bob start=-1m open`},
			notes: []string{"4 ServerSessions"},
		},
	})
}

func TestIntervalRulesServerIdentity(t *testing.T) {
	given := []Report{ivFull(1, at(0), nil, ivServers(server("PC7", "bob", 100)))}
	// A minute later ActiveTime is 160 if the computed start did not move.
	again := func(ss ...ServerSession) []Report { return []Report{ivFull(2, at(time.Minute), nil, ss)} }
	runIVCases(t, []ivCase{
		{
			name: "server session identity: start = TakenAt - ActiveTime at first sight",
			when: []Report{ivFull(1, at(0), nil, ivServers(server("PC7", "bob", 100)))},
			want: []string{`insert server PC7/bob start=-1m40s open`},
		},
		{
			name:  "server session identity: a computed start later by ServerStartJitter matches the open interval",
			given: given,
			when:  again(server("PC7", "bob", 160-5)),
			want:  nil,
		},
		{
			name:  "server session identity: a computed start earlier by ServerStartJitter matches the open interval",
			given: given,
			when:  again(server("PC7", "bob", 160+5)),
			want:  nil,
		},
		{
			name:  "server session identity: beyond ServerStartJitter it is a reconnect; in a full snapshot the old interval ends because it is no longer matched",
			given: given,
			when:  again(server("PC7", "bob", 160-6)),
			want: []string{
				`insert server PC7/bob start=-1m34s open`,
				`update server PC7/bob start=-1m40s last=0 end<+1m`,
			},
		},
		{
			name:  "server session identity: a reconnect in a Delta ends the old interval at once",
			given: given,
			when: []Report{func() Report {
				r := ivDelta(2, at(time.Minute))
				r.ServerSessions = ivServers(server("PC7", "bob", 10))
				return r
			}()},
			want: []string{
				`insert server PC7/bob start=+50s open`,
				`update server PC7/bob start=-1m40s last=0 end<+1m`,
			},
		},
		{
			name:  "server session identity: without ActiveTime any open interval of the pair matches",
			given: given,
			when:  again(ivServer("PC7", "bob")),
			want:  nil,
		},
		{
			name: "server session identity: without ActiveTime at first sight, start = the observation",
			when: []Report{ivFull(1, at(0), nil, ivServers(ivServer("PC7", "bob")))},
			want: []string{`insert server PC7/bob start=0 open`},
		},
		{
			name:  "server session identity: the pair is (ComputerName, UserName)",
			given: given,
			when:  again(server("PC7", "alice", 160)),
			want: []string{
				`insert server PC7/alice start=-1m40s open`,
				`update server PC7/bob start=-1m40s last=0 end<+1m`,
			},
		},
		{
			name:  "server session identity: two sessions of one pair keep one interval each",
			given: []Report{ivFull(1, at(0), nil, ivServers(server("PC7", "bob", 100), server("PC7", "bob", 1000)))},
			when:  again(server("PC7", "bob", 1060)),
			want:  []string{`update server PC7/bob start=-1m40s last=0 end<+1m`},
		},
	})
}

func TestIntervalRulesSeenAgain(t *testing.T) {
	runIVCases(t, []ivCase{
		{
			name: "session seen again after it was ended: the same logon interval is reopened",
			given: []Report{
				ivFull(1, at(0), ivLogons(ivAlice), nil),
				ivFull(2, at(time.Minute), nil, nil),
			},
			when: []Report{ivFull(3, at(2*time.Minute), ivLogons(ivAlice), nil)},
			want: []string{`update logon 1001@-24h start=-1h open acct=CONTOSO\alice`},
			host: "boot=-24h last=+2m logon=+2m server=+2m",
		},
		{
			name: "session seen again after it was ended: the same server interval is reopened",
			given: []Report{
				ivFull(1, at(0), nil, ivServers(server("PC7", "bob", 100))),
				ivFull(2, at(time.Minute), nil, nil),
			},
			when: []Report{ivFull(3, at(2*time.Minute), nil, ivServers(server("PC7", "bob", 220)))},
			want: []string{`update server PC7/bob start=-1m40s open`},
		},
		{
			name: "session seen again after it was ended in a Delta: the same logon interval is reopened",
			given: []Report{
				ivFull(1, at(0), ivLogons(ivAlice), nil),
				func() Report { r := ivDelta(2, at(time.Minute)); r.EndedLogonIDs = []string{"1001"}; return r }(),
			},
			when: []Report{func() Report { r := ivDelta(3, at(2*time.Minute)); r.LogonSessions = ivLogons(ivAlice); return r }()},
			want: []string{`update logon 1001@-24h start=-1h open acct=CONTOSO\alice`},
		},
		{
			name: "session seen again (server identity): a start beyond ServerStartJitter of the ended interval is a new interval",
			given: []Report{
				ivFull(1, at(0), nil, ivServers(server("PC7", "bob", 100))),
				ivFull(2, at(time.Minute), nil, nil),
			},
			when: []Report{ivFull(3, at(2*time.Minute), nil, ivServers(server("PC7", "bob", 10)))},
			want: []string{`insert server PC7/bob start=+1m50s open`},
		},
	})
}

func TestIntervalRulesHeartbeat(t *testing.T) {
	runIVCases(t, []ivCase{
		{
			name:  "heartbeat: last_seen, logon_seen_at and server_seen_at advance; no session row",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100)))},
			when:  []Report{ivHeartbeat(2, 1, at(time.Minute)), ivHeartbeat(3, 1, at(2*time.Minute))},
			want:  nil,
			host:  "boot=-24h last=+2m logon=+2m server=+2m",
		},
		{
			name: "heartbeat: a class incomplete in the state it confirms keeps its *_seen_at",
			given: []Report{
				ivFull(1, at(0), ivLogons(ivAlice), nil),
				ivFailed(ivFull(2, at(time.Minute), nil, nil), ClassLogonSession),
			},
			when: []Report{ivHeartbeat(3, 2, at(2*time.Minute))},
			want: nil,
			host: "boot=-24h last=+2m logon=0 server=+2m incomplete=Win32_LogonSession",
		},
		{
			name: "unchanged full snapshot: no session row written",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice, ivBob),
				ivServers(server("PC7", "bob", 100), ivServer("PC8", "svc")))},
			when: []Report{
				ivFull(2, at(time.Minute), ivLogons(ivAlice, ivBob), ivServers(server("PC7", "bob", 160), ivServer("PC8", "svc"))),
				ivFull(3, at(2*time.Minute), ivLogons(ivBob, ivAlice), ivServers(ivServer("PC8", "svc"), server("PC7", "bob", 220))),
			},
			want: nil,
			host: "boot=-24h last=+2m logon=+2m server=+2m",
		},
	})
}

func TestIntervalRulesLate(t *testing.T) {
	// The host was seen at 0 and at +4m; a late report was observed in
	// between.
	seenAt0And4 := func(at0, at4 []LogonSession, srv0, srv4 []ServerSession) []Report {
		return []Report{ivFull(1, at(0), at0, srv0), ivFull(2, at(4*time.Minute), at4, srv4)}
	}
	lateCarol := logon("1003", at(time.Minute), "CONTOSO", "carol")
	// booted at +5m, seen at +10m.
	rebooted := []Report{
		ivFull(1, at(0), ivLogons(ivAlice), nil),
		full(2, at(10*time.Minute), at(5*time.Minute), nil, nil),
	}
	endedDelta := func(obs time.Time, ids ...string) Report {
		r := ivDelta(3, obs)
		r.EndedLogonIDs = ids
		r.EndedServerSessions = []ServerSessionKey{{ComputerName: "PC7", UserName: "bob"}}
		return r
	}
	runIVCases(t, []ivCase{
		{
			name:  "late reports: TakenAt not after last_seen is late; it never moves last_seen/*_seen_at back, never changes facts or boot",
			given: seenAt0And4(ivLogons(ivAlice), ivLogons(ivAlice), nil, nil),
			when: []Report{
				func() Report {
					r := full(3, at(3*time.Minute), ivBoot.Add(time.Hour), nil, nil)
					r.Host.Hostname = "renamed"
					return r
				}(),
				ivFull(4, at(4*time.Minute), ivLogons(ivAlice), nil),
			},
			late: true,
			want: nil,
			host: "boot=-24h last=+4m logon=+4m server=+4m",
		},
		{
			name:  "late reports: never closes an interval; open intervals are left alone",
			given: seenAt0And4(ivLogons(ivAlice), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100)), ivServers(server("PC7", "bob", 340))),
			when:  []Report{ivFull(3, at(3*time.Minute), nil, nil), endedDelta(at(3*time.Minute+30*time.Second), "1001")},
			late:  true,
			want:  nil,
		},
		{
			name: "late reports: never reopens an interval (an observation outside its uncertain end changes nothing)",
			given: []Report{
				ivFull(1, at(0), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100))),
				ivFull(2, at(2*time.Minute), nil, nil),
				ivFull(3, at(4*time.Minute), nil, nil),
			},
			when: []Report{ivFull(4, at(3*time.Minute), ivLogons(ivAlice), ivServers(server("PC7", "bob", 280)))},
			late: true,
			want: nil,
		},
		{
			name:  "late reports: last_seen < T < end_before is strict; T at either bound changes nothing",
			given: seenAt0And4(ivLogons(ivAlice), nil, ivServers(server("PC7", "bob", 100)), nil),
			when: []Report{
				ivFull(3, at(0), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100))),
				endedDelta(at(4*time.Minute), "1001"),
			},
			late: true,
			want: nil,
		},
		{
			name:  "late reports: an unknown session becomes a closed interval, last_seen = the late observation, end_before = the next complete observation",
			given: seenAt0And4(ivLogons(ivAlice), ivLogons(ivAlice), nil, nil),
			when:  []Report{ivFull(3, at(3*time.Minute), ivLogons(ivAlice, lateCarol, ivDave), ivServers(server("PC7", "bob", 30)))},
			late:  true,
			want: []string{
				`insert logon 1003@-24h start=+1m last=+3m end<+4m acct=CONTOSO\carol`,
				`insert logon 1004@-24h start=+3m last=+3m end<+4m acct=CONTOSO\dave`,
				`insert server PC7/bob start=+2m30s last=+3m end<+4m`,
			},
			host: "boot=-24h last=+4m logon=+4m server=+4m",
		},
		{
			name: "late reports: an unknown session's end_before is the next boot when earlier; a report naming an earlier boot places its sessions there",
			// alice ended with the boot at +5m: last_seen 0, end_before +5m.
			given: rebooted,
			when:  []Report{ivFull(3, at(3*time.Minute), ivLogons(ivAlice, lateCarol), nil)},
			late:  true,
			want: []string{
				`insert logon 1003@-24h start=+1m last=+3m end<+5m acct=CONTOSO\carol`,
				`update logon 1001@-24h start=-1h last=+3m end<+5m acct=CONTOSO\alice`,
			},
			host: "boot=+5m last=+10m logon=+10m server=+10m boot_since=+10m",
		},
		{
			name:  "late reports: observed before the current boot without naming its own, its logon sessions cannot be placed",
			given: rebooted,
			when:  []Report{func() Report { r := ivDelta(3, at(3*time.Minute)); r.LogonSessions = ivLogons(lateCarol); return r }()},
			late:  true,
			want:  nil,
		},
		{
			name: "late reports: without a complete observation after it to bound the end, an unknown session is not stored",
			given: []Report{
				ivFull(1, at(0), ivLogons(ivAlice), nil),
				ivFailed(ivFull(2, at(4*time.Minute), nil, nil), ClassLogonSession, ClassServerSession),
			},
			when: []Report{ivFull(3, at(3*time.Minute), ivLogons(ivAlice, lateCarol), ivServers(server("PC7", "bob", 30)))},
			late: true,
			want: nil,
		},
		{
			name:  "late reports (server identity): a server session without ActiveTime cannot be placed in time",
			given: seenAt0And4(nil, nil, nil, nil),
			when:  []Report{ivFull(3, at(3*time.Minute), nil, ivServers(ivServer("PC7", "bob")))},
			late:  true,
			want:  nil,
		},
		{
			name:  "late reports: a session it shows whose closed interval has last_seen < T < end_before gets last_seen = T",
			given: seenAt0And4(ivLogons(ivAlice), nil, ivServers(server("PC7", "bob", 100)), nil),
			when:  []Report{ivFull(3, at(3*time.Minute), ivLogons(ivAlice), ivServers(server("PC7", "bob", 280)))},
			late:  true,
			want: []string{
				`update logon 1001@-24h start=-1h last=+3m end<+4m acct=CONTOSO\alice`,
				`update server PC7/bob start=-1m40s last=+3m end<+4m`,
			},
		},
		{
			name:  "late reports: a session it says ended whose closed interval has last_seen < T < end_before gets end_before = T",
			given: seenAt0And4(ivLogons(ivAlice), nil, ivServers(server("PC7", "bob", 100)), nil),
			when:  []Report{endedDelta(at(3*time.Minute), "1001")},
			late:  true,
			want: []string{
				`update logon 1001@-24h start=-1h last=0 end<+3m acct=CONTOSO\alice`,
				`update server PC7/bob start=-1m40s last=0 end<+3m`,
			},
		},
	})
}

func TestIntervalIsLate(t *testing.T) {
	for _, c := range []struct {
		name          string
		lastSeen, obs time.Time
		want          bool
	}{
		{"late reports: no observation yet, not late", time.Time{}, at(0), false},
		{"late reports: after last_seen, not late", at(0), at(time.Microsecond), false},
		{"late reports: equal to last_seen, late", at(0), at(0), true},
		{"late reports: before last_seen, late", at(0), at(-time.Minute), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := isLate(c.lastSeen, c.obs); got != c.want {
				t.Errorf("isLate(%s, %s) = %v", ivRel(c.lastSeen), ivRel(c.obs), got)
			}
		})
	}
}

func TestIntervalCloseBounds(t *testing.T) {
	for _, c := range []struct {
		name                 string
		start, seen, end     time.Time
		wantLast, wantBefore time.Time
	}{
		{"gone: last_seen = last complete observation, end_before = the observation", at(-time.Hour), at(0), at(time.Minute), at(0), at(time.Minute)},
		{"end_before > last_seen >= start_time: started after the last complete observation", at(30 * time.Second), at(0), at(time.Minute), at(30 * time.Second), at(time.Minute)},
		{"end_before > last_seen >= start_time: no complete observation yet", at(-time.Hour), time.Time{}, at(time.Minute), at(-time.Hour), at(time.Minute)},
		{"end_before > last_seen >= start_time: an end not after last_seen moves to just after it", at(-time.Hour), at(time.Minute), at(time.Minute), at(time.Minute), at(time.Minute + time.Microsecond)},
		{"end_before > last_seen >= start_time: an end before the start", at(2 * time.Minute), at(0), at(time.Minute), at(2 * time.Minute), at(2*time.Minute + time.Microsecond)},
	} {
		t.Run(c.name, func(t *testing.T) {
			last, before := closeBounds(c.start, c.seen, c.end)
			if !last.Equal(c.wantLast) || !before.Equal(c.wantBefore) {
				t.Errorf("closeBounds(%s, %s, %s) = (%s, %s), want (%s, %s)", ivRel(c.start), ivRel(c.seen), ivRel(c.end),
					ivRel(last), ivRel(before), ivRel(c.wantLast), ivRel(c.wantBefore))
			}
		})
	}
}

func TestIntervalBootEnd(t *testing.T) {
	last, obs := at(0), at(10*time.Minute)
	for _, c := range []struct {
		name    string
		newBoot time.Time
		want    time.Time
	}{
		{"new boot: between last_seen and the observation, end_before = the boot", at(5 * time.Minute), at(5 * time.Minute)},
		{"new boot: at last_seen, end_before = the observation", last, obs},
		{"new boot: before last_seen, end_before = the observation", at(-time.Minute), obs},
		{"new boot: after the observation, end_before = the observation", at(11 * time.Minute), obs},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := bootEnd(c.newBoot, last, obs); !got.Equal(c.want) {
				t.Errorf("bootEnd(%s, %s, %s) = %s, want %s", ivRel(c.newBoot), ivRel(last), ivRel(obs), ivRel(got), ivRel(c.want))
			}
		})
	}
}

func TestIntervalMatchOpen(t *testing.T) {
	rows := []*serverRow{{id: 1, start: at(0)}, {id: 2, start: at(8 * time.Second)}, {id: 3, start: at(time.Hour)}}
	for _, c := range []struct {
		name  string
		start time.Time
		known bool
		taken []int64
		want  int64 // 0: none
	}{
		{"server session identity: the same start", at(0), true, nil, 1},
		{"server session identity: within ServerStartJitter, the nearest start", at(5 * time.Second), true, nil, 2},
		{"server session identity: ServerStartJitter is inclusive", at(-ServerStartJitter), true, nil, 1},
		{"server session identity: beyond ServerStartJitter, none", at(-ServerStartJitter - time.Microsecond), true, nil, 0},
		{"server session identity: an interval taken by another session of the report is skipped", at(5 * time.Second), true, []int64{2}, 1},
		{"server session identity: without ActiveTime, any interval of the pair (the nearest)", at(50 * time.Minute), false, nil, 3},
		{"server session identity: without ActiveTime, none left", at(0), false, []int64{1, 2, 3}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			taken := map[*serverRow]bool{}
			for _, r := range rows {
				taken[r] = slices.Contains(c.taken, r.id)
			}
			var got int64
			if r := matchOpen(rows, c.start, c.known, taken); r != nil {
				got = r.id
			}
			if got != c.want {
				t.Errorf("matchOpen(start %s, known %v, taken %v) = interval %d, want %d", ivRel(c.start), c.known, c.taken, got, c.want)
			}
		})
	}
}

// TestIntervalClosedQuery checks which closed intervals Ingest reads
// (docs/design/0002-storage.md, "Ingest" step 4).
func TestIntervalClosedQuery(t *testing.T) {
	endedAt1m := []Report{ivFull(1, at(0), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100))), ivFull(2, at(time.Minute), nil, nil)}
	for _, c := range []struct {
		name  string
		given []Report
		hwm   uint64
		when  []Report
		want  string
	}{
		{
			name:  "ingest step 4: open sessions cannot meet a closed interval",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), ivServers(server("PC7", "bob", 100)))},
			when:  []Report{ivFull(2, at(time.Minute), ivLogons(ivAlice), ivServers(server("PC7", "bob", 160)))},
			want:  "nothing",
		},
		{
			name:  "ingest step 4: sessions that started after the last complete observation skip the read",
			given: []Report{ivFull(1, at(0), nil, nil)},
			when:  []Report{ivFull(2, at(time.Minute), ivLogons(ivCarol), ivServers(server("PC7", "bob", 10)))},
			want:  "nothing",
		},
		{
			name:  "ingest step 4: a session that may reappear is read, bounded below by its start and the boot (less a day)",
			given: endedAt1m,
			when:  []Report{ivFull(3, at(2*time.Minute), ivLogons(ivAlice), ivServers(server("PC7", "bob", 220)))},
			want:  "logon [1001] from -48h; server [PC7] from -1m45s",
		},
		{
			name:  "ingest step 4: a server session without ActiveTime that matches no open interval is read from Earliest",
			given: endedAt1m,
			when:  []Report{ivFull(3, at(2*time.Minute), nil, ivServers(ivServer("PC7", "bob")))},
			want:  "logon [] from -48h; server [PC7] from Earliest",
		},
		{
			name:  "ingest step 4: a late report reads every session it names, ended ones from Earliest",
			given: []Report{ivFull(1, at(0), ivLogons(ivAlice), nil), ivFull(2, at(4*time.Minute), ivLogons(ivAlice), nil)},
			when: []Report{func() Report {
				r := ivDelta(3, at(3*time.Minute))
				r.LogonSessions = ivLogons(ivAlice)
				r.EndedLogonIDs = []string{"1003"}
				r.EndedServerSessions = []ServerSessionKey{{ComputerName: "PC7", UserName: "bob"}}
				return r
			}()},
			want: "logon [1001 1003] from Earliest; server [PC7] from Earliest",
		},
		{
			name:  "ingest step 4: after a boot change, the sessions open before it are read too (their keys may have immutable intervals)",
			given: []Report{ivFull(1, at(0), ivLogons(ivSys, ivAlice), ivServers(server("PC7", "bob", 60)))},
			when:  []Report{full(2, at(time.Minute), at(30*time.Second), ivLogons(ivSys, ivAlice), ivServers(server("PC7", "bob", 120)))},
			want:  "logon [999 1001] from -48h; server [PC7] from -1m5s",
		},
		{
			name:  "idempotency: reports at or below the high-water mark are duplicates and read nothing",
			given: endedAt1m,
			hwm:   3,
			when:  []Report{ivFull(3, at(2*time.Minute), ivLogons(ivAlice), ivServers(server("PC7", "bob", 220)))},
			want:  "nothing",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newIVDict(c.given, c.when)
			q := d.stored(c.given).closedQuery(c.when, c.hwm)
			got := "nothing"
			if !q.empty() {
				var computers []string
				for _, id := range q.computers {
					computers = append(computers, d.labels[id])
				}
				got = fmt.Sprintf("logon %v from %s; server %v from %s", q.logonIDs, ivRel(q.logonFrom), computers, ivRel(q.serverFrom))
			}
			if got != c.want {
				t.Errorf("reads:\n  got:  %s\n  want: %s", got, c.want)
			}
		})
	}
}
