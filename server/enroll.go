package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// collectorService implements pb.CollectorServiceServer; the interceptor
// has authenticated every call but Enroll.
type collectorService struct {
	pb.UnimplementedCollectorServiceServer
	s *Server
}

// errEnrollRefused is what every refused credential looks like to the
// caller (C3): it does not say whether the secret was unknown, expired,
// used up or revoked, or the renewal proof bad.
var errEnrollRefused = status.Error(codes.Unauthenticated, "enrollment refused: the secret or renewal proof is not valid")

// Enroll implements CollectorService.Enroll.
func (c *collectorService) Enroll(ctx context.Context, req *pb.EnrollRequest) (*pb.EnrollResponse, error) {
	s := c.s
	now := s.cfg.Now()
	src := peerAddr(ctx)
	srcHost := src
	if h, _, err := net.SplitHostPort(src); err == nil {
		srcHost = h
	}
	if !s.enrollAll.allow("", now) || !s.enrollBySrc.allow(srcHost, now) {
		s.metrics.enrollments.WithLabelValues("rate_limited").Inc()
		s.log.Warn("enroll refused: rate limited", "peer", src)
		return nil, status.Error(codes.ResourceExhausted, "too many enrollments; retry later")
	}
	if req.GetHost() == nil {
		return nil, c.enrollInvalid(src, "host: is required")
	}
	guid, err := identity.ParseMachineGUID(req.GetHost().GetMachineGuid())
	if err != nil {
		return nil, c.enrollInvalid(src, "host.machine_guid: "+err.Error())
	}
	// A placeholder SMBIOS UUID counts as none (identity.Match).
	smbios, err := identity.CanonicalSMBIOSUUID(req.GetHost().GetSmbiosUuid())
	if err != nil {
		return nil, c.enrollInvalid(src, "host.smbios_uuid: "+err.Error())
	}
	if n := len(req.GetCsrDer()); n == 0 || n > pki.MaxCSRSize {
		return nil, c.enrollInvalid(src, "csr_der: must be a DER certificate signing request of 1 to 16384 bytes")
	}
	if field, n := longHostString(req.GetHost(), s.cfg.MaxStringBytes); field != "" {
		return nil, c.enrollInvalid(src, fmt.Sprintf("host.%s: %d bytes, more than %d", field, n, s.cfg.MaxStringBytes))
	}
	if len(req.GetPreviousCertificateDer()) > 0 || len(req.GetRenewalProof()) > 0 {
		return c.reenrollByProof(ctx, req, guid, src)
	}
	if req.GetEnrollmentSecret() == "" || len(req.GetEnrollmentSecret()) > 1024 {
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.log.Warn("enroll refused: no usable secret", "peer", src, "machine_guid", guid)
		return nil, errEnrollRefused
	}

	agentID := identity.NewAgentID()
	h := req.GetHost()
	// enrollAs signs a certificate naming the host hostKey and records the
	// agent for it; signErr is the error to return when signing failed.
	enrollAs := func(hostKey string) (issued pki.IssuedCertificate, signErr, err error) {
		issued, err = s.cfg.CA.SignAgentCSR(req.GetCsrDer(), agentID, hostKey, s.cfg.AgentCertValidity, now)
		if err != nil {
			return issued, c.signError(src, err), nil
		}
		return issued, nil, s.store.EnrollAgent(ctx, store.NewEnrollment{
			Secret:  req.GetEnrollmentSecret(),
			AgentID: agentID,
			Host: store.Host{
				MachineGUID: hostKey, Hostname: h.GetHostname(), Domain: h.GetDomain(),
				OSCaption: h.GetOsCaption(), OSVersion: h.GetOsVersion(), OSBuild: h.GetOsBuild(),
				AgentVersion: h.GetAgentVersion(), SMBIOSUUID: smbios,
			},
			CertSerial:   issued.Certificate.SerialNumber.Text(16),
			CertNotAfter: issued.Certificate.NotAfter,
			Source:       src,
		})
	}
	hostKey := guid
	issued, signErr, err := enrollAs(hostKey)
	if signErr != nil {
		return nil, signErr
	}
	if held := (*store.MachineEnrolledError)(nil); errors.As(err, &held) && held.Clone {
		// Same machine GUID, another SMBIOS UUID: a clone of a golden image
		// (0003-security.md, "Machine identity that survives cloning"), a
		// machine of its own: its host is named by its clone host key.
		hostKey = identity.CloneHostKey(guid, smbios)
		s.log.Warn("enroll: a clone of an enrolled machine (same machine GUID, different SMBIOS UUID): enrolled as a host of its own",
			"peer", src, "machine_guid", guid, "smbios_uuid", smbios, "host_smbios_uuid", held.HostSMBIOSUUID,
			"host_key", hostKey, "hostname", h.GetHostname())
		if issued, signErr, err = enrollAs(hostKey); signErr != nil {
			return nil, signErr
		}
	}
	switch {
	case errors.Is(err, store.ErrBadSecret):
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.log.Warn("enroll refused: secret not valid", "peer", src, "machine_guid", guid, "hostname", h.GetHostname(), "err", err)
		return nil, errEnrollRefused
	case errors.Is(err, store.ErrMachineEnrolled):
		s.metrics.enrollments.WithLabelValues("machine_enrolled").Inc()
		s.log.Error("ALERT enroll refused: machine GUID already held by an enabled agent (reinstalled agent, cloned image, or attack)",
			"peer", src, "machine_guid", guid, "host_key", hostKey, "hostname", h.GetHostname())
		return nil, status.Errorf(codes.FailedPrecondition, "machine GUID %s is enrolled; an admin must allow re-enrollment of %s", guid, hostKey)
	case errors.Is(err, store.ErrInvalidInput):
		return nil, c.enrollInvalid(src, err.Error())
	case err != nil:
		return nil, c.storeFailure("enroll", err)
	}
	s.metrics.enrollments.WithLabelValues("ok").Inc()
	c.checkNameClash(ctx, agentID, hostKey, h, src)
	s.log.Info("agent enrolled", "agent", agentID, "machine_guid", guid, "smbios_uuid", smbios, "host_key", hostKey, "hostname", h.GetHostname(),
		"peer", src, "serial", issued.Certificate.SerialNumber.Text(16), "not_after", issued.Certificate.NotAfter)
	return &pb.EnrollResponse{
		AgentId:        agentID,
		CertificateDer: issued.DER,
		CaChainDer:     issued.ChainDER,
		NotAfter:       timestamppb.New(issued.Certificate.NotAfter),
		RenewAfter:     timestamppb.New(issued.RenewAfter),
	}, nil
}

// checkNameClash alerts when a new agent's host takes the name of another
// host that has an enabled agent (C12): a re-imaged machine with a new
// machine GUID, or a fake host posing as a real one to fill its history
// with invented sessions. The enrollment stands (both can be legitimate);
// the alert and sessionaudit_enrollment_name_clashes_total tell an admin
// to look, and query results always carry the machine GUID beside the name.
func (c *collectorService) checkNameClash(ctx context.Context, agentID, guid string, h *pb.Host, src string) {
	s := c.s
	others, err := s.store.HostsNamedLike(ctx, h.GetHostname(), h.GetDomain(), guid)
	if err != nil {
		s.log.Warn("enroll: could not check for hosts of the same name", "agent", agentID, "err", err)
		return
	}
	if len(others) == 0 {
		return
	}
	s.metrics.nameClashes.Inc()
	s.log.Error("ALERT agent enrolled for a host name another enabled host has (re-imaged machine, or a fake host?)",
		"agent", agentID, "machine_guid", guid, "hostname", h.GetHostname(), "domain", h.GetDomain(),
		"other_machine_guids", strings.Join(others, ","), "peer", src)
}

// reenrollByProof renews an agent whose certificate expired (C5): the same
// agent id, for a new key, if the caller proves it holds the old key, the
// agent is enabled, and the certificate is the latest issued to it.
func (c *collectorService) reenrollByProof(ctx context.Context, req *pb.EnrollRequest, guid, src string) (*pb.EnrollResponse, error) {
	s := c.s
	now := s.cfg.Now()
	id, err := s.cfg.Trust.VerifyRenewalProof(req.GetPreviousCertificateDer(), req.GetRenewalProof(), req.GetCsrDer(), now, s.cfg.RenewalGrace)
	if err != nil {
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.log.Warn("enroll by renewal proof refused: proof", "peer", src, "machine_guid", guid, "err", err)
		return nil, errEnrollRefused
	}
	smbios, _ := identity.CanonicalSMBIOSUUID(req.GetHost().GetSmbiosUuid()) // checked by Enroll
	if !identity.BoundHost(id.MachineGUID, guid, smbios) {
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.log.Warn("enroll by renewal proof refused: host.machine_guid differs from the certificate's",
			"peer", src, "agent", id.AgentID, "cert_guid", id.MachineGUID, "machine_guid", guid)
		return nil, errEnrollRefused
	}
	agent, err := s.store.Agent(ctx, id.AgentID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.log.Warn("enroll by renewal proof refused: unknown agent", "peer", src, "agent", id.AgentID)
		return nil, errEnrollRefused
	case err != nil:
		return nil, c.storeFailure("enroll", err)
	case agent.Disabled || agent.MachineGUID != id.MachineGUID:
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.log.Warn("enroll by renewal proof refused: agent disabled or bound to another machine", "peer", src,
			"agent", id.AgentID, "disabled", agent.Disabled, "agent_guid", agent.MachineGUID)
		return nil, errEnrollRefused
	case !knownSerial(agent, id.Serial):
		// A superseded certificate after its successor was used: the key is
		// in use twice (C6).
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.keyReuse(ctx, pb.CollectorService_Enroll_FullMethodName, agent, id)
		return nil, errEnrollRefused
	case !latestSerial(agent, id.Serial):
		// The previous certificate, its successor never used: a holder that
		// lost the Renew response and then stayed off past expiry; C5
		// renews only the latest.
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.log.Warn("enroll by renewal proof refused: not the agent's latest certificate (its successor was never used)",
			"peer", src, "agent", id.AgentID, "serial", id.Serial, "latest", agent.CertSerial)
		return nil, errEnrollRefused
	}
	return c.reissue(ctx, id, req.GetCsrDer(), src, "renewal proof")
}

// Renew implements CollectorService.Renew.
func (c *collectorService) Renew(ctx context.Context, req *pb.RenewRequest) (*pb.RenewResponse, error) {
	s := c.s
	a, _ := agentFrom(ctx)
	if !s.renewLimit.allow(a.AgentID, s.cfg.Now()) {
		s.metrics.renewals.WithLabelValues("rate_limited").Inc()
		return nil, status.Errorf(codes.ResourceExhausted, "agent %s renewed too often; at most %d per hour", a.AgentID, s.cfg.RenewPerHour)
	}
	if n := len(req.GetCsrDer()); n == 0 || n > pki.MaxCSRSize {
		s.metrics.renewals.WithLabelValues("invalid").Inc()
		return nil, status.Error(codes.InvalidArgument, "csr_der: must be a DER certificate signing request of 1 to 16384 bytes")
	}
	agent, err := s.store.Agent(ctx, a.AgentID)
	if err != nil {
		return nil, c.storeFailure("renew", err)
	}
	if !knownSerial(agent, a.Serial) {
		// Superseded since the interceptor looked (another collector saw the
		// successor used, or renewed it).
		s.metrics.renewals.WithLabelValues("refused").Inc()
		s.keyReuse(ctx, pb.CollectorService_Renew_FullMethodName, agent, a.AgentIdentity)
		return nil, status.Errorf(codes.PermissionDenied, "certificate %s of agent %s has been superseded; enroll again", a.Serial, a.AgentID)
	}
	if agent.CertSerial != "" && !strings.EqualFold(agent.CertSerial, a.Serial) {
		// The previous certificate, whose successor has not been used (the
		// interceptor refuses it once the successor was used, and any older
		// one, as key reuse: C6): the holder lost the Renew response.
		s.log.Warn("renew with the previous certificate: its successor was never used (a lost Renew response)", "agent", a.AgentID,
			"serial", a.Serial, "latest", agent.CertSerial, "peer", peerAddr(ctx))
	}
	resp, err := c.reissue(ctx, a.AgentIdentity, req.GetCsrDer(), peerAddr(ctx), "renew")
	if err != nil {
		return nil, err
	}
	return &pb.RenewResponse{
		CertificateDer: resp.CertificateDer, CaChainDer: resp.CaChainDer,
		NotAfter: resp.NotAfter, RenewAfter: resp.RenewAfter,
	}, nil
}

// reissue signs csr for an existing agent and records the certificate.
func (c *collectorService) reissue(ctx context.Context, id pki.AgentIdentity, csr []byte, src, how string) (*pb.EnrollResponse, error) {
	s := c.s
	issued, err := s.cfg.CA.SignAgentCSR(csr, id.AgentID, id.MachineGUID, s.cfg.AgentCertValidity, s.cfg.Now())
	if err != nil {
		return nil, c.signError(src, err)
	}
	serial := issued.Certificate.SerialNumber.Text(16)
	if err := s.store.RecordAgentCertificate(ctx, id.AgentID, serial, issued.Certificate.NotAfter); err != nil {
		return nil, c.storeFailure(how, err)
	}
	s.agents.forget(id.AgentID)
	s.metrics.renewals.WithLabelValues("ok").Inc()
	s.log.Info("agent certificate renewed", "how", how, "agent", id.AgentID, "machine_guid", id.MachineGUID,
		"peer", src, "old_serial", id.Serial, "serial", serial, "not_after", issued.Certificate.NotAfter)
	return &pb.EnrollResponse{
		AgentId:        id.AgentID,
		CertificateDer: issued.DER,
		CaChainDer:     issued.ChainDER,
		NotAfter:       timestamppb.New(issued.Certificate.NotAfter),
		RenewAfter:     timestamppb.New(issued.RenewAfter),
	}, nil
}

func (c *collectorService) enrollInvalid(src, msg string) error {
	c.s.metrics.enrollments.WithLabelValues("invalid").Inc()
	c.s.log.Warn("enroll refused: invalid request", "peer", src, "reason", msg)
	return status.Error(codes.InvalidArgument, msg)
}

func (c *collectorService) signError(src string, err error) error {
	if errors.Is(err, pki.ErrInvalidCSR) {
		c.s.metrics.enrollments.WithLabelValues("invalid").Inc()
		c.s.log.Warn("certificate request refused", "peer", src, "err", err)
		return status.Errorf(codes.InvalidArgument, "csr_der: %v", err)
	}
	c.s.log.Error("signing an agent certificate failed", "peer", src, "err", err)
	return status.Error(codes.Internal, "the collector could not sign the certificate")
}

func (c *collectorService) storeFailure(what string, err error) error {
	c.s.metrics.storeErrors.Inc()
	c.s.log.Error(what+": store failed", "err", err)
	return c.s.unavailable("the store is unavailable; retry later")
}

// longHostString returns the first of h's strings longer than max bytes,
// and its length; "" when none is.
func longHostString(h *pb.Host, max int) (field string, n int) {
	for _, p := range [][2]string{
		{"hostname", h.GetHostname()}, {"domain", h.GetDomain()}, {"os_caption", h.GetOsCaption()},
		{"os_version", h.GetOsVersion()}, {"os_build", h.GetOsBuild()}, {"agent_version", h.GetAgentVersion()},
	} {
		if len(p[1]) > max {
			return p[0], len(p[1])
		}
	}
	return "", 0
}
