package config

import (
	"encoding/xml"
	"strings"
	"testing"
)

// TestEnrollmentSecretExplain: the enrollment secret's policy says who can
// read it (every domain user through SYSVOL unless the GPO is restricted,
// and local users through the registry), how to restrict the GPO, and how
// to limit the secret; and it does not send admins to the MSI property as
// a private place (its registry value is readable by local users).
func TestEnrollmentSecretExplain(t *testing.T) {
	var res adml
	if err := xml.Unmarshal(wellFormed(t, admlPath), &res); err != nil {
		t.Fatal(err)
	}
	var explain string
	for _, s := range res.Strings {
		if s.ID == EnrollmentSecret+"_Help" {
			explain = s.Text
		}
	}
	if explain == "" {
		t.Fatalf("no string %s_Help in %s", EnrollmentSecret, admlPath)
	}
	for _, want := range []string{
		"SYSVOL", `Machine\Registry.pol`, "Security Filtering", "remove Authenticated Users", "Domain Computers",
		"Delegation", `HKLM\SOFTWARE\Policies`, "--max-uses", "--expires-in", "secret revoke",
		`HKLM\SOFTWARE\sessionaudit\Agent\EnrollmentSecret`, "readable by local users", `agent.conf`,
	} {
		if !strings.Contains(explain, want) {
			t.Errorf("%s_Help does not say %q", EnrollmentSecret, want)
		}
	}
	if strings.Contains(explain, "To keep it from local users, set it with the MSI") {
		t.Errorf("%s_Help presents the MSI property as private; the installer settings are readable by local users", EnrollmentSecret)
	}
}
