package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/server/pki"
)

// PKI file names inside --pki-dir, shared by init-pki and serve.
const (
	agentCACertFile   = "agent-ca.crt"
	agentCAKeyFile    = "agent-ca.key"
	analystCACertFile = "analyst-ca.crt"
	analystCAKeyFile  = "analyst-ca.key"
	serverCertFile    = "server.crt"
	serverKeyFile     = "server.key"
)

func (c *cli) initPKICommand() *command {
	var dir, dns, ips, caCert, caKey string
	var caValidity, serverValidity time.Duration
	cmd := newCommand("init-pki", "", "First install: create the certificates the collector needs in --pki-dir:\n"+
		"  agent-ca.crt/.key      the CA that signs agents' client certificates (and the server's)\n"+
		"  analyst-ca.crt/.key    a separate CA for analysts' client certificates; move its key\n"+
		"                         off the collector host once you have issued what you need\n"+
		"  server.crt/.key        the collector's TLS certificate, for --dns and --ip\n"+
		"To use an existing enterprise CA instead, give --ca-cert and --ca-key (an\n"+
		"intermediate CA allowed to sign): it becomes the agent CA and no CA is created\n"+
		"for agents. Keys are written mode 0600; existing files are never overwritten.")
	cmd.String(&dir, "pki-dir", "SESSIONAUDIT_PKI_DIR", "/etc/sessionaudit/pki", "directory for the certificates and keys")
	cmd.String(&dns, "dns", "", defaultDNSNames(), "comma-separated DNS names agents use to reach the collector")
	cmd.String(&ips, "ip", "", "127.0.0.1", "comma-separated IP addresses agents use to reach the collector")
	cmd.String(&caCert, "ca-cert", "", "", "an existing CA certificate (PEM) to use as the agent CA")
	cmd.String(&caKey, "ca-key", "", "", "its private key (PEM)")
	cmd.Duration(&caValidity, "ca-validity", "", 10*365*24*time.Hour, "lifetime of the CAs created")
	cmd.Duration(&serverValidity, "server-validity", "", 365*24*time.Hour, "lifetime of the server certificate")
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		if (caCert == "") != (caKey == "") {
			return usageError{"--ca-cert and --ca-key go together"}
		}
		dnsNames := splitList(dns)
		var ipAddrs []net.IP
		for _, s := range splitList(ips) {
			ip := net.ParseIP(s)
			if ip == nil {
				return usageError{fmt.Sprintf("--ip: %q is not an IP address", s)}
			}
			ipAddrs = append(ipAddrs, ip)
		}
		if len(dnsNames)+len(ipAddrs) == 0 {
			return usageError{"--dns or --ip must name at least one address"}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create --pki-dir: %w", err)
		}
		// Refuse before writing anything, so a second run changes nothing.
		for _, f := range []string{agentCACertFile, agentCAKeyFile, analystCACertFile, analystCAKeyFile, serverCertFile, serverKeyFile} {
			if caCert != "" && (f == agentCACertFile || f == agentCAKeyFile) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				return fmt.Errorf("%s already exists: init-pki never overwrites; move the old files away first", filepath.Join(dir, f))
			}
		}
		now := c.now()
		var agentCA *pki.CA
		var err error
		if caCert != "" {
			if agentCA, err = pki.LoadCA(caCert, caKey); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "agent CA: %s (existing, %s)\n", caCert, agentCA.Certificate().Subject)
		} else {
			if agentCA, err = pki.NewCA("sessionaudit agent CA", caValidity, now); err != nil {
				return err
			}
			if err := agentCA.WriteFiles(filepath.Join(dir, agentCACertFile), filepath.Join(dir, agentCAKeyFile), false); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "agent CA: %s\n", filepath.Join(dir, agentCACertFile))
		}
		analystCA, err := pki.NewCA("sessionaudit analyst CA", caValidity, now)
		if err != nil {
			return err
		}
		if err := analystCA.WriteFiles(filepath.Join(dir, analystCACertFile), filepath.Join(dir, analystCAKeyFile), false); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "analyst CA: %s\n", filepath.Join(dir, analystCACertFile))
		srv, err := agentCA.IssueServerCert(dnsNames, ipAddrs, serverValidity, now)
		if err != nil {
			return err
		}
		if err := pki.WriteCertificateFiles(srv, filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile), false); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "server certificate: %s for %s\n", filepath.Join(dir, serverCertFile), strings.Join(append(dnsNames, splitList(ips)...), ", "))
		fmt.Fprintf(c.stdout, "Agents trust %s (the MSI's CA_CERTIFICATE property, or its pin in Group Policy).\n", filepath.Join(dir, agentCACertFile))
		return nil
	}
	return cmd
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// defaultDNSNames is this machine's name and localhost.
func defaultDNSNames() string {
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		return h + ",localhost"
	}
	return "localhost"
}
