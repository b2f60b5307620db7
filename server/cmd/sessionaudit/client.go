package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/limits"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// defaultPort is the collector's gRPC port, added to a --collector without
// one.
const defaultPort = "8443"

// cli holds what every command shares: where it writes, its environment and
// clock, and the connection and output flags.
type cli struct {
	stdout, stderr io.Writer
	env            lookupEnv
	// now is the clock relative times are read against; loc is the zone of
	// --local.
	now func() time.Time
	loc *time.Location

	collector, token, caCert, config string
	insecurePlaintext                bool
	timeout                          time.Duration

	out output
	// pageSize is the largest page asked for; 0 means limits.MaxPageSize. Tests
	// make it small to page through few rows.
	pageSize int
}

// connectionFlags declares the flags that say which collector to ask and
// how.
func (c *cli) connectionFlags(cmd *command) {
	cmd.section("Connection")
	cmd.String(&c.collector, "collector", "SESSIONAUDIT_COLLECTOR", "",
		"the collector's gRPC address, HOST[:PORT] (port "+defaultPort+" when left out)")
	cmd.String(&c.token, "token", "SESSIONAUDIT_TOKEN", "",
		"API token (sat_…), from 'sessionaudit-collector token create'; a flag is visible\n"+
			"to other users in the process list: prefer the variable or the config file")
	cmd.String(&c.caCert, "ca-cert", "SESSIONAUDIT_CA_CERT", "",
		"PEM file of the CA that signed the collector's certificate (default: the system's roots)")
	cmd.String(&c.config, "config", "SESSIONAUDIT_CONFIG", "",
		"config file of \"key = value\" lines: collector, token, ca-cert\n(default "+defaultConfigHelp+")")
	cmd.Bool(&c.insecurePlaintext, "insecure-plaintext-dev", "SESSIONAUDIT_INSECURE_PLAINTEXT_DEV", false,
		"talk to a development collector on a loopback address without TLS")
	cmd.Duration(&c.timeout, "timeout", "SESSIONAUDIT_TIMEOUT", 60*time.Second,
		"how long to wait for each answer of the collector")
}

// settings returns the collector, token and CA file from the flags and the
// environment, filling what they leave empty from the config file.
func (c *cli) settings() (collector, token, caCert string, err error) {
	collector, token, caCert = c.collector, c.token, c.caCert
	path, explicit := c.config, c.config != ""
	if !explicit {
		path = defaultConfigPath(c.env)
	}
	cf, err := loadConfig(path, explicit)
	if err != nil {
		return "", "", "", err
	}
	if collector == "" {
		collector = cf.collector
	}
	if token == "" {
		token = cf.token
	}
	if caCert == "" {
		caCert = cf.caCert
	}
	return collector, token, caCert, nil
}

// client is a connection to a collector's QueryService with a token.
type client struct {
	q       pb.QueryServiceClient
	conn    *grpc.ClientConn
	addr    string
	token   string
	timeout time.Duration
	// pageSize is the largest page asked for.
	pageSize int
}

// connect checks the settings and prepares a connection (gRPC connects on
// the first call).
func (c *cli) connect() (*client, error) {
	collector, token, caCert, err := c.settings()
	if err != nil {
		return nil, err
	}
	if collector == "" {
		return nil, usagef("no collector: give --collector HOST[:PORT], SESSIONAUDIT_COLLECTOR, or \"collector = …\" in the config file")
	}
	host, port, err := net.SplitHostPort(collector)
	if err != nil {
		host, port = strings.Trim(collector, "[]"), defaultPort
	}
	if n, perr := strconv.ParseUint(port, 10, 16); host == "" || strings.ContainsAny(host, "/ @") || perr != nil || n == 0 {
		return nil, usagef("collector %q: want HOST[:PORT], e.g. collector.contoso.com:8443", collector)
	}
	addr := net.JoinHostPort(host, port)
	if token == "" {
		return nil, &queryError{exit: exitAuth, msg: "no API token: give --token, SESSIONAUDIT_TOKEN, or \"token = …\" in the config file " +
			"(an administrator creates one with 'sessionaudit-collector token create --name NAME --role reader')"}
	}
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, usagef("the API token contains spaces or control characters; copy it again")
	}
	if c.timeout <= 0 {
		return nil, usagef("--timeout %v: want a positive duration, e.g. 30s", c.timeout)
	}
	var creds credentials.TransportCredentials
	if c.insecurePlaintext {
		if !isLoopback(host) {
			return nil, usagef("--insecure-plaintext-dev talks to a loopback address only, not %q: the token would cross the network in the clear", host)
		}
		creds = insecure.NewCredentials()
	} else {
		var roots *x509.CertPool
		if caCert != "" {
			certs, err := pki.LoadCertificates(caCert)
			if err != nil {
				return nil, usagef("--ca-cert: %v", err)
			}
			roots = x509.NewCertPool()
			for _, cert := range certs {
				roots.AddCert(cert)
			}
		} else if roots, err = x509.SystemCertPool(); err != nil {
			return nil, fmt.Errorf("the system's certificate roots: %w (give --ca-cert)", err)
		}
		creds = credentials.NewTLS(identity.ClientTLSConfig(roots, host, nil))
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithUserAgent("sessionaudit-cli/"+version))
	if err != nil {
		return nil, usagef("collector %q: %v", collector, err)
	}
	pageSize := c.pageSize
	if pageSize <= 0 || pageSize > limits.MaxPageSize {
		pageSize = limits.MaxPageSize
	}
	return &client{q: pb.NewQueryServiceClient(conn), conn: conn, addr: addr, token: token, timeout: c.timeout, pageSize: pageSize}, nil
}

// isLoopback reports whether host is localhost or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Close closes the connection.
func (cl *client) Close() error { return cl.conn.Close() }

// callContext returns the context of one call: the token and --timeout.
func (cl *client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+cl.token)
	return context.WithTimeout(ctx, cl.timeout)
}

// queryError is a call the collector refused or could not answer, with the
// exit status it means.
type queryError struct {
	exit int
	msg  string
}

func (e *queryError) Error() string { return e.msg }

// flagOf names the command-line flag behind each query parameter the
// collector may refuse.
var flagOf = map[string]string{
	"host": "--host", "at": "--at", "start_time": "--since", "end_time": "--until",
	"account": "--user", "from_computer": "--from", "user_name": "--user", "to_host": "--to",
	"stale_after": "--stale", "authentication_package": "--package", "logon_types": "--type",
}

// callError turns a gRPC error into a queryError: 4 for authentication, 2
// for a parameter the collector refused (naming the flag), 1 otherwise.
func (cl *client) callError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("interrupted")
	}
	st := status.Convert(err)
	msg := st.Message()
	switch st.Code() {
	case codes.Unauthenticated:
		return &queryError{exit: exitAuth, msg: "the collector did not accept the credentials: " + msg}
	case codes.PermissionDenied:
		return &queryError{exit: exitAuth, msg: "the collector refused: " + msg}
	case codes.InvalidArgument:
		field, _, _ := strings.Cut(msg, ":")
		if i := strings.IndexByte(field, '['); i > 0 {
			field = field[:i]
		}
		if f, ok := flagOf[field]; ok {
			if (field == "start_time" || field == "end_time") && strings.Contains(msg, "range") {
				f = "--since, --until"
			}
			msg += " (" + f + ")"
		}
		return &queryError{exit: exitUsage, msg: "the collector refused a parameter: " + msg}
	case codes.DeadlineExceeded:
		return &queryError{exit: exitFailure, msg: fmt.Sprintf("no answer from %s within --timeout %v: %s", cl.addr, cl.timeout, msg)}
	case codes.Unavailable:
		hint := ""
		if strings.Contains(msg, "x509") || strings.Contains(msg, "certificate") {
			hint = " (is --ca-cert the CA that signed the collector's certificate, and --collector a name in it?)"
		} else if strings.Contains(msg, "server preface") || strings.Contains(msg, "first record does not look like a TLS handshake") {
			hint = " (TLS and plaintext mixed up? --insecure-plaintext-dev is for a plaintext development collector only)"
		}
		return &queryError{exit: exitFailure, msg: fmt.Sprintf("collector %s unavailable: %s%s", cl.addr, msg, hint)}
	}
	return &queryError{exit: exitFailure, msg: fmt.Sprintf("collector %s: %s: %s", cl.addr, st.Code(), msg)}
}

// pageFunc fetches one page of at most size rows after token, keeps its
// rows, and returns how many it got and the next page's token.
type pageFunc func(ctx context.Context, size int32, token string) (n int, next string, err error)

// fetch calls page until the last page or until limit rows (0: no limit),
// and returns the next page's token when it stopped at the limit with more
// to come.
func (cl *client) fetch(ctx context.Context, limit int, page pageFunc) (next string, err error) {
	total := 0
	for {
		size := cl.pageSize
		if limit > 0 {
			size = min(size, limit-total)
		}
		cctx, cancel := cl.callContext(ctx)
		n, tok, err := page(cctx, int32(size), next)
		cancel()
		if _, isStatus := status.FromError(err); err != nil && !isStatus {
			return "", err // not the collector's: writing the output failed
		}
		if err != nil {
			return "", cl.callError(ctx, err)
		}
		total += n
		next = tok
		if next == "" || (limit > 0 && total >= limit) {
			return next, nil
		}
	}
}
