package fleet

import (
	"fmt"
	"sort"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/change"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Kind is the kind of a session.
type Kind string

// Kinds of sessions.
const (
	Logon  Kind = "logon"  // a Win32_LogonSession
	Server Kind = "server" // a Win32_ServerSession (SMB)
)

// Interval is one session as the reports of its host imply it.
type Interval struct {
	Kind Kind
	// Key is the LogonId, or ComputerName + `\` + UserName.
	Key string
	// Account is DOMAIN\name of a logon session, for display.
	Account string
	// Start is the session's start: the logon session's StartTime, or
	// taken_at − ActiveTime of the report that first carried the server
	// session.
	Start time.Time
	// FirstSeen is the taken_at of the first report that had it.
	FirstSeen time.Time
	// LastPresent is the taken_at of the last report that had it (a
	// heartbeat after it counts).
	LastPresent time.Time
	// FirstAbsent is the taken_at of the first report without it; zero
	// while it is open.
	FirstAbsent time.Time
}

// Open reports whether the interval had not ended at the last report.
func (iv *Interval) Open() bool { return iv.FirstAbsent.IsZero() }

func (iv *Interval) String() string {
	end := "open"
	if !iv.Open() {
		end = fmt.Sprintf("ended in (%s, %s]", iv.LastPresent.Format(time.RFC3339), iv.FirstAbsent.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s %s started %s, %s", iv.Kind, iv.Key, iv.Start.Format(time.RFC3339), end)
}

// HostTruth is the ground truth of one host: every interval its reports
// implied, in order of first sight. It is not safe for concurrent use.
type HostTruth struct {
	Hostname    string
	MachineGUID string
	Intervals   []*Interval

	state *change.State
	open  map[string]*Interval // Kind + " " + Key

	// Busiest is the moment (a report's taken_at) with the most sessions
	// present, and BusiestCount that number.
	Busiest      time.Time
	BusiestCount int
}

// NewHostTruth returns the truth of a host before any report.
func NewHostTruth(hostname, machineGUID string) *HostTruth {
	return &HostTruth{Hostname: hostname, MachineGUID: machineGUID, state: change.NewState(), open: map[string]*Interval{}}
}

// Observe applies the next report the host's agent queued.
func (h *HostTruth) Observe(r *pb.Report) error {
	if err := h.state.Apply(r); err != nil {
		return fmt.Errorf("fleet: ground truth of %s: report %d: %w", h.Hostname, r.GetSequence(), err)
	}
	if p := r.GetSnapshot(); p.GetPart() < p.GetPartsTotal() {
		return nil // a snapshot in parts: the state is the host's after its last part
	}
	at := h.state.TakenAt
	seen := make(map[string]bool)
	see := func(kind Kind, key, account string, start time.Time) {
		k := string(kind) + " " + key
		iv := h.open[k]
		if iv != nil && !sameStart(kind, iv.Start, start) {
			iv.FirstAbsent = at // reused LogonId after a reboot, or an SMB reconnect
			iv = nil
		}
		if iv == nil {
			iv = &Interval{Kind: kind, Key: key, Account: account, Start: start, FirstSeen: at}
			h.open[k] = iv
			h.Intervals = append(h.Intervals, iv)
		}
		iv.LastPresent = at
		seen[k] = true
	}
	for _, ls := range h.state.LogonSessions() {
		acct := ""
		if a := ls.GetAccount(); a != nil {
			acct = a.GetDomain() + `\` + a.GetName()
		}
		see(Logon, ls.GetLogonId(), acct, ls.GetStartTime().AsTime())
	}
	for key, start := range h.state.ServerSessionStarts() {
		see(Server, key.ComputerName+`\`+key.UserName, "", start)
	}
	for k, iv := range h.open {
		if !seen[k] {
			iv.FirstAbsent = at
			delete(h.open, k)
		}
	}
	if len(h.open) > h.BusiestCount {
		h.Busiest, h.BusiestCount = at, len(h.open)
	}
	return nil
}

// sameStart reports whether two starts of a session with one key are the
// same session: equal for a logon session; within the tracker's tolerance
// for a server session, whose derived start jitters.
func sameStart(kind Kind, a, b time.Time) bool {
	if kind == Logon {
		return a.Equal(b)
	}
	d := a.Sub(b)
	return d <= change.DefaultStartTolerance && d >= -change.DefaultStartTolerance
}

// At returns the intervals present at t (first seen at or before t and
// last present at or after it), sorted by kind, start and key.
func (h *HostTruth) At(t time.Time) []*Interval {
	var out []*Interval
	for _, iv := range h.Intervals {
		if !iv.FirstSeen.After(t) && !iv.LastPresent.Before(t) {
			out = append(out, iv)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		return a.Key < b.Key
	})
	return out
}
