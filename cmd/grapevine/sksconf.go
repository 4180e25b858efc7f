package main

// Reading an SKS 1.1.6 sksconf (spec config.md §2, §3).
//
// SKS turns each line of sksconf into the command-line arguments
// "-<name> <value>" and feeds them to the same OCaml Arg parser as the real
// command line (SKS getfileopts.ml, settings.ml). This file reproduces that
// parser: the same option names, the same value syntax (OCaml int_of_string
// and float_of_string), the same units and defaults, the same "last line
// wins" rule. Where SKS dies (unknown option, bad number, line without ':')
// ParseSKSConf returns an error naming the file and line. Options that
// grapevine accepts but does not use come back as Notices for the caller to
// log.
//
// grapevine's own options live in the same file and start with
// "grapevine_", a prefix no SKS option has. NB: SKS itself refuses to start
// on a file that contains them ("unknown option"), so an operator who wants
// to run SKS again on the same basedir must remove those lines first.
//
//	option                             value        default   meaning
//	grapevine_max_key_bytes:           int, bytes   16 MiB    largest key grapevine stores (all versions merged,
//	                                                          SKS framing); packets beyond it are dropped by the
//	                                                          flooded-key policy (pgpkey.Limits; SKS: no limit)
//	grapevine_max_packet_bytes:        int, bytes   256 KiB   largest user ID, attribute or key packet; a larger
//	                                                          one is dropped, a larger primary key refused
//	grapevine_max_sig_bytes:           int, bytes   64 KiB    largest signature packet; larger ones are dropped
//	grapevine_max_uids:                int          256       user IDs and attributes per key
//	grapevine_max_subkeys:             int          256       subkeys per key
//	grapevine_max_sigs:                int          10000     signatures per key, self-signatures included
//	grapevine_max_certs_per_uid:       int          1000      third-party certifications kept per user ID
//	                                                          (CVE-2019-13050 flooding); the key's own
//	                                                          verified self-signatures are not counted
//	                                                          (all limits: every append path — upload, recon,
//	                                                          mail, import — before anything is stored; -1
//	                                                          means no limit; docs/operations.md)
//	grapevine_max_post_bytes:          int, bytes   8 MiB     largest request body of POST /pks/add and
//	                                                          /pks/hashquery; larger ones get 413 (SKS: 5 MiB)
//	grapevine_max_open_segments:       int          256       log segment files kept open for reads of keys
//	                                                          stored as references to their log event (each
//	                                                          a file descriptor); -1 keeps none open
//	grapevine_background_nice:         int, 0-19    10        added to the nice value of the two threads that
//	                                                          apply log events to the indexes while serve runs
//	                                                          (Linux; serve then runs one GOMAXPROCS more than
//	                                                          the cores unless GOMAXPROCS is set); 0 applies
//	                                                          at the daemon's own priority
//	grapevine_gossip_interval_seconds: float, s     60 s      time between gossip attempts; the same setting as
//	                                                          SKS gossip_interval (minutes), whichever line
//	                                                          comes later wins
//	grapevine_metrics_address:         host:port    off       address of the Prometheus /metrics listener;
//	                                                          empty means no listener
//	grapevine_access_log:              bool         off       log one line per HKP request (client address and
//	                                                          query). A bare "grapevine_access_log:" turns it on;
//	                                                          on/off, true/false, yes/no, 1/0 are accepted
//	grapevine_http_front_end:          bool         on        answer lookups with grapevine's own HTTP/1.x front
//	                                                          end; off leaves every request to Go's net/http
//	                                                          (hkp/frontend.go)
//	grapevine_rate_limit:              float, /s    10        HKP requests a second one client may make,
//	                                                          sustained (429 + Retry-After beyond); 0 turns
//	                                                          limiting off; loopback clients are exempt
//	grapevine_rate_burst:              int          100       requests one client may make at once
//	grapevine_trusted_proxies:         addresses    none      reverse proxies (IPs or CIDR prefixes, spaces
//	                                                          or commas) whose X-Forwarded-For names the
//	                                                          client; loopback is always trusted
//	grapevine_recon_mode:              both|sks|    both      which datasets recon and /pks/hashquery serve:
//	                                   hockeypuck             both (each peer from the one its Config asks
//	                                                          for), sks only (as SKS 1.1.6), or hockeypuck
//	                                                          only: the node presents itself with Hockeypuck
//	                                                          2.3's filters and rules (for tests, issue 11)
//
// Integer values of grapevine options use the same syntax as SKS's
// (decimal, 0x…, 0o…, 0b…, underscores: 8_388_608).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// SKSConf holds every option SKS 1.1.6 accepts (settings.ml parse_spec; spec
// config.md §3) plus grapevine's own. DefaultSKSConf returns SKS's defaults;
// the zero value is not useful. Durations are converted from the unit SKS
// uses for each option, which is given in the field's comment.
type SKSConf struct {
	// Identity, network, paths (config.md §3.1).

	// Hostname is sksconf hostname. Default: the system host name, as SKS's
	// Unix.gethostname. It must be the name this server has in the peers'
	// membership files; SKS resolves it to skip itself when it picks a
	// gossip partner. It is also the domain of the default FromAddr.
	Hostname string
	// Nodename is sksconf nodename, shown on the stats page. Default: the
	// system host name.
	Nodename string
	// ServerContact is sksconf server_contact, shown on the stats page
	// (conventionally an OpenPGP key ID). Default "".
	ServerContact string
	// HKPAddress is sksconf hkp_address: the host names or IP addresses the
	// HKP listener binds, each resolved and every address bound. Default
	// {"0.0.0.0", "::"}. NB: SKS binds IPv6 sockets with IPV6_V6ONLY
	// (eventloop.ml), so "0.0.0.0" and "::" are two listeners; Go's
	// net.Listen on "::" is dual-stack unless told otherwise. SKS fails only
	// if no address at all can be bound.
	HKPAddress []string
	// HKPPort is sksconf hkp_port. Default 11371.
	HKPPort int
	// ReconAddress is sksconf recon_address, like HKPAddress, for the recon
	// listener; it is also the source address of outgoing recon and
	// hashquery connections. Default {"0.0.0.0", "::"}.
	ReconAddress []string
	// ReconPort is sksconf recon_port. Default 11370. The option baseport
	// sets ReconPort to its value and HKPPort to the value plus one.
	ReconPort int
	// UsePort80 is sksconf use_port_80: also bind HKP on port 80.
	UsePort80 bool
	// Basedir is sksconf basedir, default ".". A basedir line in sksconf
	// moves the data files (membership, mailsync, web/, …) but not the
	// sksconf that was read (config.md §2 rule 6).
	Basedir string
	// StdoutLog is sksconf stdoutlog: log to stdout instead of a log file.
	StdoutLog bool

	// Logging and debugging (config.md §3.2).

	// Debug is sksconf debug: the master switch for logging. Default true,
	// and the option can only set it.
	Debug bool
	// DebugLevel is sksconf debuglevel, default 3: messages up to this level
	// are logged (0 start-up, 1–2 errors, 3 normal, 4 per request, up to 10).
	DebugLevel int
	// Seed is sksconf seed, the RNG seed for tests; meaningful only if
	// SeedSet (SKS self-seeds otherwise).
	Seed    int
	SeedSet bool
	// Prob is sksconf prob, a probability for SKS's test code. Default 0.1.
	Prob float64
	// Drop is sksconf d, unused by the SKS 1.1.6 servers. Default 10.
	Drop int

	// Query limits and web server (config.md §3.3).

	// MaxMatches is sksconf max_matches. Default 500.
	MaxMatches int
	// MaxInternalMatches is sksconf max_internal_matches. Default 20000.
	MaxInternalMatches int
	// MaxUIDFetches is sksconf max_uid_fetches. Default 1000.
	MaxUIDFetches int
	// WserverTimeout is sksconf wserver_timeout (integer seconds), the
	// per-request HKP timeout. Default 180 s.
	WserverTimeout time.Duration
	// InitialStat is sksconf initial_stat: compute the stats page at start.
	InitialStat bool
	// StatHour is sksconf stat_hour, the local hour (0–23) at which the
	// stats page is recomputed daily. Default 3.
	StatHour int

	// Database (config.md §3.4). Page sizes are in SKS's unit, blocks of
	// 512 bytes; 0 means "BerkeleyDB's default" (SKS None). Cache sizes are
	// in MiB.

	PageSize         int // pagesize, default 128 (64 KiB)
	KeyIDPageSize    int // keyid_pagesize, default 0
	MetaPageSize     int // meta_pagesize, default 0
	SubkeyIDPageSize int // subkeyid_pagesize, default 0
	TimePageSize     int // time_pagesize, default 0
	TqueuePageSize   int // tqueue_pagesize, default 0
	WordPageSize     int // word_pagesize, default 0
	CacheMiB         int // cache, default 20
	PTreePageSize    int // ptree_pagesize, default 8 (4 KiB)
	PTreeCacheMiB    int // ptree_cache, default 5
	// CheckpointInterval is sksconf checkpoint_interval (float seconds).
	// Default 1 h.
	CheckpointInterval time.Duration
	// DBSyncInterval is sksconf db_sync_interval (float seconds). Default 5 min.
	DBSyncInterval time.Duration
	// CommandTimeout is sksconf command_timeout (integer seconds), for
	// commands on db_com_sock. Default 60 s.
	CommandTimeout time.Duration
	// N is sksconf n, the batch size of the offline tools; its meaning
	// depends on the command (config.md §6). Default 0 (SKS treats it as 1).
	N int
	// DumpNewOnly is sksconf dump_new_only (sks dump).
	DumpNewOnly bool

	// Recon (config.md §3.5, recon.md).

	// BitQuantum is sksconf q. Default 2.
	BitQuantum int
	// MBar is sksconf mbar. Default 5.
	MBar int
	// MaxRecover is sksconf max_recover, the most differences recovered
	// per round. Default 2000.
	MaxRecover int
	// HTTPFetchSize is sksconf http_fetch_size, hashes per
	// /pks/hashquery request. Default 100.
	HTTPFetchSize int
	// MaxOutstandingReconRequests is sksconf max_outstanding_recon_requests.
	// Default 100.
	MaxOutstandingReconRequests int
	// PTreeThreshMult is sksconf ptree_thresh_mult. Default 10. A prefix
	// tree leaf splits above MBar×PTreeThreshMult elements (SKS: 50) and a
	// node joins at half that; it shapes only the local tree.
	PTreeThreshMult int
	// ReconThreshMult is sksconf recon_thresh_mult. Default 30.
	ReconThreshMult int
	// DiskPTree is set by sksconf diskptree and cleared by nodiskptree.
	// Default true.
	DiskPTree bool
	// MaxPTreeNodes is sksconf max_ptree_nodes. Default 1000.
	MaxPTreeNodes int
	// ReconSyncInterval is sksconf recon_sync_interval (float seconds).
	// Default 5 min.
	ReconSyncInterval time.Duration
	// ReconCheckpointInterval is sksconf recon_checkpoint_interval (float
	// seconds). Default 1 h.
	ReconCheckpointInterval time.Duration
	// GossipInterval is the time between gossip attempts. sksconf
	// gossip_interval gives it in (fractional) minutes,
	// grapevine_gossip_interval_seconds in seconds; the later line wins.
	// Default 60 s. NB: SKS's built-in default is 60 seconds although the
	// option is in minutes, so "gossip_interval: 1" is the default.
	GossipInterval time.Duration
	// DontGossip is sksconf dontgossip: never start a recon, but still
	// answer peers.
	DontGossip bool
	// ReconciliationTimeout is sksconf reconciliation_timeout (integer
	// minutes), the limit on one recon session. Default 1 h.
	ReconciliationTimeout time.Duration
	// ReconciliationConfigTimeout is sksconf reconciliation_config_timeout
	// (integer seconds), the limit on connect plus Config exchange.
	// Default 45 s.
	ReconciliationConfigTimeout time.Duration
	// MissingKeysTimeout is sksconf missing_keys_timeout (integer seconds),
	// the limit on one hashquery fetch. Default 180 s.
	MissingKeysTimeout time.Duration
	// MembershipReloadInterval is sksconf membership_reload_interval
	// (float hours): the membership file is re-read at least this often,
	// and whenever its mtime changes. Default 6 h.
	MembershipReloadInterval time.Duration
	// DisableLogDiffs is sksconf disable_log_diffs: do not write
	// diff-<peer>.txt files.
	DisableLogDiffs bool

	// Mail sync (config.md §3.6, mailsync.md).

	// DisableMailsync is sksconf disable_mailsync: neither send queued keys
	// by mail nor import messages/*.ready.
	DisableMailsync bool
	// SendmailCmd is sksconf sendmail_cmd, run through /bin/sh with the
	// message on stdin. Default "sendmail -t -oi" (Debian's build:
	// "/usr/lib/sendmail -t -oi").
	SendmailCmd string
	// FromAddr is sksconf from_addr. "" means the SKS default, which
	// FromAddress computes: <login name>@<Hostname>.
	FromAddr string

	// Miscellaneous (config.md §3.7).

	// Stdin is sksconf stdin (sksclient only).
	Stdin bool

	// grapevine's own options (see the table at the top of this file).

	// MaxKeyBytes is grapevine_max_key_bytes, the largest stored key.
	// Default pgpkey.DefaultLimitKeyBytes (16 MiB).
	MaxKeyBytes int64
	// KeyLimits holds the other abuse limits on keys:
	// grapevine_max_packet_bytes, _sig_bytes, _uids, _subkeys, _sigs and
	// _certs_per_uid. Its MaxKeyBytes is unused (see keyLimits). Defaults:
	// pgpkey.DefaultLimits.
	KeyLimits pgpkey.Limits
	// MaxPostBytes is grapevine_max_post_bytes. Default 8 MiB.
	MaxPostBytes int64
	// MaxOpenSegments is grapevine_max_open_segments
	// (eventlog.Config.MaxOpenSegments): -1 keeps none open. Default
	// eventlog.DefaultMaxOpenSegments.
	MaxOpenSegments int
	// BackgroundNice is grapevine_background_nice
	// (projections.Config.BackgroundNice). Default 10.
	BackgroundNice int
	// MetricsAddress is grapevine_metrics_address, "host:port"; "" (the
	// default) means no metrics listener.
	MetricsAddress string
	// RateLimit, RateBurst and TrustedProxies are grapevine_rate_limit,
	// grapevine_rate_burst and grapevine_trusted_proxies (hkp.Config).
	RateLimit      float64
	RateBurst      int
	TrustedProxies []netip.Prefix
	// AccessLog is grapevine_access_log. Default off: HKP queries reveal
	// who looks for whom.
	AccessLog bool
	// NoHTTPFrontEnd is grapevine_http_front_end: off (hkp.Config.DisableFrontEnd).
	NoHTTPFrontEnd bool
	// ReconMode is grapevine_recon_mode: ReconModeBoth (the default, also
	// ""), ReconModeSKS or ReconModeHockeypuck.
	ReconMode string

	// Source is the name of the file Parse last read, for Validate's
	// messages.
	Source string
	// Lines maps each option name that a file set to the line that set it
	// last. Options set through Set (the command line) are not recorded. A
	// caller applying SKS's precedence rules can tell from it which options
	// the file set.
	Lines map[string]int
}

// SKS option names in settings.ml are at most this long; grapevine's are
// a bit longer. Used only to keep error messages short.
const maxSKSOptionNameLen = 64

// DefaultSKSConf returns SKS 1.1.6's defaults (settings.ml) and grapevine's.
// Hostname and Nodename come from os.Hostname; they are "" if it fails.
func DefaultSKSConf() *SKSConf {
	host, _ := os.Hostname()
	return &SKSConf{
		Hostname:     host,
		Nodename:     host,
		HKPAddress:   []string{"0.0.0.0", "::"},
		HKPPort:      11371,
		ReconAddress: []string{"0.0.0.0", "::"},
		ReconPort:    11370,
		Basedir:      ".",

		Debug:      true,
		DebugLevel: 3,
		Prob:       0.1,
		Drop:       10,

		MaxMatches:         500,
		MaxInternalMatches: 20000,
		MaxUIDFetches:      1000,
		WserverTimeout:     180 * time.Second,
		StatHour:           3,

		PageSize:           128,
		CacheMiB:           20,
		PTreePageSize:      8,
		PTreeCacheMiB:      5,
		CheckpointInterval: time.Hour,
		DBSyncInterval:     5 * time.Minute,
		CommandTimeout:     60 * time.Second,

		BitQuantum:                  2,
		MBar:                        5,
		MaxRecover:                  2000,
		HTTPFetchSize:               100,
		MaxOutstandingReconRequests: 100,
		PTreeThreshMult:             10,
		ReconThreshMult:             30,
		DiskPTree:                   true,
		MaxPTreeNodes:               1000,
		ReconSyncInterval:           5 * time.Minute,
		ReconCheckpointInterval:     time.Hour,
		GossipInterval:              60 * time.Second,
		ReconciliationTimeout:       time.Hour,
		ReconciliationConfigTimeout: 45 * time.Second,
		MissingKeysTimeout:          180 * time.Second,
		MembershipReloadInterval:    6 * time.Hour,

		SendmailCmd: "sendmail -t -oi",

		MaxKeyBytes:  pgpkey.DefaultLimitKeyBytes,
		KeyLimits:    pgpkey.DefaultLimits(),
		MaxPostBytes: 8 << 20,
		RateLimit:    10,
		RateBurst:    100,

		MaxOpenSegments: eventlog.DefaultMaxOpenSegments,
		BackgroundNice:  projections.DefaultConfig().BackgroundNice,
	}
}

// Notice reports an sksconf line that is accepted but has no effect in
// grapevine, or whose value is ignored. The caller logs it.
type Notice struct {
	Name   string // the file name given to the parser
	Line   int    // 1-based
	Option string
	Text   string // one line
}

func (n Notice) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", n.Name, n.Line, n.Option, n.Text)
}

// ConfigLineError is a bad line in sksconf, membership or mailsync, or an
// unusable sksconf value found by Validate. Its message is one line:
// "name:line: option: reason" (parts that are unknown are left out).
type ConfigLineError struct {
	Name   string // file name as given to the parser; "" if not from a file
	Line   int    // 1-based; 0 if not from a line
	Option string // sksconf option, "" for membership and mailsync lines
	Reason string
}

func (e *ConfigLineError) Error() string {
	var b strings.Builder
	if e.Name != "" {
		b.WriteString(e.Name)
		b.WriteString(":")
		if e.Line > 0 {
			b.WriteString(strconv.Itoa(e.Line))
			b.WriteString(":")
		}
		b.WriteString(" ")
	}
	if e.Option != "" {
		b.WriteString(e.Option)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// ParseSKSConf reads an sksconf from r, starting from DefaultSKSConf. name
// prefixes errors and notices ("sksconf:12: …"). See SKSConf.Parse.
func ParseSKSConf(r io.Reader, name string) (*SKSConf, []Notice, error) {
	c := DefaultSKSConf()
	notices, err := c.Parse(r, name)
	if err != nil {
		return nil, nil, err
	}
	return c, notices, nil
}

// Parse applies the sksconf lines read from r to c, in order, the way SKS
// 1.1.6 does (getfileopts.ml; config.md §2):
//
//   - Everything from the first '#' on a line is a comment, so '#' cannot
//     appear in a value.
//   - Space, tab and newline are stripped around the line, the name and the
//     value. grapevine strips '\r' too, so CRLF files work (SKS keeps it in
//     the value and then fails on "hkp_port: 11371\r").
//   - A line that is then empty is skipped. Otherwise it is split at its
//     first ':' into name and value; a line without ':' is an error (SKS
//     dies with Not_found).
//   - The pair is applied as Set(name, value) would: unknown names and bad
//     values are errors, options grapevine does not use give a Notice, and
//     a later line overrides an earlier one.
//   - "name=value:" also sets name, because OCaml's Arg reads
//     "-name=value"; anything after its ':' is ignored with a Notice.
//
// The first error stops parsing and is a *ConfigLineError naming the file
// and line; c may then be partly updated. Parse also records in c.Lines the
// line that set each option, and sets c.Source to name.
func (c *SKSConf) Parse(r io.Reader, name string) ([]Notice, error) {
	var notices []Notice
	if c.Lines == nil {
		c.Lines = make(map[string]int)
	}
	c.Source = name
	err := readConfLines(r, name, func(n int, line string) error {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = trimConfSpace(line)
		if line == "" {
			return nil
		}
		if b, ok := firstControlChar(line); ok {
			return &ConfigLineError{Name: name, Line: n, Reason: fmt.Sprintf("control character 0x%02x in line", b)}
		}
		i := strings.IndexByte(line, ':')
		if i < 0 {
			return &ConfigLineError{Name: name, Line: n,
				Reason: fmt.Sprintf("%s: no ':' (want \"name: value\"; SKS 1.1.6 refuses to start on such a line)", quoteTrunc(line))}
		}
		opt, value := trimConfSpace(line[:i]), trimConfSpace(line[i+1:])
		var extra string
		if k, v, ok := strings.Cut(opt, "="); ok && sksOptionByName[k] != nil {
			// OCaml's Arg (since 4.05) also reads "-name=value", so SKS
			// takes "hkp_port=5:" as hkp_port 5, and what follows ':'
			// becomes a stray command-line argument.
			if sksOptionByName[k].flag != nil {
				return &ConfigLineError{Name: name, Line: n, Option: k, Reason: fmt.Sprintf("takes no value, %q given (SKS 1.1.6 refuses to start on this)", v)}
			}
			opt, value, extra = k, v, value
		}
		text, err := c.Set(opt, value)
		if err != nil {
			var le *ConfigLineError
			if errors.As(err, &le) {
				le.Name, le.Line = name, n
				return le
			}
			return &ConfigLineError{Name: name, Line: n, Option: opt, Reason: err.Error()}
		}
		c.Lines[opt] = n
		if extra != "" {
			if text != "" {
				text += "; "
			}
			text += fmt.Sprintf("%q after ':' ignored (SKS would take it as an extra command-line argument)", extra)
		}
		if text != "" {
			notices = append(notices, Notice{Name: name, Line: n, Option: opt, Text: text})
		}
		return nil
	})
	return notices, err
}

// Set applies one option as SKS's argument parser does with "-name value",
// whether it comes from sksconf or from the command line. For a flag option
// (one that takes no value) any value sets the flag, as in SKS, and the
// value is reported in the returned notice. notice is non-empty also when
// grapevine accepts the option but does not use it. err is a
// *ConfigLineError without file and line for an unknown option or a value
// that does not parse.
func (c *SKSConf) Set(name, value string) (notice string, err error) {
	opt, ok := sksOptionByName[name]
	if !ok {
		return "", &ConfigLineError{Option: quoteTrunc(name), Reason: unknownOptionReason(name)}
	}
	bad := func(format string, args ...any) error {
		return &ConfigLineError{Option: name, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case opt.flag != nil:
		opt.flag(c)
		if value != "" {
			notice = fmt.Sprintf("takes no value; %q ignored and the flag is set (SKS sets it whatever the value, even \"false\"; write %q)", value, name+":")
		}
	case opt.int != nil:
		v, err := parseOCamlInt(value)
		if err != nil {
			return "", bad("%s", err)
		}
		if err := opt.int(c, v); err != nil {
			return "", bad("%s", err)
		}
	case opt.float != nil:
		v, err := parseOCamlFloat(value)
		if err != nil {
			return "", bad("%s", err)
		}
		if err := opt.float(c, v); err != nil {
			return "", bad("%s", err)
		}
	case opt.str != nil:
		if err := opt.str(c, value); err != nil {
			return "", bad("%s", err)
		}
	case opt.bool != nil:
		v, err := parseConfBool(value)
		if err != nil {
			return "", bad("%s", err)
		}
		opt.bool(c, v)
	}
	if opt.unused != "" {
		if notice != "" {
			notice += "; "
		}
		notice += opt.unused
	}
	return notice, nil
}

// sksOption describes one option. Exactly one of flag, int, float, str and
// bool is set; it fixes the value syntax.
type sksOption struct {
	name string
	// unused, if not empty, is the Notice text for an option grapevine
	// accepts but does not use.
	unused string
	flag   func(*SKSConf)                // OCaml Arg.Set / Arg.Clear: no value
	int    func(*SKSConf, int) error     // OCaml int_of_string
	float  func(*SKSConf, float64) error // OCaml float_of_string
	str    func(*SKSConf, string) error  // taken verbatim
	bool   func(*SKSConf, bool)          // grapevine options only
}

// Notice texts shared by several options.
const (
	unusedBDB   = "BerkeleyDB tuning; grapevine stores keys in its log and Pebble, ignored"
	unusedPTree = "SKS prefix-tree storage tuning; grapevine's prefix tree is a Pebble projection, ignored"
	unusedTest  = "SKS test setting, ignored"
)

// sksOptions lists every option of SKS 1.1.6 in settings.ml order, then
// grapevine's. The help options are handled in unknownOptionReason.
var sksOptions = []sksOption{
	{name: "debug", unused: "logging is always on in grapevine; no effect", flag: func(c *SKSConf) { c.Debug = true }},
	{name: "debuglevel", int: func(c *SKSConf, v int) error { c.DebugLevel = v; return nil }},
	{name: "q", int: func(c *SKSConf, v int) error { c.BitQuantum = v; return nil }},
	{name: "mbar", int: func(c *SKSConf, v int) error { c.MBar = v; return nil }},
	{name: "seed", unused: unusedTest, int: func(c *SKSConf, v int) error { c.Seed, c.SeedSet = v, true; return nil }},
	{name: "hostname", str: func(c *SKSConf, v string) error { c.Hostname = v; return nil }},
	{name: "nodename", str: func(c *SKSConf, v string) error { c.Nodename = v; return nil }},
	{name: "d", unused: "unused by SKS 1.1.6's servers too, ignored", int: func(c *SKSConf, v int) error { c.Drop = v; return nil }},
	{name: "n", int: func(c *SKSConf, v int) error { c.N = v; return nil }},
	{name: "max_internal_matches", int: func(c *SKSConf, v int) error { c.MaxInternalMatches = v; return nil }},
	{name: "max_matches", int: func(c *SKSConf, v int) error { c.MaxMatches = v; return nil }},
	{name: "max_uid_fetches", int: func(c *SKSConf, v int) error { c.MaxUIDFetches = v; return nil }},
	{name: "pagesize", unused: unusedBDB, int: func(c *SKSConf, v int) error { c.PageSize = v; return nil }},
	{name: "keyid_pagesize", unused: unusedBDB, int: func(c *SKSConf, v int) error { c.KeyIDPageSize = v; return nil }},
	{name: "meta_pagesize", unused: unusedBDB, int: func(c *SKSConf, v int) error { c.MetaPageSize = v; return nil }},
	{name: "subkeyid_pagesize", unused: unusedBDB, int: func(c *SKSConf, v int) error { c.SubkeyIDPageSize = v; return nil }},
	{name: "time_pagesize", unused: unusedBDB, int: func(c *SKSConf, v int) error { c.TimePageSize = v; return nil }},
	{name: "tqueue_pagesize", unused: unusedBDB, int: func(c *SKSConf, v int) error { c.TqueuePageSize = v; return nil }},
	{name: "word_pagesize", unused: unusedBDB, int: func(c *SKSConf, v int) error { c.WordPageSize = v; return nil }},
	{name: "cache", unused: unusedBDB, int: func(c *SKSConf, v int) error { c.CacheMiB = v; return nil }},
	{name: "ptree_pagesize", unused: unusedPTree, int: func(c *SKSConf, v int) error { c.PTreePageSize = v; return nil }},
	{name: "ptree_cache", unused: unusedPTree, int: func(c *SKSConf, v int) error { c.PTreeCacheMiB = v; return nil }},
	{name: "baseport", int: func(c *SKSConf, v int) error { c.ReconPort, c.HKPPort = v, v+1; return nil }},
	{name: "logfile", unused: "deprecated and ignored by SKS 1.1.6 too", str: func(*SKSConf, string) error { return nil }},
	{name: "recon_port", int: func(c *SKSConf, v int) error { c.ReconPort = v; return nil }},
	{name: "recon_address", str: func(c *SKSConf, v string) (err error) { c.ReconAddress, err = parseSKSAddresses(v); return err }},
	{name: "hkp_port", int: func(c *SKSConf, v int) error { c.HKPPort = v; return nil }},
	{name: "hkp_address", str: func(c *SKSConf, v string) (err error) { c.HKPAddress, err = parseSKSAddresses(v); return err }},
	{name: "use_port_80", flag: func(c *SKSConf) { c.UsePort80 = true }},
	{name: "basedir", str: func(c *SKSConf, v string) error { c.Basedir = v; return nil }},
	{name: "stdoutlog", flag: func(c *SKSConf) { c.StdoutLog = true }},
	{name: "diskptree", unused: unusedPTree, flag: func(c *SKSConf) { c.DiskPTree = true }},
	{name: "nodiskptree", unused: unusedPTree, flag: func(c *SKSConf) { c.DiskPTree = false }},
	{name: "max_ptree_nodes", unused: unusedPTree, int: func(c *SKSConf, v int) error { c.MaxPTreeNodes = v; return nil }},
	{name: "prob", unused: unusedTest, float: func(c *SKSConf, v float64) error { c.Prob = v; return nil }},
	{name: "recon_sync_interval", unused: "grapevine updates its prefix tree as each key is applied, ignored",
		float: func(c *SKSConf, v float64) (err error) {
			c.ReconSyncInterval, err = floatDuration(v, time.Second)
			return err
		}},
	{name: "gossip_interval", float: func(c *SKSConf, v float64) (err error) {
		c.GossipInterval, err = floatDuration(v, time.Minute)
		return err
	}},
	{name: "dontgossip", flag: func(c *SKSConf) { c.DontGossip = true }},
	{name: "db_sync_interval", unused: unusedBDB,
		float: func(c *SKSConf, v float64) (err error) {
			c.DBSyncInterval, err = floatDuration(v, time.Second)
			return err
		}},
	{name: "checkpoint_interval", unused: unusedBDB,
		float: func(c *SKSConf, v float64) (err error) {
			c.CheckpointInterval, err = floatDuration(v, time.Second)
			return err
		}},
	{name: "recon_checkpoint_interval", unused: unusedPTree,
		float: func(c *SKSConf, v float64) (err error) {
			c.ReconCheckpointInterval, err = floatDuration(v, time.Second)
			return err
		}},
	{name: "ptree_thresh_mult", int: func(c *SKSConf, v int) error { c.PTreeThreshMult = v; return nil }},
	{name: "recon_thresh_mult", int: func(c *SKSConf, v int) error { c.ReconThreshMult = v; return nil }},
	{name: "max_recover", int: func(c *SKSConf, v int) error { c.MaxRecover = v; return nil }},
	{name: "http_fetch_size", int: func(c *SKSConf, v int) error { c.HTTPFetchSize = v; return nil }},
	{name: "wserver_timeout", int: func(c *SKSConf, v int) (err error) { c.WserverTimeout, err = intDuration(v, time.Second); return err }},
	{name: "reconciliation_timeout", int: func(c *SKSConf, v int) (err error) {
		c.ReconciliationTimeout, err = intDuration(v, time.Minute)
		return err
	}},
	{name: "stat_hour", int: func(c *SKSConf, v int) error { c.StatHour = v; return nil }},
	{name: "initial_stat", flag: func(c *SKSConf) { c.InitialStat = true }},
	{name: "reconciliation_config_timeout", int: func(c *SKSConf, v int) (err error) {
		c.ReconciliationConfigTimeout, err = intDuration(v, time.Second)
		return err
	}},
	{name: "missing_keys_timeout", int: func(c *SKSConf, v int) (err error) {
		c.MissingKeysTimeout, err = intDuration(v, time.Second)
		return err
	}},
	{name: "command_timeout", unused: "grapevine has no db_com_sock, ignored",
		int: func(c *SKSConf, v int) (err error) { c.CommandTimeout, err = intDuration(v, time.Second); return err }},
	{name: "sendmail_cmd", str: func(c *SKSConf, v string) error { c.SendmailCmd = v; return nil }},
	{name: "from_addr", str: func(c *SKSConf, v string) error { c.FromAddr = v; return nil }},
	{name: "dump_new_only", flag: func(c *SKSConf) { c.DumpNewOnly = true }},
	{name: "max_outstanding_recon_requests", int: func(c *SKSConf, v int) error { c.MaxOutstandingReconRequests = v; return nil }},
	{name: "membership_reload_interval", float: func(c *SKSConf, v float64) (err error) {
		c.MembershipReloadInterval, err = floatDuration(v, time.Hour)
		return err
	}},
	{name: "disable_mailsync", flag: func(c *SKSConf) { c.DisableMailsync = true }},
	{name: "disable_log_diffs", flag: func(c *SKSConf) { c.DisableLogDiffs = true }},
	{name: "stdin", unused: "sksclient option, ignored", flag: func(c *SKSConf) { c.Stdin = true }},
	{name: "server_contact", str: func(c *SKSConf, v string) error { c.ServerContact = v; return nil }},

	// grapevine's own options; see the table at the top of this file.
	{name: "grapevine_max_key_bytes", int: func(c *SKSConf, v int) error { c.MaxKeyBytes = int64(v); return nil }},
	{name: "grapevine_max_packet_bytes", int: func(c *SKSConf, v int) error { c.KeyLimits.MaxPacketBytes = v; return nil }},
	{name: "grapevine_max_sig_bytes", int: func(c *SKSConf, v int) error { c.KeyLimits.MaxSigBytes = v; return nil }},
	{name: "grapevine_max_uids", int: func(c *SKSConf, v int) error { c.KeyLimits.MaxUIDs = v; return nil }},
	{name: "grapevine_max_subkeys", int: func(c *SKSConf, v int) error { c.KeyLimits.MaxSubkeys = v; return nil }},
	{name: "grapevine_max_sigs", int: func(c *SKSConf, v int) error { c.KeyLimits.MaxSigs = v; return nil }},
	{name: "grapevine_max_certs_per_uid", int: func(c *SKSConf, v int) error { c.KeyLimits.MaxCertsPerUID = v; return nil }},
	{name: "grapevine_max_post_bytes", int: func(c *SKSConf, v int) error { c.MaxPostBytes = int64(v); return nil }},
	{name: "grapevine_max_open_segments", int: func(c *SKSConf, v int) error { c.MaxOpenSegments = v; return nil }},
	{name: "grapevine_background_nice", int: func(c *SKSConf, v int) error { c.BackgroundNice = v; return nil }},
	{name: "grapevine_gossip_interval_seconds", float: func(c *SKSConf, v float64) (err error) {
		c.GossipInterval, err = floatDuration(v, time.Second)
		return err
	}},
	{name: "grapevine_metrics_address", str: func(c *SKSConf, v string) error {
		if v != "" {
			if err := checkHostPort(v); err != nil {
				return err
			}
		}
		c.MetricsAddress = v
		return nil
	}},
	{name: "grapevine_access_log", bool: func(c *SKSConf, v bool) { c.AccessLog = v }},
	{name: "grapevine_http_front_end", bool: func(c *SKSConf, v bool) { c.NoHTTPFrontEnd = !v }},
	{name: "grapevine_rate_limit", float: func(c *SKSConf, v float64) error {
		if v < 0 || v > 1e9 {
			return fmt.Errorf("%v: must be from 0 (off) to 1e9 requests a second", v)
		}
		c.RateLimit = v
		return nil
	}},
	{name: "grapevine_rate_burst", int: func(c *SKSConf, v int) error {
		if v < 1 {
			return fmt.Errorf("%d: must be at least 1", v)
		}
		c.RateBurst = v
		return nil
	}},
	{name: "grapevine_recon_mode", str: func(c *SKSConf, v string) error {
		switch v {
		case ReconModeBoth, ReconModeSKS, ReconModeHockeypuck:
			c.ReconMode = v
			return nil
		}
		return fmt.Errorf("%q: want %s, %s or %s", v, ReconModeBoth, ReconModeSKS, ReconModeHockeypuck)
	}},
	{name: "grapevine_trusted_proxies", str: func(c *SKSConf, v string) error {
		p, err := hkp.ParsePrefixes(v)
		if err != nil {
			return err
		}
		c.TrustedProxies = p
		return nil
	}},
}

var sksOptionByName = func() map[string]*sksOption {
	m := make(map[string]*sksOption, len(sksOptions))
	for i := range sksOptions {
		m[sksOptions[i].name] = &sksOptions[i]
	}
	return m
}()

// unknownOptionReason explains an unknown option name, with a suggestion
// when a known name is close.
func unknownOptionReason(name string) string {
	switch name {
	case "help", "-help":
		// OCaml Arg's help options: SKS prints its usage and exits 0.
		return "SKS prints its usage and exits when it reads this line; remove it"
	case "read_config_file":
		return "a command-line marker, not an option (SKS 1.1.6 refuses it in sksconf)"
	case "":
		return "empty option name before ':'"
	}
	reason := "unknown option (SKS 1.1.6 refuses to start on it)"
	if s := suggestOption(name); s != "" {
		reason += fmt.Sprintf("; did you mean %q?", s)
	}
	return reason
}

// suggestOption returns the known option closest to name if it is close:
// the same but for case, dashes or a leading '-', or at most two edits away.
func suggestOption(name string) string {
	if len(name) > maxSKSOptionNameLen {
		return ""
	}
	norm := strings.ToLower(strings.ReplaceAll(strings.TrimLeft(name, "-"), "-", "_"))
	if _, ok := sksOptionByName[norm]; ok {
		return norm
	}
	best, bestD := "", 3
	for i := range sksOptions {
		if d := editDistance(norm, sksOptions[i].name); d < bestD && len(sksOptions[i].name) > 2 {
			best, bestD = sksOptions[i].name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Validate checks the values that would make grapevine misbehave; SKS
// itself checks none of them and fails later, if at all. It returns the
// first problem as a *ConfigLineError that names the line which set the
// option when the option came from a file. Options grapevine ignores are
// not checked.
func (c *SKSConf) Validate() error {
	bad := func(reason string, opts ...string) error {
		e := &ConfigLineError{Option: opts[0], Reason: reason}
		for _, o := range opts {
			if n := c.Lines[o]; n > e.Line {
				e.Line, e.Option = n, o
			}
		}
		if e.Line > 0 {
			e.Name = c.Source
		}
		return e
	}
	port := func(p int) bool { return p >= 0 && p <= 65535 }
	switch {
	case c.Hostname == "":
		return bad("empty; set it to the name this server has in its peers' membership files", "hostname")
	case checkHost(c.Hostname) != nil:
		return bad(checkHost(c.Hostname).Error(), "hostname")
	case len(c.HKPAddress) == 0:
		return bad("no address to listen on", "hkp_address")
	case len(c.ReconAddress) == 0:
		return bad("no address to listen on", "recon_address")
	case !port(c.HKPPort):
		return bad(fmt.Sprintf("port %d out of range 0–65535", c.HKPPort), "hkp_port", "baseport")
	case !port(c.ReconPort):
		return bad(fmt.Sprintf("port %d out of range 0–65535", c.ReconPort), "recon_port", "baseport")
	case c.HKPPort == c.ReconPort && c.HKPPort != 0:
		return bad(fmt.Sprintf("hkp_port and recon_port are both %d", c.HKPPort), "hkp_port", "recon_port", "baseport")
	case c.Basedir == "":
		return bad("empty", "basedir")
	case c.MaxMatches < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.MaxMatches), "max_matches")
	case c.MaxInternalMatches < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.MaxInternalMatches), "max_internal_matches")
	case c.MaxUIDFetches < 0:
		return bad(fmt.Sprintf("%d: must not be negative", c.MaxUIDFetches), "max_uid_fetches")
	case c.WserverTimeout <= 0:
		return bad(fmt.Sprintf("%v: must be positive", c.WserverTimeout), "wserver_timeout")
	case c.StatHour < 0 || c.StatHour > 23:
		return bad(fmt.Sprintf("%d: want an hour from 0 to 23", c.StatHour), "stat_hour")
	case c.N < 0:
		return bad(fmt.Sprintf("%d: must not be negative", c.N), "n")
	case c.BitQuantum < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.BitQuantum), "q")
	case c.MBar < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.MBar), "mbar")
	case c.MaxRecover < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.MaxRecover), "max_recover")
	case c.HTTPFetchSize < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.HTTPFetchSize), "http_fetch_size")
	case c.MaxOutstandingReconRequests < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.MaxOutstandingReconRequests), "max_outstanding_recon_requests")
	case c.PTreeThreshMult < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.PTreeThreshMult), "ptree_thresh_mult")
	case c.ReconThreshMult < 1:
		return bad(fmt.Sprintf("%d: must be at least 1", c.ReconThreshMult), "recon_thresh_mult")
	case c.GossipInterval <= 0:
		return bad(fmt.Sprintf("%v: must be positive", c.GossipInterval), "gossip_interval", "grapevine_gossip_interval_seconds")
	case c.ReconciliationTimeout <= 0:
		return bad(fmt.Sprintf("%v: must be positive", c.ReconciliationTimeout), "reconciliation_timeout")
	case c.ReconciliationConfigTimeout <= 0:
		return bad(fmt.Sprintf("%v: must be positive", c.ReconciliationConfigTimeout), "reconciliation_config_timeout")
	case c.MissingKeysTimeout <= 0:
		return bad(fmt.Sprintf("%v: must be positive", c.MissingKeysTimeout), "missing_keys_timeout")
	case c.MembershipReloadInterval <= 0:
		return bad(fmt.Sprintf("%v: must be positive", c.MembershipReloadInterval), "membership_reload_interval")
	case c.SendmailCmd == "" && !c.DisableMailsync:
		return bad("empty while mailsync is enabled (set disable_mailsync: to turn it off)", "sendmail_cmd")
	case c.MaxKeyBytes < 1024 && c.MaxKeyBytes != -1:
		return bad(fmt.Sprintf("%d: must be at least 1024", c.MaxKeyBytes), "grapevine_max_key_bytes")
	case c.KeyLimits.MaxPacketBytes < 1024 && c.KeyLimits.MaxPacketBytes != -1:
		return bad(fmt.Sprintf("%d: must be at least 1024 (or -1: no limit)", c.KeyLimits.MaxPacketBytes), "grapevine_max_packet_bytes")
	case c.KeyLimits.MaxSigBytes < 256 && c.KeyLimits.MaxSigBytes != -1:
		return bad(fmt.Sprintf("%d: must be at least 256 (or -1: no limit)", c.KeyLimits.MaxSigBytes), "grapevine_max_sig_bytes")
	case c.KeyLimits.MaxUIDs < 1 && c.KeyLimits.MaxUIDs != -1:
		return bad(fmt.Sprintf("%d: must be at least 1 (or -1: no limit)", c.KeyLimits.MaxUIDs), "grapevine_max_uids")
	case c.KeyLimits.MaxSubkeys < 1 && c.KeyLimits.MaxSubkeys != -1:
		return bad(fmt.Sprintf("%d: must be at least 1 (or -1: no limit)", c.KeyLimits.MaxSubkeys), "grapevine_max_subkeys")
	case c.KeyLimits.MaxSigs < 1 && c.KeyLimits.MaxSigs != -1:
		return bad(fmt.Sprintf("%d: must be at least 1 (or -1: no limit)", c.KeyLimits.MaxSigs), "grapevine_max_sigs")
	case c.KeyLimits.MaxCertsPerUID < 1 && c.KeyLimits.MaxCertsPerUID != -1:
		return bad(fmt.Sprintf("%d: must be at least 1 (or -1: no limit)", c.KeyLimits.MaxCertsPerUID), "grapevine_max_certs_per_uid")
	case c.MaxPostBytes < 1024:
		return bad(fmt.Sprintf("%d: must be at least 1024", c.MaxPostBytes), "grapevine_max_post_bytes")
	case c.MaxOpenSegments != -1 && (c.MaxOpenSegments < 1 || c.MaxOpenSegments > eventlog.MaxOpenSegmentsLimit):
		return bad(fmt.Sprintf("%d: must be from 1 to %d (or -1: none kept open)", c.MaxOpenSegments, eventlog.MaxOpenSegmentsLimit), "grapevine_max_open_segments")
	case c.BackgroundNice < 0 || c.BackgroundNice > 19:
		return bad(fmt.Sprintf("%d: must be from 0 (off) to 19", c.BackgroundNice), "grapevine_background_nice")
	}
	for _, a := range c.HKPAddress {
		if err := checkSKSAddress(a); err != nil {
			return bad(err.Error(), "hkp_address")
		}
	}
	for _, a := range c.ReconAddress {
		if err := checkSKSAddress(a); err != nil {
			return bad(err.Error(), "recon_address")
		}
	}
	if c.MetricsAddress != "" {
		if err := checkHostPort(c.MetricsAddress); err != nil {
			return bad(err.Error(), "grapevine_metrics_address")
		}
	}
	return nil
}

// HKPListenAddrs returns the "host:port" addresses SKS would bind for HKP:
// every hkp_address on port 80 if UsePort80, then on HKPPort (dbserver.ml).
// Host names are not resolved.
func (c *SKSConf) HKPListenAddrs() []string {
	var out []string
	if c.UsePort80 {
		for _, a := range c.HKPAddress {
			out = append(out, net.JoinHostPort(a, "80"))
		}
	}
	for _, a := range c.HKPAddress {
		out = append(out, net.JoinHostPort(a, strconv.Itoa(c.HKPPort)))
	}
	return out
}

// ReconListenAddrs returns the "host:port" addresses SKS would bind for
// recon: every recon_address on ReconPort. Host names are not resolved.
func (c *SKSConf) ReconListenAddrs() []string {
	out := make([]string, 0, len(c.ReconAddress))
	for _, a := range c.ReconAddress {
		out = append(out, net.JoinHostPort(a, strconv.Itoa(c.ReconPort)))
	}
	return out
}

// FromAddress returns FromAddr, or SKS's default when it is empty: the
// login name of the process owner, '@', Hostname (settings.ml
// get_from_addr).
func (c *SKSConf) FromAddress() string {
	if c.FromAddr != "" {
		return c.FromAddr
	}
	login := ""
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	if login == "" {
		login = os.Getenv("USER")
	}
	if login == "" {
		login = strconv.Itoa(os.Getuid())
	}
	return login + "@" + c.Hostname
}

// SKSLayout says where an SKS installation keeps its files under its base
// directory.
type SKSLayout int

const (
	// LayoutSKS is upstream SKS: DIR/sksconf, DIR/membership,
	// DIR/mailsync, DIR/web/, DIR/messages/, DIR/failed_messages/,
	// DIR/dump/ (settings.ml).
	LayoutSKS SKSLayout = iota
	// LayoutDebian is Debian's sks package, which puts the -basedir value in
	// front of FHS paths: DIR/etc/sks/{sksconf,membership,mailsync},
	// DIR/var/lib/sks/{www,dump}, DIR/var/spool/sks/{messages,
	// failed_messages}. Its own default base directory is "", so a system
	// install is basedir "/". shared/tools/sks-peer writes this layout.
	LayoutDebian
)

func (l SKSLayout) String() string {
	if l == LayoutDebian {
		return "debian"
	}
	return "sks"
}

// SKSPaths are the files and directories SKS uses, as paths under a base
// directory.
type SKSPaths struct {
	Layout SKSLayout
	// Conf is the sksconf that was read, "" if there was none (SKS then
	// runs on its defaults).
	Conf           string
	Membership     string
	Mailsync       string
	Web            string
	Messages       string
	FailedMessages string
	Dump           string
}

// Paths returns where SKS with layout l looks for its files under basedir.
// Conf is the sksconf location for this layout whether or not it exists.
func (l SKSLayout) Paths(basedir string) SKSPaths {
	j := func(p string) string { return filepath.Join(basedir, filepath.FromSlash(p)) }
	if l == LayoutDebian {
		return SKSPaths{Layout: l, Conf: j("etc/sks/sksconf"), Membership: j("etc/sks/membership"),
			Mailsync: j("etc/sks/mailsync"), Web: j("var/lib/sks/www"), Messages: j("var/spool/sks/messages"),
			FailedMessages: j("var/spool/sks/failed_messages"), Dump: j("var/lib/sks/dump")}
	}
	return SKSPaths{Layout: l, Conf: j("sksconf"), Membership: j("membership"), Mailsync: j("mailsync"),
		Web: j("web"), Messages: j("messages"), FailedMessages: j("failed_messages"), Dump: j("dump")}
}

// FindSKSConf reports which sksconf SKS would read for basedir (the
// -basedir of the command line, or "."). Upstream SKS reads DIR/sksconf;
// Debian's sks reads DIR/etc/sks/sksconf and nothing else. The layout is
// Debian's if DIR/etc/sks/sksconf exists, or if DIR/sksconf does not exist
// and DIR/etc/sks is a directory. path is "" when the layout's sksconf does
// not exist: SKS then runs on its defaults. It is an error if both files
// exist, because which one counts depends on the SKS binary that ran there.
func FindSKSConf(basedir string) (path string, layout SKSLayout, err error) {
	up := LayoutSKS.Paths(basedir).Conf
	deb := LayoutDebian.Paths(basedir).Conf
	upOK, err := regularFileExists(up)
	if err != nil {
		return "", LayoutSKS, err
	}
	debOK, err := regularFileExists(deb)
	if err != nil {
		return "", LayoutSKS, err
	}
	switch {
	case upOK && debOK:
		return "", LayoutSKS, fmt.Errorf("basedir %s: both %s (read by SKS) and %s (read by Debian's sks) exist; remove the one not in use", basedir, up, deb)
	case upOK:
		return up, LayoutSKS, nil
	case debOK:
		return deb, LayoutDebian, nil
	}
	if fi, err := os.Stat(filepath.Dir(deb)); err == nil && fi.IsDir() {
		return "", LayoutDebian, nil
	}
	return "", LayoutSKS, nil
}

// LoadSKSConf finds and parses the sksconf of basedir like SKS, starting
// from DefaultSKSConf with Basedir set to basedir. The returned paths are
// under the final Basedir, which a basedir line in the file may change.
// A missing sksconf is not an error.
func LoadSKSConf(basedir string) (*SKSConf, SKSPaths, []Notice, error) {
	c := DefaultSKSConf()
	c.Basedir = basedir
	path, layout, err := FindSKSConf(basedir)
	if err != nil {
		return nil, SKSPaths{}, nil, err
	}
	var notices []Notice
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, SKSPaths{}, nil, fmt.Errorf("open sksconf: %w", err)
		}
		notices, err = c.Parse(f, path)
		f.Close()
		if err != nil {
			return nil, SKSPaths{}, nil, err
		}
	}
	paths := layout.Paths(c.Basedir)
	paths.Conf = path
	return c, paths, notices, nil
}

func regularFileExists(path string) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("%s: not a regular file", path)
	}
	return true, nil
}

// maxConfLineBytes bounds one line of sksconf, membership or mailsync.
const maxConfLineBytes = 64 << 10

// readConfLines calls fn with each line of r, without its '\n', numbered
// from 1, and stops at the first error. Like OCaml's input_line, a last
// line without '\n' counts.
func readConfLines(r io.Reader, name string, fn func(n int, line string) error) error {
	br := bufio.NewReaderSize(r, maxConfLineBytes)
	for n := 1; ; n++ {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return &ConfigLineError{Name: name, Line: n, Reason: fmt.Sprintf("line longer than %d bytes", maxConfLineBytes)}
		}
		if len(b) > 0 {
			if ferr := fn(n, strings.TrimSuffix(string(b), "\n")); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
	}
}

// trimConfSpace strips what SKS's strip does (space, tab, newline) plus
// '\r', so that CRLF files work.
func trimConfSpace(s string) string {
	return strings.Trim(s, " \t\n\r")
}

// firstControlChar reports the first ASCII control character in s other
// than tab.
func firstControlChar(s string) (byte, bool) {
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < 0x20 && b != '\t') || b == 0x7f {
			return b, true
		}
	}
	return 0, false
}

// quoteTrunc quotes s for a one-line message, shortened if long.
func quoteTrunc(s string) string {
	const maxLen = 60
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "…"
	}
	return strconv.Quote(s)
}

// parseOCamlInt parses s as OCaml's int_of_string does on a 64-bit system
// (runtime/ints.c parse_intnat, 63-bit ints): an optional sign, then
// decimal, or 0x/0o/0b (and 0u, unsigned decimal) with the unsigned forms
// wrapping modulo 2^63; '_' may follow any digit.
func parseOCamlInt(s string) (int, error) {
	bad := func() (int, error) { return 0, fmt.Errorf("%s: not an integer", quoteTrunc(s)) }
	i, neg := 0, false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	base, signed := uint64(10), true
	if i+1 < len(s) && s[i] == '0' {
		switch s[i+1] {
		case 'x', 'X':
			base, signed = 16, false
		case 'o', 'O':
			base, signed = 8, false
		case 'b', 'B':
			base, signed = 2, false
		case 'u', 'U':
			base, signed = 10, false
		}
		if !signed {
			i += 2
		}
	}
	digit := func(c byte) uint64 {
		switch {
		case c >= '0' && c <= '9':
			return uint64(c - '0')
		case c >= 'a' && c <= 'f':
			return uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			return uint64(c-'A') + 10
		}
		return 99
	}
	if i >= len(s) || digit(s[i]) >= base {
		return bad()
	}
	const limit = 1 << 63 // no more than 63 bits
	var res uint64
	for ; i < len(s); i++ {
		if s[i] == '_' {
			continue
		}
		d := digit(s[i])
		if d >= base {
			return bad()
		}
		if res > (limit-1-d)/base {
			return 0, fmt.Errorf("%s: integer out of range", quoteTrunc(s))
		}
		res = res*base + d
	}
	if signed && (res > 1<<62 || (!neg && res == 1<<62)) {
		return 0, fmt.Errorf("%s: integer out of range", quoteTrunc(s))
	}
	v := int64(res) // res < 2^63
	if neg {
		v = -v
	}
	// OCaml keeps the low 63 bits (Val_long); only the unsigned forms can
	// leave that range.
	if v >= 1<<62 {
		v -= 1 << 62
		v -= 1 << 62
	} else if v < -1<<62 {
		v += 1 << 62
		v += 1 << 62
	}
	return int(v), nil
}

// parseOCamlFloat parses s as OCaml's float_of_string does: '_' anywhere is
// dropped, then C strtod syntax (decimal, exponent, hexadecimal with an
// optional p exponent, inf, nan) must take the whole string.
func parseOCamlFloat(s string) (float64, error) {
	t := strings.ReplaceAll(s, "_", "")
	if t == "" {
		return 0, fmt.Errorf("%s: not a number", quoteTrunc(s))
	}
	u := strings.TrimLeft(t, "+-")
	if len(u) > 2 && u[0] == '0' && (u[1] == 'x' || u[1] == 'X') && !strings.ContainsAny(u, "pP") {
		t += "p0" // strtod does not require the binary exponent; Go does
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // strtod overflow gives ±inf, which OCaml accepts
		return 0, fmt.Errorf("%s: not a number", quoteTrunc(s))
	}
	return f, nil
}

// intDuration converts v units to a Duration, refusing overflow.
func intDuration(v int, unit time.Duration) (time.Duration, error) {
	if v > int(math.MaxInt64/unit) || v < int(math.MinInt64/unit) {
		return 0, fmt.Errorf("%d: out of range", v)
	}
	return time.Duration(v) * unit, nil
}

// floatDuration converts v units to a Duration rounded to the nanosecond,
// refusing NaN and what does not fit.
func floatDuration(v float64, unit time.Duration) (time.Duration, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%v: not a finite number", v)
	}
	ns := math.Round(v * float64(unit))
	if ns >= 0x1p63 || ns < -0x1p63 {
		return 0, fmt.Errorf("%v: out of range", v)
	}
	return time.Duration(ns), nil
}

// parseConfBool parses a grapevine boolean option; empty means true, like
// an SKS flag.
func parseConfBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "", "1", "on", "true", "yes":
		return true, nil
	case "0", "off", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("%s: want on or off (true/false, yes/no, 1/0), or no value for on", quoteTrunc(s))
}

// parseSKSAddresses splits an hkp_address or recon_address value at runs
// of space and tab, as SKS does (common.ml make_addr_list), and checks each
// entry. An empty value gives an empty list, which Validate refuses.
func parseSKSAddresses(v string) ([]string, error) {
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' })
	for _, a := range fields {
		if err := checkSKSAddress(a); err != nil {
			return nil, err
		}
	}
	return fields, nil
}

// checkSKSAddress checks one bind address: an IP literal (IPv6 without
// brackets, a zone allowed) or a host name, as SKS hands it to getaddrinfo.
func checkSKSAddress(a string) error {
	if strings.HasPrefix(a, "[") {
		return fmt.Errorf("%s: write IPv6 addresses without brackets (SKS cannot resolve them)", quoteTrunc(a))
	}
	if _, err := netip.ParseAddr(a); err == nil {
		return nil
	}
	if h, p, err := net.SplitHostPort(a); err == nil && h != "" && p != "" {
		return fmt.Errorf("%s: an address without a port is expected (ports are hkp_port and recon_port)", quoteTrunc(a))
	}
	return checkHost(a)
}

// checkHost checks that h is an IP literal or a syntactically valid DNS
// name (letters, digits, '-', '_', dots; labels up to 63 bytes, 253 in all).
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	bad := fmt.Errorf("%s: not an IP address or host name", quoteTrunc(h))
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return bad
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return bad
			}
		}
	}
	return nil
}

// checkHostPort checks a "host:port" listen address; the host may be empty
// (all addresses).
func checkHostPort(a string) error {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%s: want host:port ([v6]:port for IPv6)", quoteTrunc(a))
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: port must be a number from 0 to 65535", quoteTrunc(a))
	}
	if h != "" {
		if err := checkHost(h); err != nil {
			return err
		}
	}
	return nil
}
