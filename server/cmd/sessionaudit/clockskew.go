package main

import (
	"fmt"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// clockSkewWarning is the clock skew, either way, from which `hosts` warns
// about a host: the collector's and the agent's threshold too.
const clockSkewWarning = time.Minute

// warnClockSkew says on stderr, one line per host, which listed hosts'
// clocks were last measured more than clockSkewWarning off the collector's
// (HostStatus.clock_skew): their times are off by about as much. Nothing
// is written for the others, so that the usual output is unchanged.
func (c *cli) warnClockSkew(hosts []*pb.HostStatus) {
	for _, h := range hosts {
		d := h.GetClockSkew()
		if d == nil || d.CheckValid() != nil {
			continue
		}
		skew := d.AsDuration()
		way := "ahead of"
		if skew < 0 {
			skew, way = -skew, "behind"
		}
		if skew <= clockSkewWarning {
			continue
		}
		fmt.Fprintf(c.stderr, "sessionaudit: warning: host %s (machine GUID %s): its clock was %s %s the collector's "+
			"(measured %s); its times (sessions, LAST SEEN) are off by about as much, except reports over an hour "+
			"ahead, which the collector stored with corrected times\n",
			sanitize(h.GetHost().GetHostname()), sanitize(h.GetHost().GetMachineGuid()), skew.Round(time.Second), way,
			h.GetClockSkewMeasuredAt().AsTime().UTC().Format("2006-01-02T15:04:05Z"))
	}
}
