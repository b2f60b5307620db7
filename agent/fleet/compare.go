package fleet

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/sessionaudit/sessionaudit/proto/limits"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Observed is one session interval as the collector answers it.
type Observed struct {
	Kind Kind
	// Key is the LogonId, or ComputerName + `\` + UserName.
	Key   string
	Start time.Time
	// Open, LastSeen and EndBefore are the interval's end.
	Open      bool
	LastSeen  time.Time
	EndBefore time.Time
	// Account and Package describe a logon session, for display.
	Account, Package string
	// LogonTypeRaw is a logon session's Win32_LogonSession.LogonType as
	// the protocol carries it (logon_type_raw), nil when absent; for
	// display (Compare does not look at it).
	LogonTypeRaw *uint32
}

// Reader answers "who was on host at t". QueryReader asks a collector over
// gRPC; tests on the collector's side (server/e2e) read its store directly.
type Reader interface {
	// WhoWasOn returns every session of host (a machine GUID or a name)
	// present at t, all pages.
	WhoWasOn(ctx context.Context, host string, t time.Time) ([]Observed, error)
}

// QueryReader reads the store through the collector's QueryService, as an
// analyst does, with an API token.
type QueryReader struct {
	Client pb.QueryServiceClient
	// Token is the API token ("sa_..."), sent as "authorization: Bearer".
	Token string
}

// WhoWasOn implements Reader with QueryService.WhoWasOn.
func (r QueryReader) WhoWasOn(ctx context.Context, host string, t time.Time) ([]Observed, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.Token)
	var out []Observed
	token := ""
	for {
		resp, err := r.Client.WhoWasOn(ctx, &pb.WhoWasOnRequest{Host: host, At: ts(t), PageSize: limits.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("fleet: QueryService.WhoWasOn %s at %s: %w", host, t.Format(time.RFC3339), err)
		}
		for _, l := range resp.GetLogonSessions() {
			s := l.GetSession()
			o := Observed{Kind: Logon, Key: s.GetLogonId(), Start: s.GetStartTime().AsTime(), Package: s.GetAuthenticationPackage()}
			o.Open, o.LastSeen, o.EndBefore = endFromProto(l.GetEnd())
			if a := s.GetAccount(); a != nil {
				o.Account = a.GetDomain() + `\` + a.GetName()
			}
			if s.LogonTypeRaw != nil {
				raw := s.GetLogonTypeRaw()
				o.LogonTypeRaw = &raw
			}
			out = append(out, o)
		}
		for _, si := range resp.GetServerSessions() {
			s := si.GetSession()
			o := Observed{Kind: Server, Key: s.GetComputerName() + `\` + s.GetUserName(), Start: si.GetStartTime().AsTime()}
			o.Open, o.LastSeen, o.EndBefore = endFromProto(si.GetEnd())
			out = append(out, o)
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

func endFromProto(e *pb.SessionEnd) (open bool, lastSeen, endBefore time.Time) {
	if e.GetLastSeen() != nil {
		lastSeen = e.GetLastSeen().AsTime()
	}
	if e.GetEndBefore() != nil {
		endBefore = e.GetEndBefore().AsTime()
	}
	return e.GetOpen(), lastSeen, endBefore
}

// Mismatch is one difference between the store and the ground truth.
type Mismatch struct {
	Host string
	// At is the moment asked.
	At time.Time
	// What says what differs, naming the interval.
	What string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s at %s: %s", m.Host, m.At.Format(time.RFC3339), m.What)
}

// Comparison is the result of Compare.
type Comparison struct {
	Hosts, Intervals, Queries int
	Mismatches                []Mismatch
}

// Compare asks r who was on each host at the moment each of its intervals
// was first seen, and checks the answer against the truth: every interval
// present then is returned with the same start (to the microsecond, the
// store's precision); an interval the truth holds as open is open; an
// ended one is closed with LastSeen at or after the last report that had
// it and EndBefore at or before the first that did not; nothing the truth
// does not hold is returned.
func Compare(ctx context.Context, r Reader, truths []*HostTruth) (Comparison, error) {
	var c Comparison
	for _, h := range truths {
		c.Hosts++
		c.Intervals += len(h.Intervals)
		all := make(map[string]bool, len(h.Intervals))
		var moments []time.Time
		seenMoment := map[time.Time]bool{}
		for _, iv := range h.Intervals {
			all[ivKey(iv.Kind, iv.Key, iv.Start)] = true
			if !seenMoment[iv.FirstSeen] {
				seenMoment[iv.FirstSeen] = true
				moments = append(moments, iv.FirstSeen)
			}
		}
		sort.Slice(moments, func(i, j int) bool { return moments[i].Before(moments[j]) })
		for _, t := range moments {
			got, err := r.WhoWasOn(ctx, h.MachineGUID, t)
			if err != nil {
				return c, err
			}
			c.Queries++
			bad := func(format string, args ...any) {
				c.Mismatches = append(c.Mismatches, Mismatch{Host: h.Hostname, At: t, What: fmt.Sprintf(format, args...)})
			}
			byKey := map[string]Observed{}
			byName := map[string][]Observed{}
			for _, o := range got {
				byKey[ivKey(o.Kind, o.Key, o.Start)] = o
				byName[string(o.Kind)+" "+o.Key] = append(byName[string(o.Kind)+" "+o.Key], o)
				if !all[ivKey(o.Kind, o.Key, o.Start)] {
					bad("extra: the store has %s %s started %s, which no report implied", o.Kind, o.Key, o.Start.Format(time.RFC3339Nano))
				}
			}
			for _, iv := range h.At(t) {
				o, ok := byKey[ivKey(iv.Kind, iv.Key, iv.Start)]
				if !ok {
					if others := byName[string(iv.Kind)+" "+iv.Key]; len(others) > 0 {
						bad("start differs: %v; the store says %s", iv, others[0].Start.Format(time.RFC3339Nano))
					} else {
						bad("missing: %v", iv)
					}
					continue
				}
				if !iv.FirstSeen.Equal(t) {
					continue // its end is checked at its first sight
				}
				switch {
				case iv.Open() && !o.Open:
					bad("end differs: %v; the store ended it in (%s, %s]", iv, o.LastSeen.Format(time.RFC3339), o.EndBefore.Format(time.RFC3339))
				case !iv.Open() && o.Open:
					bad("end differs: %v; the store holds it open", iv)
				case !iv.Open() && (o.LastSeen.Before(iv.LastPresent.Truncate(time.Microsecond)) ||
					o.EndBefore.After(iv.FirstAbsent) || !o.LastSeen.Before(o.EndBefore)):
					bad("end outside the bounds: %v; the store says (%s, %s]", iv, o.LastSeen.Format(time.RFC3339), o.EndBefore.Format(time.RFC3339))
				}
			}
		}
	}
	return c, nil
}

func ivKey(k Kind, key string, start time.Time) string {
	return fmt.Sprintf("%s %s %d", k, key, start.Truncate(time.Microsecond).UnixMicro())
}
