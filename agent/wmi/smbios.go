package wmi

import (
	"log/slog"
	"sync"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// ClassComputerSystemProduct is the class whose UUID property is the SMBIOS
// system UUID, the second half of the machine's identity
// (0003-security.md, "Machine identity that survives cloning").
const ClassComputerSystemProduct = "Win32_ComputerSystemProduct"

// computerSystemProductRow is the one property read from
// Win32_ComputerSystemProduct.
type computerSystemProductRow struct {
	UUID string
}

// smbiosReader reads the SMBIOS UUID once: it does not change while the
// machine runs. A read that fails is retried at the next snapshot and
// logged once; a placeholder (identity.UsableSMBIOSUUID) is final and
// sent as "".
type smbiosReader struct {
	read func() (string, error)

	mu     sync.Mutex
	done   bool
	uuid   string
	logged bool
}

// get returns the canonical SMBIOS UUID, or "" when there is none to send.
func (r *smbiosReader) get(log *slog.Logger) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || r.read == nil {
		return r.uuid
	}
	raw, err := r.read()
	if err != nil {
		if !r.logged {
			log.Warn("SMBIOS UUID not read: enrollment tells clones of one image apart by it; retrying at the next snapshot",
				"class", ClassComputerSystemProduct, "error", err)
			r.logged = true
		}
		return ""
	}
	r.done = true
	u, err := identity.ParseSMBIOSUUID(raw)
	if err != nil {
		log.Warn("SMBIOS UUID not usable: this machine is known by its machine GUID and host name only",
			"class", ClassComputerSystemProduct, "uuid", raw, "error", err)
		return ""
	}
	r.uuid = u
	return u
}
