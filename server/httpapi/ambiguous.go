package httpapi

import (
	"fmt"
	"strconv"
	"strings"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// AmbiguousHostsHeader names, in an answer whose host parameter named
// several hosts (a host name two machines report), their machine GUIDs,
// comma-separated; the rows mix their sessions, each with its
// machine_guid. A Warning header (code 299) says the same to people.
// Neither is sent when the parameter named one host or none.
const AmbiguousHostsHeader = "Sessionaudit-Ambiguous-Hosts"

// warnAmbiguous sets the headers of an answer whose parameter param (value
// sel) named the given hosts, when they are more than one.
func (c *call) warnAmbiguous(param, sel string, hosts []*pb.HostRef) {
	if len(hosts) < 2 {
		return
	}
	guids := make([]string, len(hosts))
	names := make([]string, len(hosts))
	for i, h := range hosts {
		guids[i] = h.GetMachineGuid()
		names[i] = h.GetHostname() + "." + h.GetDomain() + " (" + h.GetMachineGuid() + ")"
	}
	c.w.Header().Set(AmbiguousHostsHeader, strings.Join(guids, ", "))
	msg := fmt.Sprintf("%s=%s names %d hosts, whose sessions are listed together: %s; query by machine GUID to see one",
		param, sel, len(hosts), strings.Join(names, ", "))
	c.w.Header().Add("Warning", "299 sessionaudit "+strconv.QuoteToASCII(msg))
}
