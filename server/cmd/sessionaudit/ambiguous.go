package main

import (
	"fmt"
	"strings"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// warnAmbiguous says on stderr, once, that the host selector of flagName
// (its value sel) named several hosts, which the answer mixes: a host name
// two machines report (a machine that took another's name). Nothing is
// written when hosts is empty, so that unambiguous answers are unchanged.
// The rows name their host by machine GUID (--json, --csv: machine_guid).
func (c *cli) warnAmbiguous(flagName, sel string, hosts []*pb.HostRef) {
	if len(hosts) == 0 {
		return
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		name := h.GetHostname()
		if h.GetDomain() != "" {
			name += "." + h.GetDomain()
		}
		names[i] = name + " (machine GUID " + h.GetMachineGuid() + ")"
	}
	fmt.Fprintf(c.stderr, "sessionaudit: warning: %s %q names %d hosts, whose sessions are listed together: %s; "+
		"query by machine GUID to see one\n", flagName, sanitize(sel), len(hosts), sanitize(strings.Join(names, ", ")))
}

// warnKeyReuse says on stderr, one line per host, which listed hosts'
// agents presented a superseded certificate after its successor was used
// (HostStatus.agent_key_reuse_at): the agent's key is in use twice.
func (c *cli) warnKeyReuse(hosts []*pb.HostStatus) {
	for _, h := range hosts {
		t := h.GetAgentKeyReuseAt()
		if t == nil {
			continue
		}
		fmt.Fprintf(c.stderr, "sessionaudit: warning: host %s (machine GUID %s): its agent's key is in use twice "+
			"(a superseded certificate presented since %s); its reports may be forged: an admin should disable agent %s\n",
			sanitize(h.GetHost().GetHostname()), sanitize(h.GetHost().GetMachineGuid()),
			t.AsTime().UTC().Format("2006-01-02T15:04:05Z"), sanitize(h.GetAgentId()))
	}
}
