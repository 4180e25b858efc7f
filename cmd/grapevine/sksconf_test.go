package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Files in testdata/sksconf and where they come from:
//
//   - debian-etc-sks.{sksconf,membership,mailsync}: /etc/sks/* of Debian's
//     sks package 1.1.6+git20210302.c3ba6d5a-4+b2 (conffiles, unchanged).
//   - sks-sample-{typical,minimal}.sksconf, sks-sample.{membership,mailsync}:
//     SKS's sampleConfig, as shipped by that package in
//     /usr/share/doc/sks/sampleConfig.
//   - spec-config-md.*: the examples in shared/spec/config.md §2, §4, §5.
//   - sks-peer*.{sksconf,membership,mailsync}: what shared/tools/sks-peer
//     start writes into DIR/etc/sks/ (see the comments in the test table
//     for the flags).
//   - bad-*.sksconf: one bad line each; the rest are made up to pin one
//     behaviour each (named after it).
//
// TestSKSConfAgreesWithSKS runs the real SKS over every sksconf here.
const sksconfTestdata = "testdata/sksconf"

func openTestdata(t testing.TB, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join(sksconfTestdata, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// sksConfDiff lists the fields in which got and want differ, ignoring Lines
// and Source.
func sksConfDiff(got, want *SKSConf) []string {
	var diffs []string
	g, w := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for i := 0; i < g.NumField(); i++ {
		name := g.Type().Field(i).Name
		if name == "Lines" || name == "Source" {
			continue
		}
		if gf, wf := g.Field(i).Interface(), w.Field(i).Interface(); !reflect.DeepEqual(gf, wf) {
			diffs = append(diffs, fmt.Sprintf("%s = %#v, want %#v", name, gf, wf))
		}
	}
	return diffs
}

func TestParseSKSConfFiles(t *testing.T) {
	tests := []struct {
		file string
		want func(c *SKSConf)
		// notices as "line option"
		notices []string
		// validate is the expected Validate error, "" for none.
		validate string
	}{
		{file: "spec-config-md.sksconf", want: func(c *SKSConf) {
			c.Basedir = "/var/sks"
			c.DebugLevel = 3
			c.Hostname = "keyserver.example.tld"
			c.HKPPort, c.ReconPort = 11371, 11370
			c.ServerContact = "0xDECAFBADDEADBEEF"
			c.FromAddr = "pgp-public-keys@example.tld"
			c.SendmailCmd = "/usr/sbin/sendmail -t -oi"
			c.InitialStat = true
			c.MembershipReloadInterval = time.Hour
			c.StatHour = 17
			c.PageSize, c.KeyIDPageSize, c.MetaPageSize, c.SubkeyIDPageSize = 128, 64, 1, 128
			c.TimePageSize, c.TqueuePageSize, c.PTreePageSize = 128, 1, 8
		}, notices: []string{"13 pagesize", "14 keyid_pagesize", "15 meta_pagesize", "16 subkeyid_pagesize",
			"17 time_pagesize", "18 tqueue_pagesize", "20 ptree_pagesize"}},
		// The same settings, with tabs, as SKS ships them.
		{file: "sks-sample-typical.sksconf", want: func(c *SKSConf) {
			c.Basedir = "/var/sks"
			c.DebugLevel = 3
			c.Hostname = "keyserver.example.tld"
			c.HKPPort, c.ReconPort = 11371, 11370
			c.ServerContact = "0xDECAFBADDEADBEEF"
			c.FromAddr = "pgp-public-keys@example.tld"
			c.SendmailCmd = "/usr/sbin/sendmail -t -oi"
			c.InitialStat = true
			c.MembershipReloadInterval = time.Hour
			c.StatHour = 17
			c.PageSize, c.KeyIDPageSize, c.MetaPageSize, c.SubkeyIDPageSize = 128, 64, 1, 128
			c.TimePageSize, c.TqueuePageSize, c.PTreePageSize = 128, 1, 8
		}, notices: []string{"48 pagesize", "51 keyid_pagesize", "54 meta_pagesize", "56 subkeyid_pagesize",
			"59 time_pagesize", "62 tqueue_pagesize", "69 ptree_pagesize"}},
		{file: "sks-sample-minimal.sksconf", want: func(c *SKSConf) {
			c.DebugLevel = 3
			c.Hostname = "keyserver.foo.bar"
			c.ServerContact = "0xDECAFBADDEADBEEF"
		}},
		{file: "debian-etc-sks.sksconf", want: func(c *SKSConf) {
			c.HKPAddress = []string{"127.0.0.1", "::1"}
			c.PageSize, c.PTreePageSize = 16, 16
		}, notices: []string{"39 pagesize", "43 ptree_pagesize"}},
		// sks-peer start --hkp-port 21371 --recon-port 21370 --peer 127.0.0.1:22370
		{file: "sks-peer.sksconf", want: func(c *SKSConf) {
			c.Hostname, c.Nodename = "127.0.0.254", "sks-peer-21371"
			c.HKPAddress, c.HKPPort = []string{"127.0.0.1"}, 21371
			c.ReconAddress, c.ReconPort = []string{"127.0.0.1"}, 21370
			c.GossipInterval = 3 * time.Second
			c.ReconciliationConfigTimeout = 15 * time.Second
			c.DebugLevel = 4
			c.InitialStat, c.DisableMailsync = true, true
			c.SendmailCmd = "/bin/true"
		}},
		// sks-peer start --addr ::1 --hkp-port 22371 --recon-port 22370 --peer [::1]:21370
		//   --gossip-interval 0.01 --no-gossip --debuglevel 6 --conf 'max_matches: 10'
		{file: "sks-peer-ipv6-nogossip.sksconf", want: func(c *SKSConf) {
			c.Hostname, c.Nodename = "127.0.0.254", "sks-peer-22371"
			c.HKPAddress, c.HKPPort = []string{"::1"}, 22371
			c.ReconAddress, c.ReconPort = []string{"::1"}, 22370
			c.GossipInterval = 600 * time.Millisecond
			c.ReconciliationConfigTimeout = 15 * time.Second
			c.DebugLevel = 6
			c.InitialStat, c.DisableMailsync, c.DontGossip = true, true, true
			c.SendmailCmd = "/bin/true"
			c.MaxMatches = 10
		}},
		{file: "bare-booleans.sksconf", want: func(c *SKSConf) {
			c.Debug, c.UsePort80, c.StdoutLog, c.DiskPTree, c.DontGossip = true, true, true, true, true
			c.InitialStat, c.DumpNewOnly, c.DisableMailsync, c.DisableLogDiffs, c.Stdin = true, true, true, true, true
		}, notices: []string{"2 debug", "5 nodiskptree", "6 diskptree", "12 stdin"}},
		{file: "flag-values.sksconf", want: func(c *SKSConf) {
			c.InitialStat, c.DontGossip, c.DisableMailsync, c.UsePort80 = true, true, true, true
		}, notices: []string{"2 initial_stat", "3 dontgossip", "4 disable_mailsync"}},
		{file: "addresses.sksconf", want: func(c *SKSConf) {
			c.HKPAddress = []string{"127.0.0.1", "::1", "192.0.2.10", "2001:db8::1"}
			c.ReconAddress = []string{"keyserver.example.org", "127.0.0.1", "fe80::1%eth0"}
		}},
		{file: "grapevine-options.sksconf", want: func(c *SKSConf) {
			c.Hostname = "keyserver.example.org"
			c.GossipInterval = 2500 * time.Millisecond
			c.MaxKeyBytes = 64 << 20
			c.MaxPostBytes = 16 << 20
			c.MaxOpenSegments = 1024
			c.MetricsAddress = "127.0.0.1:9100"
			c.AccessLog = true
			c.NoHTTPFrontEnd = true
		}},
		{file: "crlf.sksconf", want: func(c *SKSConf) {
			c.Hostname = "keyserver.example.org"
			c.HKPPort = 11371
			c.InitialStat = true
			c.GossipInterval = 30 * time.Second
			c.FromAddr = "pgp-public-keys@keyserver.example.org"
		}},
		{file: "ocaml-numbers.sksconf", want: func(c *SKSConf) {
			c.HKPPort, c.ReconPort = 11403, 11370
			c.MaxMatches, c.MaxInternalMatches, c.MaxRecover = 500, 20000, 2000
			c.DebugLevel, c.StatHour, c.HTTPFetchSize = 4, 17, 100
			c.GossipInterval = 15 * time.Second
			c.MembershipReloadInterval = 30 * time.Minute
			c.CheckpointInterval = 30 * time.Minute
			c.ReconSyncInterval = 100 * time.Second
			c.ReconciliationTimeout = 30 * time.Minute
			c.WserverTimeout = -time.Second
		}, notices: []string{"12 checkpoint_interval", "13 recon_sync_interval"},
			validate: "ocaml-numbers.sksconf:15: wserver_timeout: -1s: must be positive"},
		{file: "baseport.sksconf", want: func(c *SKSConf) { c.ReconPort, c.HKPPort = 21370, 8080 }},
		{file: "arg-equals.sksconf", want: func(c *SKSConf) { c.HKPPort, c.Nodename = 11400, "node=1" },
			notices: []string{"3 nodename"}},
		{file: "unused-options.sksconf", want: func(c *SKSConf) {
			c.Debug, c.Seed, c.SeedSet, c.Prob, c.Drop = true, 42, true, 0.5, 3
			c.PageSize, c.KeyIDPageSize, c.MetaPageSize, c.SubkeyIDPageSize = 16, 64, 1, 128
			c.TimePageSize, c.TqueuePageSize, c.WordPageSize, c.CacheMiB = 128, 1, 8, 100
			c.PTreePageSize, c.PTreeCacheMiB, c.DiskPTree, c.MaxPTreeNodes = 16, 70, false, 2000
			c.ReconSyncInterval, c.DBSyncInterval = 10*time.Second, time.Minute
			c.CheckpointInterval, c.ReconCheckpointInterval = 10*time.Minute, 10*time.Minute
			c.CommandTimeout, c.Stdin = 30*time.Second, true
		}, notices: []string{"2 logfile", "3 debug", "4 seed", "5 prob", "6 d", "7 pagesize", "8 keyid_pagesize",
			"9 meta_pagesize", "10 subkeyid_pagesize", "11 time_pagesize", "12 tqueue_pagesize", "13 word_pagesize",
			"14 cache", "15 ptree_pagesize", "16 ptree_cache", "17 diskptree", "18 nodiskptree", "19 max_ptree_nodes",
			"20 recon_sync_interval", "21 db_sync_interval", "22 checkpoint_interval", "23 recon_checkpoint_interval",
			"24 command_timeout", "25 stdin"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, notices, err := ParseSKSConf(openTestdata(t, tc.file), tc.file)
			if err != nil {
				t.Fatalf("ParseSKSConf: %v", err)
			}
			want := DefaultSKSConf()
			tc.want(want)
			for _, d := range sksConfDiff(got, want) {
				t.Error(d)
			}
			var gotNotices []string
			for _, n := range notices {
				gotNotices = append(gotNotices, fmt.Sprintf("%d %s", n.Line, n.Option))
				if n.Name != tc.file || n.Text == "" || strings.Contains(n.Text, "\n") {
					t.Errorf("notice %+v: want name %q and a one-line text", n, tc.file)
				}
			}
			if !slices.Equal(gotNotices, tc.notices) {
				t.Errorf("notices = %q, want %q", gotNotices, tc.notices)
			}
			if got.Source != tc.file {
				t.Errorf("Source = %q, want %q", got.Source, tc.file)
			}
			err = got.Validate()
			if got, want := errString(err), tc.validate; got != want {
				t.Errorf("Validate() = %q, want %q", got, want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestParseSKSConfBadLines pins every kind of line ParseSKSConf refuses, with
// the line number and message. sks is what SKS 1.1.6 does with the same
// file (checked by TestSKSConfAgreesWithSKS).
func TestParseSKSConfBadLines(t *testing.T) {
	tests := []struct{ file, want string }{
		{"bad-no-colon.sksconf", `bad-no-colon.sksconf:3: "hkp_port 11371": no ':' (want "name: value"; SKS 1.1.6 refuses to start on such a line)`},
		{"bad-unknown-option.sksconf", `bad-unknown-option.sksconf:3: "hkp_prot": unknown option (SKS 1.1.6 refuses to start on it); did you mean "hkp_port"?`},
		{"bad-option-case.sksconf", `bad-option-case.sksconf:2: "Hostname": unknown option (SKS 1.1.6 refuses to start on it); did you mean "hostname"?`},
		{"bad-option-dash.sksconf", `bad-option-dash.sksconf:1: "-hkp_port": unknown option (SKS 1.1.6 refuses to start on it); did you mean "hkp_port"?`},
		{"bad-empty-name.sksconf", `bad-empty-name.sksconf:2: "": empty option name before ':'`},
		{"bad-help.sksconf", `bad-help.sksconf:2: "help": SKS prints its usage and exits when it reads this line; remove it`},
		{"bad-read-config-file.sksconf", `bad-read-config-file.sksconf:1: "read_config_file": a command-line marker, not an option (SKS 1.1.6 refuses it in sksconf)`},
		{"bad-int.sksconf", `bad-int.sksconf:1: hkp_port: "eleven": not an integer`},
		{"bad-int-empty.sksconf", `bad-int-empty.sksconf:3: recon_port: "": not an integer`},
		{"bad-int-float.sksconf", `bad-int-float.sksconf:1: recon_port: "11370.0": not an integer`},
		{"bad-int-range.sksconf", `bad-int-range.sksconf:1: max_matches: "4611686018427387904": integer out of range`},
		{"bad-int-underscore.sksconf", `bad-int-underscore.sksconf:1: hkp_port: "_11371": not an integer`},
		{"bad-float.sksconf", `bad-float.sksconf:1: gossip_interval: "1m": not a number`},
		{"bad-float-range.sksconf", `bad-float-range.sksconf:2: membership_reload_interval: 1e+300: out of range`},
		{"bad-float-nan.sksconf", `bad-float-nan.sksconf:1: gossip_interval: NaN: not a finite number`},
		{"bad-duration-range.sksconf", `bad-duration-range.sksconf:1: wserver_timeout: 10000000000: out of range`},
		{"bad-address-brackets.sksconf", `bad-address-brackets.sksconf:1: hkp_address: "[::1]": write IPv6 addresses without brackets (SKS cannot resolve them)`},
		{"bad-address-port.sksconf", `bad-address-port.sksconf:1: recon_address: "127.0.0.1:11370": an address without a port is expected (ports are hkp_port and recon_port)`},
		{"bad-address-name.sksconf", `bad-address-name.sksconf:1: hkp_address: "not@a.host": not an IP address or host name`},
		{"bad-flag-equals.sksconf", `bad-flag-equals.sksconf:1: initial_stat: takes no value, "yes" given (SKS 1.1.6 refuses to start on this)`},
		{"bad-control-char.sksconf", `bad-control-char.sksconf:1: control character 0x01 in line`},
		{"bad-grapevine-bool.sksconf", `bad-grapevine-bool.sksconf:1: grapevine_access_log: "maybe": want on or off (true/false, yes/no, 1/0), or no value for on`},
		{"bad-grapevine-unknown.sksconf", `bad-grapevine-unknown.sksconf:1: "grapevine_max_key_byte": unknown option (SKS 1.1.6 refuses to start on it); did you mean "grapevine_max_key_bytes"?`},
		{"bad-metrics-address.sksconf", `bad-metrics-address.sksconf:1: grapevine_metrics_address: "localhost": want host:port ([v6]:port for IPv6)`},
	}
	files, err := filepath.Glob(filepath.Join(sksconfTestdata, "bad-*.sksconf"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(files), len(tests); got != want {
		t.Errorf("%d bad-*.sksconf files, %d cases: every file needs a case", got, want)
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			c, notices, err := ParseSKSConf(openTestdata(t, tc.file), tc.file)
			if err == nil {
				t.Fatalf("ParseSKSConf succeeded (%d notices), want error %q", len(notices), tc.want)
			}
			if c != nil || notices != nil {
				t.Errorf("ParseSKSConf returned a config or notices with its error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error\n got %s\nwant %s", got, tc.want)
			}
			var le *ConfigLineError
			if !errors.As(err, &le) || le.Name != tc.file || le.Line < 1 {
				t.Errorf("error %#v: want a *ConfigLineError with name and line", err)
			}
		})
	}
}

func TestParseSKSConfLongLine(t *testing.T) {
	in := "hostname: a.example\n# " + strings.Repeat("x", maxConfLineBytes) + "\n"
	_, _, err := ParseSKSConf(strings.NewReader(in), "sksconf")
	if got, want := errString(err), "sksconf:2: line longer than 65536 bytes"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	// Just under the limit is fine, and a last line needs no newline.
	in = "# " + strings.Repeat("x", maxConfLineBytes-3) + "\nhkp_port: 1"
	c, _, err := ParseSKSConf(strings.NewReader(in), "sksconf")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.HKPPort, 1; got != want {
		t.Errorf("HKPPort = %d, want %d", got, want)
	}
}

func TestParseSKSConfReadError(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := ParseSKSConf(errReader{boom}, "sksconf")
	if !errors.Is(err, boom) || err.Error() != "read sksconf: boom" {
		t.Errorf("error = %v, want read sksconf: boom", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestSKSConfLines(t *testing.T) {
	in := "hkp_port: 1\n\n# c\nrecon_port: 2\nhkp_port: 3\ninitial_stat:\n"
	c, _, err := ParseSKSConf(strings.NewReader(in), "sksconf")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"hkp_port": 5, "recon_port": 4, "initial_stat": 6}
	if !reflect.DeepEqual(c.Lines, want) {
		t.Errorf("Lines = %v, want %v", c.Lines, want)
	}
	if got, want := c.HKPPort, 3; got != want {
		t.Errorf("HKPPort = %d, want %d (the last line wins)", got, want)
	}
}

// TestSKSConfSet covers the command-line path: SKS applies -name value
// through the same parser.
func TestSKSConfSet(t *testing.T) {
	c := DefaultSKSConf()
	for _, kv := range [][2]string{{"basedir", "/srv/sks"}, {"hkp_address", "127.0.0.1 ::1"}, {"gossip_interval", "0.5"}} {
		if n, err := c.Set(kv[0], kv[1]); err != nil || n != "" {
			t.Fatalf("Set(%q, %q) = %q, %v", kv[0], kv[1], n, err)
		}
	}
	if c.Basedir != "/srv/sks" || !slices.Equal(c.HKPAddress, []string{"127.0.0.1", "::1"}) || c.GossipInterval != 30*time.Second {
		t.Errorf("after Set: Basedir %q, HKPAddress %q, GossipInterval %v", c.Basedir, c.HKPAddress, c.GossipInterval)
	}
	if len(c.Lines) != 0 {
		t.Errorf("Lines = %v, want none for Set", c.Lines)
	}
	n, err := c.Set("dontgossip", "false")
	if err != nil || !c.DontGossip {
		t.Fatalf("Set(dontgossip, false) = %v; DontGossip %v, want true", err, c.DontGossip)
	}
	if want := `takes no value; "false" ignored and the flag is set (SKS sets it whatever the value, even "false"; write "dontgossip:")`; n != want {
		t.Errorf("notice = %q, want %q", n, want)
	}
	n, err = c.Set("pagesize", "x")
	if got, want := errString(err), `pagesize: "x": not an integer`; got != want || n != "" {
		t.Errorf("Set(pagesize, x) = %q, %q; want error %q", n, got, want)
	}
	_, err = c.Set("no_such_option", "1")
	if got, want := errString(err), `"no_such_option": unknown option (SKS 1.1.6 refuses to start on it)`; got != want {
		t.Errorf("Set(no_such_option) error = %q, want %q", got, want)
	}
}

// sks116Options is every option of SKS 1.1.6, from `sks -help` of Debian's
// build (settings.ml parse_spec; -help and --help left out).
var sks116Options = strings.Fields(`debug debuglevel q mbar seed hostname nodename d n max_internal_matches
	max_matches max_uid_fetches pagesize keyid_pagesize meta_pagesize subkeyid_pagesize time_pagesize
	tqueue_pagesize word_pagesize cache ptree_pagesize ptree_cache baseport logfile recon_port recon_address
	hkp_port hkp_address use_port_80 basedir stdoutlog diskptree nodiskptree max_ptree_nodes prob
	recon_sync_interval gossip_interval dontgossip db_sync_interval checkpoint_interval
	recon_checkpoint_interval ptree_thresh_mult recon_thresh_mult max_recover http_fetch_size
	wserver_timeout reconciliation_timeout stat_hour initial_stat reconciliation_config_timeout
	missing_keys_timeout command_timeout sendmail_cmd from_addr dump_new_only
	max_outstanding_recon_requests membership_reload_interval disable_mailsync disable_log_diffs stdin
	server_contact`)

func TestSKSConfAcceptsEverySKSOption(t *testing.T) {
	var names []string
	for _, o := range sksOptions {
		if !strings.HasPrefix(o.name, "grapevine_") {
			names = append(names, o.name)
		}
	}
	if !slices.Equal(names, sks116Options) {
		t.Errorf("SKS options\n got %q\nwant %q", names, sks116Options)
	}
	// Each one takes a value of its kind.
	for _, o := range sksOptions[:len(sks116Options)] {
		value := map[bool]string{true: "2", false: ""}[o.flag == nil]
		if o.str != nil {
			value = "127.0.0.1"
		}
		if _, err := DefaultSKSConf().Set(o.name, value); err != nil {
			t.Errorf("Set(%q, %q): %v", o.name, value, err)
		}
	}
	// And the real binary agrees, when it is here.
	sks := sksBinary(t)
	out, _ := exec.Command(sks, "-help").CombinedOutput()
	var live []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "-") && f[0] != "-help" && f[0] != "--help" {
			live = append(live, strings.TrimPrefix(f[0], "-"))
		}
	}
	if !slices.Equal(live, sks116Options) {
		t.Errorf("%s -help lists\n%q\nwant %q", sks, live, sks116Options)
	}
}

// TestSKSConfUnusedOptions checks that exactly the options listed in
// unused-options.sksconf give a notice.
func TestSKSConfUnusedOptions(t *testing.T) {
	_, notices, err := ParseSKSConf(openTestdata(t, "unused-options.sksconf"), "unused-options.sksconf")
	if err != nil {
		t.Fatal(err)
	}
	noticed := map[string]bool{}
	for _, n := range notices {
		noticed[n.Option] = true
	}
	for _, o := range sksOptions {
		if got, want := noticed[o.name], o.unused != ""; got != want {
			t.Errorf("%s: notice in unused-options.sksconf %v, want %v", o.name, got, want)
		}
	}
}

// sksBinary finds SKS for the interoperability tests. A missing SKS is a
// skip locally and a failure in CI.
func sksBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"sks", "/usr/sbin/sks"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("sks not found (apt-get install sks)")
	}
	t.Skip("sks not found (apt-get install sks)")
	return ""
}

// TestSKSConfAgreesWithSKS runs `sks version` on every sksconf in testdata:
// SKS parses its configuration first and dies on a line it refuses. For
// each file SKS and ParseSKSConf must both accept or both refuse, except
// where grapevine differs on purpose.
func TestSKSConfAgreesWithSKS(t *testing.T) {
	sks := sksBinary(t)
	// NB: on bad-help.sksconf SKS prints its usage and exits 0 without
	// running; that counts as refusing.
	differs := map[string]string{
		// grapevine accepts, SKS refuses:
		"crlf.sksconf":              "grapevine strips \\r; SKS keeps it and fails on hkp_port: 11371\\r",
		"grapevine-options.sksconf": "grapevine_* options are unknown to SKS",
		// SKS accepts, grapevine refuses:
		"bad-address-brackets.sksconf": "SKS takes any string; getaddrinfo then fails on [::1]",
		"bad-address-port.sksconf":     "SKS takes any string; getaddrinfo then fails",
		"bad-address-name.sksconf":     "SKS takes any string; getaddrinfo then fails",
		"bad-control-char.sksconf":     "SKS takes any string",
		"bad-duration-range.sksconf":   "SKS's int holds it; no time.Duration does",
		"bad-float-range.sksconf":      "SKS's float holds it; no time.Duration does",
		"bad-float-nan.sksconf":        "SKS accepts nan (and then never gossips)",
	}
	files, err := filepath.Glob(filepath.Join(sksconfTestdata, "*.sksconf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		file := filepath.Base(path)
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Upstream SKS reads DIR/sksconf, Debian's DIR/etc/sks/sksconf.
			dir := t.TempDir()
			for _, p := range []string{LayoutSKS.Paths(dir).Conf, LayoutDebian.Paths(dir).Conf} {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, sks, "version", "-basedir", dir).CombinedOutput()
			sksOK := err == nil && bytes.HasPrefix(out, []byte("SKS version"))
			_, _, perr := ParseSKSConf(bytes.NewReader(data), file)
			ourOK := perr == nil
			if why, ok := differs[file]; ok {
				if sksOK == ourOK {
					t.Errorf("SKS and grapevine both accept=%v, but the table says they differ (%s)", sksOK, why)
				}
				return
			}
			if sksOK != ourOK {
				t.Errorf("SKS accepts=%v (%q), grapevine accepts=%v (%v)", sksOK, firstLine(out), ourOK, perr)
			}
		})
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

func TestSKSConfOCamlNumbers(t *testing.T) {
	ints := []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true}, {"11371", 11371, true}, {"+5", 5, true}, {"-5", -5, true},
		{"011", 11, true}, {"0x1F", 31, true}, {"0X1f", 31, true}, {"-0x1", -1, true},
		{"0o17", 15, true}, {"0b101", 5, true}, {"0u42", 42, true}, {"1_000", 1000, true}, {"1__", 1, true},
		{"4611686018427387903", 1<<62 - 1, true}, {"-4611686018427387904", -1 << 62, true},
		{"4611686018427387904", 0, false},
		{"0x7fffffffffffffff", -1, true}, // 63-bit wrap, as OCaml
		{"0x4000000000000000", -1 << 62, true},
		{"0x8000000000000000", 0, false},
		{"-0x4000000000000000", -1 << 62, true}, {"-0x7fffffffffffffff", 1, true},
		{"", 0, false}, {"-", 0, false}, {"0x", 0, false}, {"_1", 0, false}, {"0x_1", 0, false},
		{"1e3", 0, false}, {"12a", 0, false}, {" 1", 0, false}, {"0b2", 0, false}, {"0o8", 0, false},
	}
	for _, tc := range ints {
		got, err := parseOCamlInt(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseOCamlInt(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	floats := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"1", 1, true}, {"0.05", 0.05, true}, {".5", 0.5, true}, {"5.", 5, true}, {"1e2", 100, true},
		{"1_0.5", 10.5, true}, {"0x1p-2", 0.25, true}, {"0x10", 16, true}, {"-0x1.8p1", -3, true},
		{"", 0, false}, {"_", 0, false}, {"1m", 0, false}, {"1.5e", 0, false}, {"0x", 0, false},
	}
	for _, tc := range floats {
		got, err := parseOCamlFloat(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseOCamlFloat(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestSKSConfValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *SKSConf)
		file string // parsed onto the config after mod, named "sksconf"
		want string
	}{
		{name: "defaults"},
		{name: "no hostname", mod: func(c *SKSConf) { c.Hostname = "" },
			want: "hostname: empty; set it to the name this server has in its peers' membership files"},
		{name: "bad hostname", file: "hostname: key server\n", want: `sksconf:1: hostname: "key server": not an IP address or host name`},
		{name: "no hkp address", file: "# x\nhkp_address:\n", want: "sksconf:2: hkp_address: no address to listen on"},
		{name: "no recon address", mod: func(c *SKSConf) { c.ReconAddress = nil }, want: "recon_address: no address to listen on"},
		{name: "bad address set directly", mod: func(c *SKSConf) { c.HKPAddress = []string{"[::1]"} },
			want: `hkp_address: "[::1]": write IPv6 addresses without brackets (SKS cannot resolve them)`},
		{name: "hkp port", mod: func(c *SKSConf) { c.HKPPort = 70000 }, want: "hkp_port: port 70000 out of range 0–65535"},
		{name: "baseport names its line", file: "hostname: a.example\nbaseport: 65535\n",
			want: "sksconf:2: baseport: port 65536 out of range 0–65535"},
		{name: "recon port", file: "recon_port: -1\n", want: "sksconf:1: recon_port: port -1 out of range 0–65535"},
		{name: "same ports", file: "hkp_port: 11370\n", want: "sksconf:1: hkp_port: hkp_port and recon_port are both 11370"},
		{name: "port 0 for tests", file: "hkp_port: 0\nrecon_port: 0\n"},
		{name: "basedir", file: "basedir:\n", want: "sksconf:1: basedir: empty"},
		{name: "max_matches", file: "max_matches: 0\n", want: "sksconf:1: max_matches: 0: must be at least 1"},
		{name: "max_internal_matches", file: "max_internal_matches: 0\n", want: "sksconf:1: max_internal_matches: 0: must be at least 1"},
		{name: "max_uid_fetches", file: "max_uid_fetches: -1\n", want: "sksconf:1: max_uid_fetches: -1: must not be negative"},
		{name: "stat_hour", file: "stat_hour: 24\n", want: "sksconf:1: stat_hour: 24: want an hour from 0 to 23"},
		{name: "n", file: "n: -1\n", want: "sksconf:1: n: -1: must not be negative"},
		{name: "q", file: "q: 0\n", want: "sksconf:1: q: 0: must be at least 1"},
		{name: "mbar", file: "mbar: 0\n", want: "sksconf:1: mbar: 0: must be at least 1"},
		{name: "max_recover", file: "max_recover: 0\n", want: "sksconf:1: max_recover: 0: must be at least 1"},
		{name: "http_fetch_size", file: "http_fetch_size: 0\n", want: "sksconf:1: http_fetch_size: 0: must be at least 1"},
		{name: "max_outstanding", file: "max_outstanding_recon_requests: 0\n", want: "sksconf:1: max_outstanding_recon_requests: 0: must be at least 1"},
		{name: "ptree_thresh_mult", file: "ptree_thresh_mult: 0\n", want: "sksconf:1: ptree_thresh_mult: 0: must be at least 1"},
		{name: "recon_thresh_mult", file: "recon_thresh_mult: 0\n", want: "sksconf:1: recon_thresh_mult: 0: must be at least 1"},
		{name: "gossip_interval", file: "gossip_interval: 0\n", want: "sksconf:1: gossip_interval: 0s: must be positive"},
		{name: "grapevine gossip seconds wins", file: "gossip_interval: 1\ngrapevine_gossip_interval_seconds: -1\n",
			want: "sksconf:2: grapevine_gossip_interval_seconds: -1s: must be positive"},
		{name: "reconciliation_timeout", file: "reconciliation_timeout: 0\n", want: "sksconf:1: reconciliation_timeout: 0s: must be positive"},
		{name: "config timeout", file: "reconciliation_config_timeout: 0\n", want: "sksconf:1: reconciliation_config_timeout: 0s: must be positive"},
		{name: "missing_keys_timeout", file: "missing_keys_timeout: 0\n", want: "sksconf:1: missing_keys_timeout: 0s: must be positive"},
		{name: "membership_reload_interval", file: "membership_reload_interval: 0\n", want: "sksconf:1: membership_reload_interval: 0s: must be positive"},
		{name: "sendmail_cmd", file: "sendmail_cmd:\n", want: "sksconf:1: sendmail_cmd: empty while mailsync is enabled (set disable_mailsync: to turn it off)"},
		{name: "sendmail_cmd without mailsync", file: "sendmail_cmd:\ndisable_mailsync:\n"},
		{name: "max key bytes", file: "grapevine_max_key_bytes: 1000\n", want: "sksconf:1: grapevine_max_key_bytes: 1000: must be at least 1024"},
		{name: "max post bytes", file: "grapevine_max_post_bytes: 0\n", want: "sksconf:1: grapevine_max_post_bytes: 0: must be at least 1024"},
		{name: "max open segments 0", file: "grapevine_max_open_segments: 0\n", want: "sksconf:1: grapevine_max_open_segments: 0: must be from 1 to 65536 (or -1: none kept open)"},
		{name: "max open segments too many", file: "grapevine_max_open_segments: 70000\n", want: "sksconf:1: grapevine_max_open_segments: 70000: must be from 1 to 65536 (or -1: none kept open)"},
		{name: "max open segments none", file: "grapevine_max_open_segments: -1\n"},
		{name: "background nice off", file: "grapevine_background_nice: 0\n"},
		{name: "background nice 19", file: "grapevine_background_nice: 19\n"},
		{name: "background nice 20", file: "grapevine_background_nice: 20\n", want: "sksconf:1: grapevine_background_nice: 20: must be from 0 (off) to 19"},
		{name: "background nice negative", file: "grapevine_background_nice: -5\n", want: "sksconf:1: grapevine_background_nice: -5: must be from 0 (off) to 19"},
		{name: "metrics address set directly", mod: func(c *SKSConf) { c.MetricsAddress = "127.0.0.1:99999" },
			want: `grapevine_metrics_address: "127.0.0.1:99999": port must be a number from 0 to 65535`},
		{name: "metrics address", file: "grapevine_metrics_address: [::1]:9100\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultSKSConf()
			c.Hostname = "keyserver.example.org"
			if tc.mod != nil {
				tc.mod(c)
			}
			if tc.file != "" {
				if _, err := c.Parse(strings.NewReader(tc.file), "sksconf"); err != nil {
					t.Fatalf("Parse: %v", err)
				}
			}
			if got := errString(c.Validate()); got != tc.want {
				t.Errorf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSKSConfListenAddrs(t *testing.T) {
	c, _, err := ParseSKSConf(strings.NewReader("hkp_address: 127.0.0.1 ::1\nuse_port_80:\nrecon_address: ::\nbaseport: 21370\n"), "sksconf")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.HKPListenAddrs(), []string{"127.0.0.1:80", "[::1]:80", "127.0.0.1:21371", "[::1]:21371"}; !slices.Equal(got, want) {
		t.Errorf("HKPListenAddrs() = %q, want %q", got, want)
	}
	if got, want := c.ReconListenAddrs(), []string{"[::]:21370"}; !slices.Equal(got, want) {
		t.Errorf("ReconListenAddrs() = %q, want %q", got, want)
	}
	if got, want := DefaultSKSConf().HKPListenAddrs(), []string{"0.0.0.0:11371", "[::]:11371"}; !slices.Equal(got, want) {
		t.Errorf("default HKPListenAddrs() = %q, want %q", got, want)
	}
}

func TestSKSConfFromAddress(t *testing.T) {
	c := DefaultSKSConf()
	c.Hostname = "keyserver.example.org"
	if got := c.FromAddress(); !strings.HasSuffix(got, "@keyserver.example.org") || strings.HasPrefix(got, "@") {
		t.Errorf("default FromAddress() = %q, want <login>@keyserver.example.org", got)
	}
	c.FromAddr = "PKS <pgp-public-keys@keyserver.example.org>"
	if got, want := c.FromAddress(), c.FromAddr; got != want {
		t.Errorf("FromAddress() = %q, want %q", got, want)
	}
}

func TestSKSConfDefaults(t *testing.T) {
	c := DefaultSKSConf()
	host, _ := os.Hostname()
	// Spot checks against settings.ml; the full list is in TestParseSKSConfFiles.
	checks := []struct {
		name      string
		got, want any
	}{
		{"Hostname", c.Hostname, host},
		{"Nodename", c.Nodename, host},
		{"HKPAddress", c.HKPAddress, []string{"0.0.0.0", "::"}},
		{"GossipInterval", c.GossipInterval, 60 * time.Second},
		{"ReconciliationTimeout", c.ReconciliationTimeout, time.Hour},
		{"MembershipReloadInterval", c.MembershipReloadInterval, 6 * time.Hour},
		{"SendmailCmd", c.SendmailCmd, "sendmail -t -oi"},
		{"MaxPostBytes", c.MaxPostBytes, int64(8 << 20)},
		{"MaxOpenSegments", c.MaxOpenSegments, 256},
		{"BackgroundNice", c.BackgroundNice, 10},
		{"Debug", c.Debug, true},
		{"DiskPTree", c.DiskPTree, true},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
	// "gossip_interval: 1" (minutes) is the default (60 s).
	d, _, err := ParseSKSConf(strings.NewReader("gossip_interval: 1\n"), "sksconf")
	if err != nil || d.GossipInterval != c.GossipInterval {
		t.Errorf("gossip_interval: 1 gives %v, %v; want %v", d.GossipInterval, err, c.GossipInterval)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sksconfTestdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoadSKSConfLayouts(t *testing.T) {
	t.Run("sks-peer", func(t *testing.T) {
		// The layout shared/tools/sks-peer builds (Debian's sks).
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "etc/sks/sksconf"), readTestdata(t, "sks-peer.sksconf"))
		writeFile(t, filepath.Join(dir, "etc/sks/membership"), readTestdata(t, "sks-peer.membership"))
		writeFile(t, filepath.Join(dir, "etc/sks/mailsync"), "")
		c, paths, notices, err := LoadSKSConf(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(notices) != 0 || c.HKPPort != 21371 || c.Basedir != dir {
			t.Errorf("notices %v, HKPPort %d, Basedir %q", notices, c.HKPPort, c.Basedir)
		}
		want := SKSPaths{Layout: LayoutDebian, Conf: filepath.Join(dir, "etc/sks/sksconf"),
			Membership: filepath.Join(dir, "etc/sks/membership"), Mailsync: filepath.Join(dir, "etc/sks/mailsync"),
			Web: filepath.Join(dir, "var/lib/sks/www"), Messages: filepath.Join(dir, "var/spool/sks/messages"),
			FailedMessages: filepath.Join(dir, "var/spool/sks/failed_messages"), Dump: filepath.Join(dir, "var/lib/sks/dump")}
		if paths != want {
			t.Errorf("paths\n got %+v\nwant %+v", paths, want)
		}
		f, err := os.Open(paths.Membership)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		members, err := ParseMembership(f, paths.Membership)
		if err != nil || len(members) != 1 || members[0].String() != "127.0.0.1 22370" {
			t.Errorf("membership = %v, %v; want 127.0.0.1 22370", members, err)
		}
	})
	t.Run("sks", func(t *testing.T) {
		dir, data := t.TempDir(), t.TempDir()
		writeFile(t, filepath.Join(dir, "sksconf"), "hostname: keyserver.example.org\nbasedir: "+data+"\npagesize: 16\n")
		c, paths, notices, err := LoadSKSConf(dir)
		if err != nil {
			t.Fatal(err)
		}
		if c.Basedir != data || len(notices) != 1 || notices[0].String() != filepath.Join(dir, "sksconf")+":3: pagesize: "+unusedBDB {
			t.Errorf("Basedir %q, notices %v", c.Basedir, notices)
		}
		// basedir: in the file moves the data files, not the sksconf read.
		want := LayoutSKS.Paths(data)
		want.Conf = filepath.Join(dir, "sksconf")
		if paths != want {
			t.Errorf("paths\n got %+v\nwant %+v", paths, want)
		}
	})
	t.Run("none", func(t *testing.T) {
		dir := t.TempDir()
		c, paths, notices, err := LoadSKSConf(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := DefaultSKSConf()
		want.Basedir = dir
		if d := sksConfDiff(c, want); len(d) != 0 || notices != nil {
			t.Errorf("config differs from defaults: %v; notices %v", d, notices)
		}
		if paths.Layout != LayoutSKS || paths.Conf != "" || paths.Membership != filepath.Join(dir, "membership") {
			t.Errorf("paths = %+v", paths)
		}
	})
	t.Run("debian without sksconf", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "etc/sks/membership"), "")
		_, paths, _, err := LoadSKSConf(dir)
		if err != nil {
			t.Fatal(err)
		}
		if paths.Layout != LayoutDebian || paths.Conf != "" || paths.Membership != filepath.Join(dir, "etc/sks/membership") {
			t.Errorf("paths = %+v", paths)
		}
	})
	t.Run("both", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "sksconf"), "")
		writeFile(t, filepath.Join(dir, "etc/sks/sksconf"), "")
		_, _, _, err := LoadSKSConf(dir)
		want := fmt.Sprintf("basedir %s: both %s (read by SKS) and %s (read by Debian's sks) exist; remove the one not in use",
			dir, filepath.Join(dir, "sksconf"), filepath.Join(dir, "etc/sks/sksconf"))
		if got := errString(err); got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	})
	t.Run("not a file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "sksconf"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, _, _, err := LoadSKSConf(dir)
		if got, want := errString(err), filepath.Join(dir, "sksconf")+": not a regular file"; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	})
	t.Run("bad line", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "etc/sks/sksconf")
		writeFile(t, path, "hkp_port: x\n")
		_, _, _, err := LoadSKSConf(dir)
		if got, want := errString(err), path+`:1: hkp_port: "x": not an integer`; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	})
}

func FuzzParseSKSConf(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(sksconfTestdata, "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, notices, err := ParseSKSConf(bytes.NewReader(data), "fuzz")
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "fuzz:") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line starting with the name", msg)
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, n := range notices {
			if n.Line < 1 || n.Line > lines || strings.Contains(n.String(), "\n") {
				t.Fatalf("notice %q: bad line or not one line", n.String())
			}
		}
		for opt, n := range c.Lines {
			if n < 1 || n > lines || sksOptionByName[opt] == nil {
				t.Fatalf("Lines[%q] = %d", opt, n)
			}
		}
		if err := c.Validate(); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("Validate error %q is not one line", err)
		}
		c.HKPListenAddrs()
		c.ReconListenAddrs()
		// Parsing is deterministic.
		c2, _, err := ParseSKSConf(bytes.NewReader(data), "fuzz")
		if err != nil || len(sksConfDiff(c, c2)) != 0 {
			t.Fatalf("second parse differs: %v %v", err, sksConfDiff(c, c2))
		}
	})
}

// TestHTTPFrontEndOption: grapevine_http_front_end: off reaches the HKP
// server's configuration; the default keeps the front end.
func TestHTTPFrontEndOption(t *testing.T) {
	for _, off := range []bool{false, true} {
		conf := &SKSConf{NoHTTPFrontEnd: off}
		if got := hkpConfig(conf, zerolog.Nop(), nil).DisableFrontEnd; got != off {
			t.Errorf("NoHTTPFrontEnd %v: hkp DisableFrontEnd %v", off, got)
		}
	}
}
