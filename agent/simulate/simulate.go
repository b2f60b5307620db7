package simulate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/cim"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/source"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Profile is the role of a simulated host, which sets its logon activity.
type Profile int

// The profiles.
const (
	// Workstation: one domain user at the console on working days (logon,
	// locks and unlocks, logoff; cached logons when off the network, a rare
	// runas /netonly), scheduled tasks, management connections.
	Workstation Profile = iota + 1
	// Server: an application server: service accounts, administrators over
	// RDP in working hours, scheduled tasks, monitoring, IIS basic auth.
	Server
	// FileServer: a Server that workstations map drives on: bursts of
	// network logons and SMB server sessions, largest when people arrive.
	FileServer
	// DomainController: a Server with a steady flow of short network logons
	// and SMB sessions (SYSVOL, NETLOGON) from workstations.
	DomainController
)

// Profiles lists every profile.
var Profiles = []Profile{Workstation, Server, FileServer, DomainController}

// String returns the profile's name, as ParseProfile accepts it.
func (p Profile) String() string {
	switch p {
	case Workstation:
		return "workstation"
	case Server:
		return "server"
	case FileServer:
		return "fileserver"
	case DomainController:
		return "dc"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// ParseProfile returns the profile named s: workstation, server, fileserver
// or dc.
func ParseProfile(s string) (Profile, error) {
	for _, p := range Profiles {
		if strings.EqualFold(s, p.String()) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("simulate: unknown profile %q (want workstation, server, fileserver or dc)", s)
}

// LogonTypes returns the WMI LogonType values a host of profile p produces,
// sorted. Over a simulated working week every one of them appears.
func (p Profile) LogonTypes() []uint32 {
	types := []uint32{0, 2, 3, 4, 5}
	switch p {
	case Workstation:
		types = append(types, 7, 9, 11)
	case Server:
		types = append(types, 8, 10)
	case FileServer, DomainController:
		types = append(types, 10)
	}
	slices.Sort(types)
	return types
}

// Config configures a simulated host.
type Config struct {
	// Seed makes the host: the same seed, profile and start time give the
	// same host and the same sessions at the same times.
	Seed uint64
	// Profile is the host's role; required.
	Profile Profile
	// Clock drives the simulation; required. The simulation starts at
	// Clock.Now() when New is called and never sleeps: each Snapshot
	// catches up to Clock.Now() in one-minute steps.
	Clock clock.Clock
	// Hostname overrides the host name derived from the seed.
	Hostname string
	// RebootsPerWeek is the mean number of unplanned reboots per week; zero
	// means the profile's default (workstations 1, others 0.25), negative
	// means none.
	RebootsPerWeek float64
	// FaultRate is the probability that one class's query fails (QUERY_FAILED
	// or TIMEOUT) in a snapshot, for each class independently; 0 means never.
	FaultRate float64
	// AgentVersion is reported in Host.agent_version; empty means "sim".
	AgentVersion string
	// AlwaysWorking makes every minute a working minute of a workday (for
	// tests that run a short stretch of simulated time near the real
	// clock): their activity, SMB sessions on file servers above all, then
	// does not depend on the hour or the day of the week they run at.
	AlwaysWorking bool
}

// Source is a simulated host. It implements source.Source. It is not safe
// for concurrent use.
type Source struct {
	cfg    Config
	rng    *rand.Rand // the timeline: consumed only by ticks
	faults *rand.Rand // per-snapshot faults, apart from the timeline
	closed bool

	guid, hostname, netbios string
	offset                  int // minutes from UTC
	osCaption, osVersion    string
	osBuild, transport      string
	rebootRate              float64 // per minute

	now       time.Time // simulated up to here
	boot      time.Time
	nextID    uint64
	consoleID int
	logons    []*logon
	smbs      []*smb
	stale     []*logon // ended logons whose Win32_LoggedOnUser links linger
	day       dayPlan
	users     []string
	primary   string
	admins    []string
}

type logon struct {
	id          string
	typ         uint32
	pkg         string
	domain      string
	name        string
	start, end  time.Time // end zero: until reboot
	endsWithID  string    // ends with this other logon (DWM/UMFD with a user)
	linkExpires time.Time // for stale links
}

type smb struct {
	computer, user string
	start, end     time.Time
	lastActive     time.Time
	resources      uint32
	sessionType    uint32
	logonID        string // the network logon that goes with it
}

// dayPlan is a workstation user's day, in minutes after local midnight.
type dayPlan struct {
	day                int // days since the epoch, local
	arrive, leave      int
	working, overnight bool
	offline            bool // cached logon (laptop away from a DC)
}

const (
	domainNetBIOS = "CONTOSO"
	domainDNS     = "corp.contoso.com"
	tick          = time.Minute
	warmUpMax     = 72 * time.Hour
)

var surnames = []string{"smith", "jones", "garcia", "miller", "davis", "martin", "lee", "walker", "hall", "young",
	"king", "wright", "lopez", "hill", "scott", "green", "adams", "baker", "nelson", "carter", "mitchell", "perez",
	"roberts", "turner", "phillips", "campbell", "parker", "evans", "edwards", "collins"}

// New returns a simulated host at cfg.Clock.Now(), with the sessions a host
// of its profile would have at that time of day (the hours since its last
// boot, up to three days, are simulated).
func New(cfg Config) (*Source, error) {
	if cfg.Clock == nil {
		return nil, errors.New("simulate: new host: Config.Clock is required")
	}
	if !slices.Contains(Profiles, cfg.Profile) {
		return nil, fmt.Errorf("simulate: new host: unknown profile %v", cfg.Profile)
	}
	if cfg.FaultRate < 0 || cfg.FaultRate > 1 || math.IsNaN(cfg.FaultRate) {
		return nil, fmt.Errorf("simulate: new host: FaultRate %v not in [0, 1]", cfg.FaultRate)
	}
	if cfg.AgentVersion == "" {
		cfg.AgentVersion = "sim"
	}
	s := &Source{
		cfg:    cfg,
		rng:    rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.Profile))),
		faults: rand.New(rand.NewPCG(cfg.Seed, 0xfa0175)),
	}
	r := s.rng
	s.guid = fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff,
		0x8000|r.Uint32()&0x3fff, r.Uint64()&0xffffffffffff)
	n := r.IntN(900) + 100
	switch cfg.Profile {
	case Workstation:
		s.hostname = fmt.Sprintf("WS%04d", n)
		s.osCaption, s.osVersion, s.osBuild = "Microsoft Windows 11 Enterprise", "10.0.22631", "22631"
	case Server:
		s.hostname = fmt.Sprintf("SRV-APP%02d", n%100)
	case FileServer:
		s.hostname = fmt.Sprintf("FS%02d", n%100)
	case DomainController:
		s.hostname = fmt.Sprintf("DC%02d", n%100)
	}
	if cfg.Profile != Workstation {
		s.osCaption, s.osVersion, s.osBuild = "Microsoft Windows Server 2022 Standard", "10.0.20348", "20348"
	}
	if cfg.Hostname != "" {
		s.hostname = cfg.Hostname
	}
	s.netbios = strings.ToUpper(s.hostname)
	if len(s.netbios) > 15 {
		s.netbios = s.netbios[:15]
	}
	s.offset = []int{-480, -300, -240, 0, 60, 120, 330, 540}[r.IntN(8)]
	s.transport = fmt.Sprintf(`\Device\NetbtTcpip_{%08X-%04X-%04X-%04X-%012X}`, r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
	for range 40 {
		s.users = append(s.users, string(rune('a'+r.IntN(26)))+surnames[r.IntN(len(surnames))])
	}
	s.primary = s.users[0]
	s.admins = []string{"adm-" + s.users[1], "adm-" + s.users[2], "adm-" + s.users[3]}

	rate := cfg.RebootsPerWeek
	if rate == 0 {
		rate = 0.25
		if cfg.Profile == Workstation {
			rate = 1
		}
	}
	s.rebootRate = max(rate, 0) / (7 * 24 * 60)

	start := cfg.Clock.Now().UTC()
	var uptime time.Duration
	if cfg.Profile == Workstation {
		uptime = time.Duration(30+r.IntN(20*60)) * time.Minute
	} else {
		uptime = time.Duration(60+r.IntN(20*24*60)) * time.Minute
	}
	s.reboot(start.Add(-uptime))
	if from := start.Add(-warmUpMax); s.now.Before(from) {
		s.now = from
	}
	for !s.now.Add(tick).After(start) {
		s.step(s.now.Add(tick), false)
	}
	return s, nil
}

// Snapshot simulates up to the clock's time and returns the host's snapshot,
// built from simulated WMI rows with source.BuildSnapshot.
func (s *Source) Snapshot(ctx context.Context) (*sessionauditv1.Snapshot, error) {
	c, err := s.Collect(ctx)
	if err != nil {
		return nil, err
	}
	snap, _ := source.BuildSnapshot(c)
	return snap, nil
}

// Collect simulates up to the clock's time and returns the WMI rows a
// Windows source would have read (with the faults of Config.FaultRate).
func (s *Source) Collect(ctx context.Context) (*source.Collection, error) {
	if s.closed {
		return nil, errors.New("simulate: snapshot: source closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("simulate: snapshot: %w", err)
	}
	now := s.cfg.Clock.Now().UTC()
	for !s.now.Add(tick).After(now) {
		s.step(s.now.Add(tick), true)
	}
	if now.Before(s.now) {
		now = s.now // the clock went back: report the simulation's present
	}
	c := s.rows(now)
	if s.cfg.FaultRate > 0 {
		var kept []source.ClassFailure
		for _, class := range source.Classes {
			if s.faults.Float64() >= s.cfg.FaultRate {
				continue
			}
			kind := sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_QUERY_FAILED
			if s.faults.IntN(2) == 0 {
				kind = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT
			}
			kept = append(kept, source.ClassFailure{Class: class, Kind: kind, Err: fmt.Errorf("simulated %v", kind)})
			switch class {
			case source.ClassOperatingSystem:
				c.OperatingSystem = nil
			case source.ClassComputerSystem:
				c.ComputerSystem = nil
			case source.ClassLogonSession:
				c.LogonSessions = nil
			case source.ClassLoggedOnUser:
				c.LoggedOnUsers = nil
			case source.ClassServerSession:
				c.ServerSessions = nil
			}
		}
		c.Failures = kept
	}
	return c, nil
}

// Close ends the simulation; Snapshot fails afterwards.
func (s *Source) Close() error {
	s.closed = true
	return nil
}

// MachineGUID returns the simulated host's machine GUID.
func (s *Source) MachineGUID() string { return s.guid }

// Hostname returns the simulated host's name.
func (s *Source) Hostname() string { return s.hostname }

// BootTime returns the simulated host's last boot time.
func (s *Source) BootTime() time.Time { return s.boot }

// newID returns a fresh LUID, as decimal text.
func (s *Source) newID() string {
	s.nextID += 1 + uint64(s.rng.IntN(20000))
	return strconv.FormatUint(s.nextID, 10)
}

// reboot starts a new boot at t: every session ends, the LUID counter starts
// again, the boot-time sessions appear.
func (s *Source) reboot(t time.Time) {
	s.boot, s.now = t, t
	s.logons, s.smbs, s.stale = nil, nil, nil
	s.nextID = 0x30000 + uint64(s.rng.IntN(0x60000))
	if s.cfg.Profile == FileServer && s.rng.IntN(2) == 0 {
		// A busy server whose LUIDs have passed 2^32: HighPart is not zero.
		s.nextID = 1<<32 - uint64(s.rng.IntN(3_000_000))
	}
	s.consoleID = 1
	sec := func(n int) time.Time { return t.Add(time.Duration(n) * time.Second) }
	s.add(&logon{id: "999", typ: 0, pkg: "NTLM", domain: domainNetBIOS, name: s.netbios + "$", start: sec(2)})
	s.add(&logon{id: "997", typ: 5, pkg: "Negotiate", domain: "NT AUTHORITY", name: "LOCAL SERVICE", start: sec(9)})
	s.add(&logon{id: "996", typ: 5, pkg: "Negotiate", domain: domainNetBIOS, name: s.netbios + "$", start: sec(9)})
	// Session 0 and 1 (the console's logon screen): font driver and window
	// manager logons, which are interactive (2), and last the whole boot.
	s.add(&logon{id: s.newID(), typ: 2, pkg: "Negotiate", domain: "Font Driver Host", name: "UMFD-0", start: sec(7)})
	s.add(&logon{id: s.newID(), typ: 2, pkg: "Negotiate", domain: "Font Driver Host", name: "UMFD-1", start: sec(7)})
	s.add(&logon{id: s.newID(), typ: 2, pkg: "Negotiate", domain: "Window Manager", name: "DWM-1", start: sec(8)})
	switch s.cfg.Profile {
	case Server:
		s.add(&logon{id: s.newID(), typ: 5, pkg: "Negotiate", domain: "NT SERVICE", name: "MSSQLSERVER", start: sec(30)})
		s.add(&logon{id: s.newID(), typ: 5, pkg: "Negotiate", domain: "IIS APPPOOL", name: "DefaultAppPool", start: sec(40)})
		s.add(&logon{id: s.newID(), typ: 5, pkg: "Kerberos", domain: domainNetBIOS, name: "svc-app", start: sec(45)})
	case FileServer:
		s.add(&logon{id: s.newID(), typ: 5, pkg: "Kerberos", domain: domainNetBIOS, name: "svc-backup", start: sec(35)})
	case DomainController:
		s.add(&logon{id: s.newID(), typ: 5, pkg: "Negotiate", domain: "NT SERVICE", name: "ADSync", start: sec(50)})
	}
}

func (s *Source) add(l *logon) { s.logons = append(s.logons, l) }

// poisson draws a count with mean m.
func (s *Source) poisson(m float64) int {
	if m <= 0 {
		return 0
	}
	limit, k, p := math.Exp(-m), 0, s.rng.Float64()
	for p > limit {
		k++
		p *= s.rng.Float64()
	}
	return k
}

// between returns a duration uniformly in [lo, hi).
func (s *Source) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

// client returns a workstation name or address, and the user on it.
func (s *Source) client() (computer, user string) {
	i := s.rng.IntN(len(s.users))
	if s.rng.IntN(3) == 0 {
		return fmt.Sprintf("10.0.%d.%d", 10+i/8, 20+i), s.users[i]
	}
	return fmt.Sprintf("WS%04d", 100+i*17), s.users[i]
}

// step simulates the minute ending at t. Reboots happen only when live.
func (s *Source) step(t time.Time, live bool) {
	s.now = t
	if live && s.rebootRate > 0 && s.rng.Float64() < s.rebootRate {
		// The host went down and came back during this minute.
		s.reboot(t.Add(-50 * time.Second))
		s.now = t
		return
	}
	local := t.Add(time.Duration(s.offset) * time.Minute)
	minute := local.Hour()*60 + local.Minute()
	workday := local.Weekday() != time.Saturday && local.Weekday() != time.Sunday
	working := workday && minute >= 8*60 && minute < 18*60
	if s.cfg.AlwaysWorking {
		workday, working = true, true
	}
	perMinute := func(perHour float64) float64 { return perHour / 60 }

	// Expire.
	ended := map[string]bool{}
	s.logons = slices.DeleteFunc(s.logons, func(l *logon) bool {
		if !l.end.IsZero() && !l.end.After(t) {
			ended[l.id] = true
			l.linkExpires = t.Add(3 * time.Minute)
			s.stale = append(s.stale, l)
			return true
		}
		return false
	})
	s.logons = slices.DeleteFunc(s.logons, func(l *logon) bool {
		if l.endsWithID != "" && ended[l.endsWithID] {
			l.linkExpires = t.Add(3 * time.Minute)
			s.stale = append(s.stale, l)
			return true
		}
		return false
	})
	s.stale = slices.DeleteFunc(s.stale, func(l *logon) bool { return !l.linkExpires.After(t) })
	s.smbs = slices.DeleteFunc(s.smbs, func(m *smb) bool { return !m.end.After(t) })
	for _, m := range s.smbs {
		if s.rng.IntN(4) == 0 {
			m.lastActive = t.Add(-time.Duration(s.rng.IntN(60)) * time.Second)
			m.resources = uint32(s.rng.IntN(6))
		}
	}

	// Scheduled tasks: batch logons of a service account.
	if local.Minute() == 0 && s.rng.IntN(2) == 0 {
		s.add(&logon{id: s.newID(), typ: 4, pkg: "Kerberos", domain: domainNetBIOS, name: "svc-tasks",
			start: t, end: t.Add(s.between(time.Minute, 6*time.Minute))})
	}

	switch s.cfg.Profile {
	case Workstation:
		s.workstation(t, local, minute)
		// Management (software deployment) connecting now and then.
		if s.rng.Float64() < perMinute(0.4) {
			s.smbSession(t, "10.0.1.15", "svc-sccm", s.between(time.Minute, 15*time.Minute), "NTLM")
		}
	case Server, FileServer, DomainController:
		s.server(t, working)
	}

	if s.cfg.Profile == FileServer {
		rate := 0.5
		if working {
			rate = 12
		}
		if workday && minute >= 7*60+45 && minute < 9*60+15 {
			rate = 60 // everyone arrives and maps their drives
		}
		for range s.poisson(perMinute(rate)) {
			computer, user := s.client()
			pkg := "Kerberos"
			if computer[0] >= '0' && computer[0] <= '9' {
				pkg = "NTLM"
			}
			s.smbSession(t, computer, user, s.between(10*time.Minute, 8*time.Hour), pkg)
		}
	}
	if s.cfg.Profile == DomainController {
		rate := 6.0
		if working {
			rate = 90
		}
		for range s.poisson(perMinute(rate)) {
			computer, user := s.client()
			if s.rng.IntN(3) == 0 {
				user = computer + "$" // the machine's own group policy refresh
			}
			s.smbSession(t, computer, user, s.between(20*time.Second, 4*time.Minute), "Kerberos")
		}
	}
}

// smbSession opens a server session from computer by user, with the network
// logon (3) it rests on.
func (s *Source) smbSession(t time.Time, computer, user string, d time.Duration, pkg string) {
	for _, m := range s.smbs {
		if m.computer == computer && m.user == user {
			return // one session per key, as the WMI keys require
		}
	}
	id := s.newID()
	s.add(&logon{id: id, typ: 3, pkg: pkg, domain: domainNetBIOS, name: user, start: t, end: t.Add(d)})
	typ := uint32(2)
	if s.rng.IntN(50) == 0 {
		typ = 1
	}
	s.smbs = append(s.smbs, &smb{computer: computer, user: user, start: t, end: t.Add(d), lastActive: t,
		resources: uint32(1 + s.rng.IntN(4)), sessionType: typ, logonID: id})
}

// interactive logs user on with type typ and the window manager and font
// driver logons of a new terminal session; it returns the user's logon.
func (s *Source) interactive(t time.Time, typ uint32, pkg, user string, d time.Duration) *logon {
	s.consoleID++
	n := s.consoleID
	u := &logon{id: s.newID(), typ: typ, pkg: pkg, domain: domainNetBIOS, name: user, start: t}
	if d > 0 {
		u.end = t.Add(d)
	}
	s.add(u)
	sec := func(k int) time.Time { return t.Add(time.Duration(k) * time.Second) }
	s.add(&logon{id: s.newID(), typ: 2, pkg: "Negotiate", domain: "Font Driver Host", name: fmt.Sprintf("UMFD-%d", n), start: sec(-3), endsWithID: u.id})
	s.add(&logon{id: s.newID(), typ: 2, pkg: "Negotiate", domain: "Window Manager", name: fmt.Sprintf("DWM-%d", n), start: sec(-2), endsWithID: u.id})
	return u
}

func (s *Source) workstation(t, local time.Time, minute int) {
	day := int(local.Unix() / 86400)
	if s.day.day != day {
		p := dayPlan{day: day}
		wd := local.Weekday()
		p.working = wd != time.Saturday && wd != time.Sunday && s.rng.IntN(20) != 0
		p.arrive = 7*60 + 30 + s.rng.IntN(120)
		p.leave = 16*60 + 30 + s.rng.IntN(120)
		p.overnight = s.rng.IntN(8) == 0
		p.offline = s.rng.IntN(3) == 0
		s.day = p
	}
	var user *logon
	for _, l := range s.logons {
		if l.name == s.primary && (l.typ == 2 || l.typ == 11) && l.endsWithID == "" {
			user = l
			break
		}
	}
	switch {
	case s.day.working && minute == s.day.arrive && user == nil:
		typ, pkg := uint32(2), "Kerberos"
		if s.day.offline {
			typ, pkg = 11, "Negotiate"
		}
		u := s.interactive(t, typ, pkg, s.primary, 0)
		if s.rng.IntN(3) == 0 {
			// A local administrator gets a second, elevated logon (UAC).
			s.add(&logon{id: s.newID(), typ: typ, pkg: pkg, domain: domainNetBIOS, name: s.primary, start: t, endsWithID: u.id})
		}
	case s.day.working && minute == s.day.leave && user != nil && !s.day.overnight:
		user.end = t // what ends with it goes too
	case user != nil && minute >= 8*60 && minute < 18*60:
		// Locks and unlocks: each unlock is a short logon of its own.
		if s.rng.Float64() < 4.0/600 {
			pkg := "Kerberos"
			if user.typ == 11 {
				pkg = "Negotiate"
			}
			s.add(&logon{id: s.newID(), typ: 7, pkg: pkg, domain: domainNetBIOS, name: s.primary, start: t, end: t.Add(s.between(30*time.Second, 3*time.Minute))})
		}
		// runas /netonly: new credentials for outbound connections.
		if s.rng.Float64() < 1.0/600 {
			s.add(&logon{id: s.newID(), typ: 9, pkg: "Negotiate", domain: domainNetBIOS, name: s.primary, start: t, end: t.Add(s.between(10*time.Minute, 2*time.Hour))})
		}
	}
}

func (s *Source) server(t time.Time, working bool) {
	perMinute := func(perHour float64) float64 { return perHour / 60 }
	if working && s.rng.Float64() < perMinute(0.25) {
		admin := s.admins[s.rng.IntN(len(s.admins))]
		pkg := "Kerberos"
		if s.rng.IntN(4) == 0 {
			pkg = "Negotiate"
		}
		s.interactive(t, 10, pkg, admin, s.between(10*time.Minute, 2*time.Hour))
	}
	// Administrators open admin shares (C$, ADMIN$) from their workstations.
	if s.cfg.Profile == Server && working && s.rng.Float64() < perMinute(1) {
		i := 1 + s.rng.IntN(3)
		s.smbSession(t, fmt.Sprintf("WS%04d", 100+i*17), s.admins[i-1], s.between(2*time.Minute, time.Hour), "Kerberos")
	}
	// Monitoring and administration over the network.
	if s.rng.Float64() < perMinute(2) {
		s.add(&logon{id: s.newID(), typ: 3, pkg: "Kerberos", domain: domainNetBIOS, name: "svc-monitor", start: t, end: t.Add(s.between(time.Minute, 10*time.Minute))})
	}
	if s.cfg.Profile == Server && working && s.rng.Float64() < perMinute(0.5) {
		// IIS basic authentication: network logons with clear-text credentials.
		s.add(&logon{id: s.newID(), typ: 8, pkg: "Negotiate", domain: domainNetBIOS, name: s.users[s.rng.IntN(len(s.users))], start: t, end: t.Add(s.between(time.Minute, 15*time.Minute))})
	}
}

// rows returns the WMI rows of the host at now.
func (s *Source) rows(now time.Time) *source.Collection {
	format := func(t time.Time) string {
		v, err := cim.FormatDatetime(t, s.offset)
		if err != nil {
			panic(err) // offsets are fixed and years near now: cannot happen
		}
		return v
	}
	path := func(p cim.ObjectPath) string { return p.String() }
	c := &source.Collection{
		TakenAt:      now,
		MachineGUID:  s.guid,
		AgentVersion: s.cfg.AgentVersion,
		OperatingSystem: &source.OperatingSystemRow{
			Caption: s.osCaption, Version: s.osVersion, BuildNumber: s.osBuild, LastBootUpTime: format(s.boot),
		},
		ComputerSystem: &source.ComputerSystemRow{DNSHostName: s.hostname, Name: s.netbios, Domain: domainDNS},
	}
	link := func(l *logon) source.LoggedOnUserRow {
		return source.LoggedOnUserRow{
			Antecedent: path(cim.ObjectPath{Host: s.netbios, Namespace: `root\cimv2`, Class: "Win32_Account",
				Keys: map[string]string{"Domain": l.domain, "Name": l.name}}),
			Dependent: path(cim.ObjectPath{Host: s.netbios, Namespace: `root\cimv2`, Class: "Win32_LogonSession",
				Keys: map[string]string{"LogonId": l.id}}),
		}
	}
	for _, l := range s.logons {
		if l.start.After(now) {
			continue
		}
		typ := l.typ
		c.LogonSessions = append(c.LogonSessions, source.LogonSessionRow{
			AuthenticationPackage: l.pkg, LogonId: l.id, LogonType: &typ, StartTime: format(l.start),
		})
		c.LoggedOnUsers = append(c.LoggedOnUsers, link(l))
	}
	for _, l := range s.stale {
		c.LoggedOnUsers = append(c.LoggedOnUsers, link(l))
	}
	for _, m := range s.smbs {
		active := uint32(now.Sub(m.start) / time.Second)
		idle := uint32(max(now.Sub(m.lastActive), 0) / time.Second)
		res, typ := m.resources, m.sessionType
		c.ServerSessions = append(c.ServerSessions, source.ServerSessionRow{
			ActiveTime: &active, IdleTime: &idle, ResourcesOpened: &res, SessionType: &typ,
			ComputerName: m.computer, UserName: m.user, TransportName: s.transport,
		})
	}
	return c
}
