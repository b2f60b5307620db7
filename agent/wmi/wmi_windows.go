//go:build windows

package wmi

import (
	"errors"
	"fmt"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	wmilib "github.com/yusufpapurcu/wmi"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// New connects to WMI (root\cimv2 on the local host) and returns a Source.
// It fails when the connection cannot be made or opts is invalid.
func New(opts Options) (*Source, error) {
	c, err := dial()
	if err != nil {
		return nil, fmt.Errorf("wmi: connect to WMI: %w", err)
	}
	s, err := newSource(opts, c, platform{dial: dial, machineGUID: readMachineGUID, smbiosUUID: readSMBIOSUUID, lookupSID: lookupSID})
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return s, nil
}

// dial makes one long-lived SWbemServices. Its client leaves a property
// that the class lacks (or that Wine cannot read) empty instead of failing
// the query, a NULL number nil, and a NULL or empty string "".
func dial() (conn, error) {
	client := &wmilib.Client{AllowMissingFields: true, NonePtrZero: true, PtrNil: true}
	s, err := wmilib.InitializeSWbemServices(client)
	if err != nil {
		return nil, err
	}
	return swbemConn{s}, nil
}

// swbemConn is a conn on a SWbemServices, whose own goroutine makes the COM
// calls on a locked OS thread.
type swbemConn struct{ s *wmilib.SWbemServices }

// Query runs wql in the default namespace (root\cimv2) into dst.
func (c swbemConn) Query(wql string, dst any) error { return c.s.Query(wql, dst) }

// QueryNamespace runs wql in namespace (root\Microsoft\Windows\SMB, say)
// into dst, through the same SWbemServices (which connects to the
// namespace for this query).
func (c swbemConn) QueryNamespace(namespace, wql string, dst any) error {
	return c.s.Query(wql, dst, nil, namespace)
}

// Close releases the connection.
func (c swbemConn) Close() error { return c.s.Close() }

// readMachineGUID reads HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid
// from the 64-bit view of the registry (a 32-bit process would otherwise
// read the redirected view, where the value does not exist).
func readMachineGUID() (string, error) {
	const path = `SOFTWARE\Microsoft\Cryptography`
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, path, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if err != nil {
		return "", fmt.Errorf(`open HKLM\%s: %w`, path, err)
	}
	defer k.Close()
	v, _, err := k.GetStringValue("MachineGuid")
	if err != nil {
		return "", fmt.Errorf(`read HKLM\%s\MachineGuid: %w`, path, err)
	}
	return identity.ParseMachineGUID(v)
}

// readSMBIOSUUID reads Win32_ComputerSystemProduct.UUID once, on a
// connection of its own (it runs before the first snapshot's queries, and
// never again once it answered).
func readSMBIOSUUID() (string, error) {
	var rows []computerSystemProductRow
	if err := wmilib.Query(SelectQuery[computerSystemProductRow](ClassComputerSystemProduct), &rows); err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", errors.New("no instance")
	}
	return rows[0].UUID, nil
}

// lookupSID resolves domain\name with LookupAccountName on the local
// system (which asks a domain controller for a domain account it does not
// know). ERROR_NONE_MAPPED is errAccountNotFound.
func lookupSID(domain, name string) (string, error) {
	account := name
	if domain != "" {
		account = domain + `\` + name
	}
	sid, _, _, err := windows.LookupSID("", account)
	if errors.Is(err, windows.ERROR_NONE_MAPPED) {
		return "", fmt.Errorf("LookupAccountName %s: %w", account, errAccountNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("LookupAccountName %s: %w", account, err)
	}
	return sid.String(), nil
}
