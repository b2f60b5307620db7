package server

// The conversions from the store's answers to the query protocol's
// messages. Their opposite, reports from the protocol into the store's
// types, is in proto_to_store.go.

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
)

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func hostRefToProto(h store.HostRef) *pb.HostRef {
	return &pb.HostRef{MachineGuid: h.MachineGUID, Hostname: h.Hostname, Domain: h.Domain}
}

// hostRefsToProto converts the hosts an ambiguous host selector named; nil
// for none.
func hostRefsToProto(hs []store.HostRef) []*pb.HostRef {
	var out []*pb.HostRef
	for _, h := range hs {
		out = append(out, hostRefToProto(h))
	}
	return out
}

func hostToProto(h store.Host) *pb.Host {
	return &pb.Host{MachineGuid: h.MachineGUID, Hostname: h.Hostname, Domain: h.Domain,
		OsCaption: h.OSCaption, OsVersion: h.OSVersion, OsBuild: h.OSBuild,
		LastBootTime: ts(h.LastBootTime), AgentVersion: h.AgentVersion}
}

func endToProto(e store.End) *pb.SessionEnd {
	out := &pb.SessionEnd{LastSeen: ts(e.LastSeen), Open: e.Open}
	if !e.Open {
		out.EndBefore = ts(e.EndBefore)
	}
	return out
}

func logonIntervalToProto(l store.LogonInterval) *pb.LogonSessionInterval {
	s := l.Session
	ls := &pb.LogonSession{
		AuthenticationPackage: s.AuthenticationPackage, Caption: s.Caption, Description: s.Description,
		InstallDate: ts(s.InstallDate), LogonId: s.LogonID, Name: s.Name, StartTime: ts(s.StartTime),
		Status: s.Status, LingeringSince: ts(s.LingeringSince),
	}
	if s.LogonType != nil {
		v := *s.LogonType
		ls.LogonTypeRaw = &v
		ls.LogonType = pb.LogonTypeFromWMI(v)
	}
	if s.Account != nil {
		ls.Account = &pb.Account{Domain: s.Account.Domain, Name: s.Account.Name, Sid: s.Account.SID}
	}
	return &pb.LogonSessionInterval{Host: hostRefToProto(l.Host), BootTime: ts(l.BootTime), Session: ls, End: endToProto(l.End)}
}

func serverIntervalToProto(si store.ServerInterval) *pb.ServerSessionInterval {
	s := si.Session
	ss := &pb.ServerSession{
		Caption: s.Caption, ClientType: s.ClientType, ComputerName: s.ComputerName, Description: s.Description,
		InstallDate: ts(s.InstallDate), Name: s.Name, Status: s.Status, TransportName: s.TransportName,
		UserName: s.UserName, ActiveTime: s.ActiveTime, IdleTime: s.IdleTime, ResourcesOpened: s.ResourcesOpened,
	}
	if s.SessionType != nil {
		v := *s.SessionType
		ss.SessionTypeRaw = &v
		ss.SessionType = pb.ServerSessionTypeFromWMI(v)
	}
	return &pb.ServerSessionInterval{Host: hostRefToProto(si.Host), StartTime: ts(si.StartTime), Session: ss, End: endToProto(si.End)}
}
