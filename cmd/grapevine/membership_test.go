package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
)

func TestParseMembershipFiles(t *testing.T) {
	tests := []struct {
		file string
		want []Member
		errs []string // one per bad line
	}{
		{file: "spec-config-md.membership", want: []Member{
			{Host: "keyserver.example.tld", Port: 11370, Comment: "ourselves (must match hostname:)", Line: 2},
			{Host: "peer1.example.net", Port: 11370, Comment: "Jane Admin <jane@example.net> 0x0123456789ABCDEF", Line: 3},
			{Host: "2001:db8::42", Port: 11370, Line: 4},
		}},
		{file: "debian-etc-sks.membership"},
		{file: "sks-sample.membership"},
		{file: "sks-peer.membership", want: []Member{{Host: "127.0.0.1", Port: 22370, Line: 2}}},
		{file: "sks-peer-ipv6.membership", want: []Member{{Host: "::1", Port: 21370, Line: 2}}},
		// SKS 1.1.6 on this file (sks recon, debuglevel 4) logged "Malformed
		// entry" for lines 1-5, resolved lines 6 and 8, and kept line 7
		// without addresses.
		{file: "mixed.membership", want: []Member{
			{Host: "127.0.0.1", Port: 29370, Line: 6},
			{Host: "127.0.0.1", Port: 29374, Line: 8},
			{Host: "fe80::1%eth0", Port: 11370, Comment: "link-local with a zone", Line: 13},
		}, errs: []string{
			`mixed.membership:1: "127.0.0.1 29371": line starts with a blank; SKS 1.1.6 ignores such an entry ("Malformed entry"), remove the indentation`,
			`mixed.membership:2: "127.0.0.3": want "host port"`,
			`mixed.membership:3: "127.0.0.4 29372": line starts with a blank; SKS 1.1.6 ignores such an entry ("Malformed entry"), remove the indentation`,
			`mixed.membership:7: "[::1]": write IPv6 addresses without brackets (SKS cannot resolve them)`,
			`mixed.membership:9: "peer.example:11370": want "host port" separated by a blank, not host:port`,
			`mixed.membership:10: port "0": want a number from 1 to 65535`,
			`mixed.membership:11: port "hkp": want a number from 1 to 65535`,
			`mixed.membership:12: "bad_host!.example": not an IP address or host name`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseMembership(openTestdata(t, tc.file), tc.file)
			if !slices.Equal(got, tc.want) {
				t.Errorf("members\n got %+v\nwant %+v", got, tc.want)
			}
			var gotErrs []string
			if err != nil {
				gotErrs = strings.Split(err.Error(), "\n")
				var le *ConfigLineError
				if !errors.As(err, &le) {
					t.Errorf("error %#v holds no *ConfigLineError", err)
				}
			}
			if !slices.Equal(gotErrs, tc.errs) {
				t.Errorf("errors\n got %q\nwant %q", gotErrs, tc.errs)
			}
		})
	}
}

func TestParseMembershipLines(t *testing.T) {
	tests := []struct {
		in   string
		want []Member
		err  string
	}{
		{in: "", want: nil},
		{in: "# only a comment\n\n \t \n", want: nil},
		{in: "a.example 11370", want: []Member{{Host: "a.example", Port: 11370, Line: 1}}},
		{in: "a.example\t11370\tJane <jane@example.org>\n", want: []Member{{Host: "a.example", Port: 11370, Line: 1}}},
		{in: "a.example 11370#no space before the comment\n", want: []Member{{Host: "a.example", Port: 11370, Comment: "no space before the comment", Line: 1}}},
		{in: "a.example 11370\r\nb.example 11371\r\n", want: []Member{{Host: "a.example", Port: 11370, Line: 1}, {Host: "b.example", Port: 11371, Line: 2}}},
		{in: "a.example 11370\na.example 11370\n", want: []Member{{Host: "a.example", Port: 11370, Line: 1}, {Host: "a.example", Port: 11370, Line: 2}}},
		{in: "a.example 65536\n", err: `m:1: port "65536": want a number from 1 to 65535`},
		{in: "a.example 11370x\n", err: `m:1: port "11370x": want a number from 1 to 65535`},
		{in: "a.exa\x00mple 11370\n", err: `m:1: control character 0x00 in line`},
		{in: "# x\na..example 1\n", err: `m:2: "a..example": not an IP address or host name`},
		{in: "# " + strings.Repeat("x", maxConfLineBytes) + "\n", err: "m:1: line longer than 65536 bytes"},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got, err := ParseMembership(strings.NewReader(tc.in), "m")
			if !slices.Equal(got, tc.want) {
				t.Errorf("members = %+v, want %+v", got, tc.want)
			}
			if got := errString(err); got != tc.err {
				t.Errorf("error = %q, want %q", got, tc.err)
			}
		})
	}
}

func TestParseMembershipReadError(t *testing.T) {
	boom := errors.New("boom")
	got, err := ParseMembership(errReader{boom}, "membership")
	if got != nil || !errors.Is(err, boom) {
		t.Errorf("ParseMembership = %v, %v; want nil, boom", got, err)
	}
}

func TestMemberString(t *testing.T) {
	if got, want := (Member{Host: "2001:db8::42", Port: 11370}).String(), "2001:db8::42 11370"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// fakeResolver answers from a map and counts lookups; it never touches DNS.
type fakeResolver struct {
	answers map[string][]net.IPAddr
	calls   atomic.Int32
	mu      sync.Mutex
	asked   []string
}

func (r *fakeResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	r.calls.Add(1)
	r.mu.Lock()
	r.asked = append(r.asked, host)
	r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return a, nil
}

func ipAddr(s string) net.IPAddr {
	a := netip.MustParseAddr(s)
	return net.IPAddr{IP: net.IP(a.AsSlice()), Zone: a.Zone()}
}

func TestResolveMembers(t *testing.T) {
	members, err := ParseMembership(strings.NewReader(strings.Join([]string{
		"peer1.example.net 11370 # two addresses, unsorted, one duplicate, one IPv4-mapped",
		"192.0.2.7 11370         # a literal: no lookup",
		"::ffff:192.0.2.8 11370  # a mapped literal",
		"gone.example.net 11370  # NXDOMAIN",
		"empty.example.net 11370 # resolves to nothing",
		"v6.example.net 11370    # link-local with zone",
	}, "\n")), "membership")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeResolver{answers: map[string][]net.IPAddr{
		"peer1.example.net": {ipAddr("2001:db8::1"), ipAddr("::ffff:198.51.100.1"), ipAddr("2001:db8::1"), ipAddr("198.51.100.0")},
		"empty.example.net": {},
		"v6.example.net":    {ipAddr("fe80::1%eth0")},
	}}
	got, err := ResolveMembers(context.Background(), r, members)
	if len(got) != len(members) {
		t.Fatalf("%d results for %d members", len(got), len(members))
	}
	wantAddrs := [][]string{
		{"198.51.100.0", "198.51.100.1", "2001:db8::1"},
		{"192.0.2.7"},
		{"192.0.2.8"},
		nil,
		nil,
		{"fe80::1%eth0"},
	}
	for i, rm := range got {
		if rm.Member != members[i] {
			t.Errorf("result %d is for %+v, want %+v", i, rm.Member, members[i])
		}
		var addrs []string
		for _, a := range rm.Addrs {
			addrs = append(addrs, a.String())
		}
		if !slices.Equal(addrs, wantAddrs[i]) {
			t.Errorf("%s: Addrs = %q, want %q", rm.Host, addrs, wantAddrs[i])
		}
		if got, want := rm.Err != nil, wantAddrs[i] == nil; got != want {
			t.Errorf("%s: Err = %v, want an error %v", rm.Host, rm.Err, want)
		}
	}
	wantErr := "membership line 4: resolve gone.example.net: lookup gone.example.net: no such host\n" +
		"membership line 5: resolve empty.example.net: no addresses"
	if got := errString(err); got != wantErr {
		t.Errorf("error\n got %q\nwant %q", got, wantErr)
	}
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("error %v: want the resolver's *net.DNSError inside", err)
	}
	slices.Sort(r.asked)
	if want := []string{"empty.example.net", "gone.example.net", "peer1.example.net", "v6.example.net"}; !slices.Equal(r.asked, want) {
		t.Errorf("looked up %q, want %q (IP literals need no lookup)", r.asked, want)
	}

	// Has matches IPs only, and IPv4-mapped callers too.
	peer1 := got[0]
	for ip, want := range map[string]bool{"198.51.100.1": true, "::ffff:198.51.100.1": true, "2001:db8::1": true, "2001:db8::2": false} {
		if got := peer1.Has(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Has(%s) = %v, want %v", ip, got, want)
		}
	}
}

func TestResolveMembersCanceled(t *testing.T) {
	var members []Member
	for i := range 20 {
		members = append(members, Member{Host: fmt.Sprintf("p%d.example.net", i), Port: 11370, Line: i + 1})
	}
	members = append(members, Member{Host: "192.0.2.1", Port: 11370, Line: 21})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := ResolveMembers(ctx, &fakeResolver{}, members)
	if len(got) != len(members) || !errors.Is(err, context.Canceled) {
		t.Fatalf("ResolveMembers = %d results, %v; want %d, context.Canceled", len(got), err, len(members))
	}
	for _, rm := range got[:20] {
		if !errors.Is(rm.Err, context.Canceled) || rm.Addrs != nil {
			t.Errorf("%s: Addrs %v, Err %v; want context.Canceled", rm.Host, rm.Addrs, rm.Err)
		}
	}
	if last := got[20]; last.Err != nil || len(last.Addrs) != 1 {
		t.Errorf("literal member: Addrs %v, Err %v; want its address", last.Addrs, last.Err)
	}
}

func TestResolveMembersEmpty(t *testing.T) {
	got, err := ResolveMembers(context.Background(), &fakeResolver{}, nil)
	if len(got) != 0 || err != nil {
		t.Errorf("ResolveMembers(nil) = %v, %v", got, err)
	}
}

func FuzzParseMembership(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(sksconfTestdata, "*.membership"))
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
		members, err := ParseMembership(bytes.NewReader(data), "fuzz")
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, m := range members {
			if m.Line < 1 || m.Line > lines || m.Port < 1 || m.Port > 65535 || checkHost(m.Host) != nil {
				t.Fatalf("bad member %+v", m)
			}
		}
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz:") {
					t.Fatalf("error line %q does not start with the name", line)
				}
			}
		}
	})
}

// Per-peer overrides after the port: grapevine reads them, SKS ignores
// words after the port, so the same file serves both.
func TestMembershipPerPeerOverrides(t *testing.T) {
	in := "hkp.example.net 11370 filters=yminsky.dedup,hockeypuck.custom http_port=11381 # Hockeypuck peer\n" +
		"sks.example.org 11370 ops@example.org 0xDEADBEEF\n"
	ms, err := ParseMembership(strings.NewReader(in), "membership")
	if err != nil || len(ms) != 2 {
		t.Fatalf("ParseMembership: %v, %d members", err, len(ms))
	}
	if ms[0].Filters != "yminsky.dedup,hockeypuck.custom" || ms[0].HTTPPort != 11381 {
		t.Errorf("overrides not read: %+v", ms[0])
	}
	if ms[1].Filters != "" || ms[1].HTTPPort != 0 {
		t.Errorf("contact words taken as overrides: %+v", ms[1])
	}
	if _, err := ParseMembership(strings.NewReader("h 11370 http_port=x\n"), "membership"); err == nil || !strings.Contains(err.Error(), "membership:1:") {
		t.Errorf("bad http_port: %v", err)
	}
	// They reach recon's peers.
	peers := resolvePeers(context.Background(), zerolog.Nop(), &fakeResolver{}, []Member{{Host: "127.0.0.9", Port: 11370, Filters: "a,b", HTTPPort: 8080}})
	if len(peers) != 1 || peers[0].Filters != "a,b" || peers[0].HTTPPort != 8080 {
		t.Errorf("resolvePeers dropped the overrides: %+v", peers)
	}
}
