package source

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/cim"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// ClassSessionProcess is the association between Win32_LogonSession
// (Antecedent) and Win32_Process (Dependent) the agent counts processes
// with, to tell a lingering logon session from a live one. It is not one of
// Classes: its query is optional, its failure is no collection error of a
// reported class (the sessions are reported all the same, with the previous
// verdict; see Lingering).
const ClassSessionProcess = "Win32_SessionProcess"

// SessionProcessRow is one instance of the association
// Win32_SessionProcess: Antecedent is an object path to a
// Win32_LogonSession (key LogonId), Dependent an object path to a
// Win32_Process (key Handle).
type SessionProcessRow struct {
	Antecedent string
	Dependent  string
}

// LingerGrace is how old a session must be (TakenAt minus its StartTime)
// before having no process makes it lingering: a logon in progress may
// not have started its first process yet.
const LingerGrace = 2 * time.Minute

// LingeringType reports whether a logon type (the raw WMI number) is one
// whose sessions the agent checks for lingering: interactive (2), Remote
// Desktop (10), cached interactive (11), cached Remote Desktop (12) and
// cached unlock (13). These are the sessions of a person at the host, which
// hold processes while the person is logged on (explorer.exe, the shell,
// sihost.exe...). Network, batch and service logons hold no process of
// their own as a rule: no process says nothing about them.
func LingeringType(logonType *uint32) bool {
	if logonType == nil {
		return false
	}
	switch *logonType {
	case 2, 10, 11, 12, 13:
		return true
	}
	return false
}

// CountSessionProcesses counts the Win32_SessionProcess links per LogonId
// of their Antecedent. A link whose Antecedent is not a Win32_LogonSession
// path with a LogonId is skipped and counted in bad.
func CountSessionProcesses(links []SessionProcessRow) (counts map[string]int, bad int) {
	counts = make(map[string]int)
	for _, l := range links {
		id, err := sessionProcessLogonID(l.Antecedent)
		if err != nil {
			bad++
			continue
		}
		counts[id]++
	}
	return counts, bad
}

// sessionProcessLogonID returns the LogonId a Win32_SessionProcess.Antecedent
// names.
func sessionProcessLogonID(antecedent string) (string, error) {
	p, err := cim.ParseObjectPath(antecedent)
	if err != nil {
		return "", err
	}
	if !strings.EqualFold(p.Class, ClassLogonSession) {
		return "", fmt.Errorf("antecedent %q: class %q, want %s", antecedent, p.Class, ClassLogonSession)
	}
	id, ok := p.Key("LogonId")
	if !ok || id == "" {
		return "", fmt.Errorf("antecedent %q: no LogonId key", antecedent)
	}
	return id, nil
}

// Lingering remembers, from pass to pass, since when each logon session
// has been seen lingering, and sets LogonSession.lingering_since. The rule:
//
//   - A session is lingering when its type is a LingeringType, it is at
//     least LingerGrace old (or has no StartTime) and Win32_SessionProcess
//     links no process to it.
//   - lingering_since is the TakenAt of the first pass that saw it so; it
//     stays while every pass sees it so, and clears as soon as a pass sees a
//     process of it (a later lingering starts again from that pass).
//   - A pass that could not count (counts nil: the query failed or was not
//     run) keeps the previous verdicts, so that one failed query does not
//     make the sessions flap.
//   - A session gone from the pass is forgotten.
//
// The zero value is ready to use. Not safe for concurrent use.
type Lingering struct {
	since map[string]time.Time
}

// Mark applies the rule to the sessions of one pass taken at takenAt, with
// counts from CountSessionProcesses (nil when the pass could not count),
// and sets or clears their LingeringSince.
func (l *Lingering) Mark(sessions []*sessionauditv1.LogonSession, counts map[string]int, takenAt time.Time) {
	next := make(map[string]time.Time, len(l.since))
	for _, s := range sessions {
		id := s.GetLogonId()
		prev, was := l.since[id]
		var lingering bool
		if counts == nil {
			lingering = was
		} else {
			lingering = LingeringType(s.LogonTypeRaw) && counts[id] == 0 && oldEnough(s, takenAt)
		}
		if !lingering {
			s.LingeringSince = nil
			continue
		}
		if !was {
			prev = takenAt.UTC()
		}
		next[id] = prev
		s.LingeringSince = timestamppb.New(prev)
	}
	l.since = next
}

// oldEnough reports whether s started at least LingerGrace before takenAt
// (true when its start is not known).
func oldEnough(s *sessionauditv1.LogonSession, takenAt time.Time) bool {
	if s.GetStartTime() == nil {
		return true
	}
	return !s.GetStartTime().AsTime().After(takenAt.Add(-LingerGrace))
}
