package wmi

import (
	"context"
	"errors"
	"testing"
)

// TestSMBIOSUUIDInHost: the SMBIOS UUID is read once, sent in Host in
// canonical form; a failed read is retried at the next snapshot, a
// placeholder is sent as "" and not read again.
func TestSMBIOSUUIDInHost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reads []string // "" fails the read
		want  []string // Host.smbios_uuid of each snapshot
		calls int
	}{
		{"read once", []string{"4C4C4544-0031-3510-8044-B7C04F4E3132"},
			[]string{"4c4c4544-0031-3510-8044-b7c04f4e3132", "4c4c4544-0031-3510-8044-b7c04f4e3132"}, 1},
		{"failure retried", []string{"", "{4c4c4544-0031-3510-8044-b7c04f4e3132}"},
			[]string{"", "4c4c4544-0031-3510-8044-b7c04f4e3132", "4c4c4544-0031-3510-8044-b7c04f4e3132"}, 2},
		{"placeholder final", []string{"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"}, []string{"", ""}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeWMI(t)
			p := f.platform()
			calls := 0
			p.smbiosUUID = func() (string, error) {
				v := tc.reads[min(calls, len(tc.reads)-1)]
				calls++
				if v == "" {
					return "", errors.New("access denied")
				}
				return v, nil
			}
			s, err := newSource(Options{Logger: testLogger(t), Exit: noExit(t)}, nil, p)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i, want := range tc.want {
				snap, err := s.Snapshot(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if got := snap.GetHost().GetSmbiosUuid(); got != want {
					t.Errorf("snapshot %d: smbios_uuid = %q, want %q", i, got, want)
				}
			}
			if calls != tc.calls {
				t.Errorf("%d reads, want %d", calls, tc.calls)
			}
		})
	}
}
