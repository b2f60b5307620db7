//go:build windows

package wmi

import (
	"errors"
	"testing"
)

// TestLookupSID runs LookupAccountName for real: on Windows, or under Wine
// with a test binary (GOOS=windows go test -c ./agent/wmi; wine wmi.test.exe
// -test.run LookupSID).
func TestLookupSID(t *testing.T) {
	sid, err := lookupSID("NT AUTHORITY", "SYSTEM")
	if err != nil || sid != "S-1-5-18" {
		t.Errorf(`NT AUTHORITY\SYSTEM: %q, %v; want S-1-5-18`, sid, err)
	}
	if _, err := lookupSID("NO-SUCH-DOMAIN-7f3a", "no-such-account-7f3a"); !errors.Is(err, errAccountNotFound) {
		t.Errorf("an account that does not exist: err = %v, want errAccountNotFound", err)
	}
}
