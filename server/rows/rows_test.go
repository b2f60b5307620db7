package rows

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestNeutralize(t *testing.T) {
	for in, want := range map[string]string{
		"=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0",
		"+1":                 "'+1",
		"-2+3":               "'-2+3",
		"@SUM(A1)":           "'@SUM(A1)",
		"\tx":                "'\tx",
		"\rx":                "'\rx",
		"CONTOSO\\alice":     "CONTOSO\\alice",
		"":                   "",
		"a=b":                "a=b",
	} {
		if got := Neutralize(in); got != want {
			t.Errorf("Neutralize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFromLogonAndCSV(t *testing.T) {
	start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	l := &pb.LogonSessionInterval{
		Host:     &pb.HostRef{Hostname: "WS01", Domain: "contoso.local", MachineGuid: "g"},
		BootTime: timestamppb.New(start.Add(-time.Hour)),
		Session: &pb.LogonSession{LogonId: "999", LogonTypeRaw: proto.Uint32(10), AuthenticationPackage: "Kerberos",
			StartTime: timestamppb.New(start), Account: &pb.Account{Domain: "CONTOSO", Name: "=evil", Sid: "S-1"}},
		End: &pb.SessionEnd{LastSeen: timestamppb.New(start.Add(time.Hour)), EndBefore: timestamppb.New(start.Add(61 * time.Minute))},
	}
	r := FromLogon(l)
	if r.LogonType != "rdp" || *r.LogonTypeRaw != 10 || r.Account != `CONTOSO\=evil` || r.Open ||
		r.Start != "2026-03-01T08:00:00Z" || r.EndBefore != "2026-03-01T09:01:00Z" {
		t.Fatalf("FromLogon = %+v", r)
	}
	unknown := proto.Clone(l).(*pb.LogonSessionInterval)
	unknown.Session.LogonTypeRaw = proto.Uint32(42)
	if got := FromLogon(unknown).LogonType; got != "unknown(42)" {
		t.Errorf("logon type 42 = %q", got)
	}

	var buf bytes.Buffer
	w := NewCSVWriter[Logon](&buf)
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 2 {
		t.Fatalf("csv = %v, %v", recs, err)
	}
	if !slices.Equal(recs[0], Columns[Logon]()) {
		t.Errorf("header = %v", recs[0])
	}
	// The account cell starts with CONTOSO, so it is left alone; check a
	// cell that starts with "=".
	rr := r
	rr.Host = "=HYPERLINK(\"http://x\")"
	buf.Reset()
	w = NewCSVWriter[Logon](&buf)
	_ = w.Write(rr)
	_ = w.Flush()
	if !strings.Contains(buf.String(), `'=HYPERLINK`) {
		t.Errorf("formula not neutralized: %s", buf.String())
	}

	// JSON names are the CSV columns.
	b, _ := json.Marshal(r)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, c := range Columns[Logon]() {
		if _, ok := m[c]; !ok {
			t.Errorf("column %s not in JSON %s", c, b)
		}
	}
}

func TestEmptyCSVHasHeader(t *testing.T) {
	var buf bytes.Buffer
	w := NewCSVWriter[Host](&buf)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(buf.String()); got != strings.Join(Columns[Host](), ",") {
		t.Errorf("empty CSV = %q", got)
	}
}
