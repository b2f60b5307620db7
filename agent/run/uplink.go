package run

import (
	"context"
	"crypto/x509"
	"slices"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// uplinkRetry is how long the supervisor waits before trying again to
// make a client whose settings were refused (a CA file that cannot be
// read, say), when the settings do not change meanwhile.
const uplinkRetry = time.Minute

// uplinkConfig is what the uplink client is made from.
type uplinkConfig struct {
	address string
	caFile  string
	pins    []string
	secret  string
	// pollInterval is the pump's idle wake-up (not a reason to reconnect).
	pollInterval time.Duration
}

func uplinkConfigOf(s config.Settings) uplinkConfig {
	return uplinkConfig{address: s.CollectorAddress, caFile: s.CACertificate,
		pins: slices.Clone(s.CAPins), secret: s.EnrollmentSecret.Reveal(), pollInterval: s.PollInterval}
}

func (c uplinkConfig) equal(d uplinkConfig) bool {
	return c.address == d.address && c.caFile == d.caFile && slices.Equal(c.pins, d.pins) && c.secret == d.secret
}

// uplinkSupervisor owns the uplink client and its pump: it makes them when
// the settings first arrive and again when they change.
type uplinkSupervisor struct {
	loop *loop
	cfg  <-chan uplinkConfig

	cur     uplinkConfig
	started bool
	client  *uplink.Client
	stop    context.CancelFunc
	done    chan struct{}
}

func (u *uplinkSupervisor) run(ctx context.Context) {
	defer u.shutdown()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-u.cfg:
			if u.started && c.equal(u.cur) {
				continue
			}
			if u.started {
				u.loop.log.Info("collector settings changed: reconnecting", "collector", c.address)
			}
			u.shutdown()
			u.cur, u.started = c, true
			retry = nil
			if !u.start(ctx) {
				retry = time.After(uplinkRetry)
			}
		case <-retry:
			retry = nil
			if !u.start(ctx) {
				retry = time.After(uplinkRetry)
			}
		}
	}
}

// start makes the client and runs its pump; false when the settings do
// not allow it yet (logged).
func (u *uplinkSupervisor) start(ctx context.Context) bool {
	log := u.loop.log
	c := u.cur
	if c.address == "" {
		log.Warn("no CollectorAddress set: reports are spooled but not sent; set it by Group Policy, the config file or -collector-address")
		return true // nothing to retry until the settings change
	}
	var pool *x509.CertPool
	if c.caFile != "" {
		p, err := uplink.LoadCAFile(c.caFile)
		if err != nil {
			log.Error("cannot use CACertificate: reports stay spooled; retrying", "file", c.caFile,
				"retry_in", uplinkRetry, "err", err)
			return false
		}
		pool = p
	}
	opts := uplink.Options{
		Address: c.address, CAPool: pool, CAPins: c.pins, EnrollmentSecret: c.secret,
		Host:     func() *pb.Host { return u.loop.host.Load() },
		StateDir: u.loop.opts.StateDir, Clock: u.loop.opts.Clock, Logger: log,
	}
	if u.loop.opts.Uplink != nil {
		u.loop.opts.Uplink(&opts)
	}
	client, err := uplink.New(opts)
	if err != nil {
		log.Error("cannot set up the connection to the collector: reports stay spooled; retrying",
			"collector", c.address, "retry_in", uplinkRetry, "err", err)
		return false
	}
	pump := uplink.NewPump(client, u.loop.spool, uplink.PumpOptions{
		Notify:       u.loop.notify,
		PollInterval: c.pollInterval,
		OnResync:     func() { u.loop.resync.Store(true) },
		OnRenumber:   u.loop.pollNow,
	})
	pctx, stop := context.WithCancel(ctx)
	u.client, u.stop, u.done = client, stop, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = pump.Run(pctx)
	}(u.done)
	log.Info("delivering to the collector", "collector", c.address, "ca_file", c.caFile, "ca_pins", len(c.pins))
	return true
}

// shutdown stops the pump and closes the client, if any.
func (u *uplinkSupervisor) shutdown() {
	if u.client == nil {
		return
	}
	u.stop()
	<-u.done
	if err := u.client.Close(); err != nil {
		u.loop.log.Warn("closing the collector connection", "err", err)
	}
	u.client, u.stop, u.done = nil, nil, nil
}
