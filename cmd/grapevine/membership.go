package main

// Reading an SKS membership file (spec config.md §4, recon.md §10.1).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// Member is one recon peer from the membership file: "host port", where
// port is the peer's recon port.
type Member struct {
	// Host is a host name or an IP address (IPv6 without brackets), as
	// written.
	Host string
	// Port is the peer's recon port, normally 11370.
	Port int
	// Comment is the text after '#' on the line, trimmed; often the peer
	// operator's name, e-mail and key ID.
	Comment string
	// Line is the 1-based line number in the file.
	Line int
	// Filters and HTTPPort are grapevine's per-peer overrides, written as
	// extra words after the port: "filters=A,B" (the filters string sent
	// to and expected from this peer; Hockeypuck >= 2.2 wants its own,
	// recon.md §4.3) and "http_port=N" (where the peer should fetch from
	// us). SKS ignores words after the port, so a membership file with
	// them still works for SKS. Empty/0: the global settings.
	// "filters=hockeypuck" and "filters=sks" stand for Hockeypuck 2.3's
	// string (pgpkey.HockeypuckFilters) and SKS's: the peer is then
	// reconciled from that dataset (issue 11).
	Filters  string
	HTTPPort int
}

// String returns the entry as SKS shows it on the stats page: "host port".
func (m Member) String() string { return m.Host + " " + strconv.Itoa(m.Port) }

// ParseMembership reads a membership file the way SKS 1.1.6 does
// (membership.ml):
//
//   - Everything from the first '#' on a line is a comment.
//   - A line that is then empty, or only blanks, is skipped.
//   - Otherwise the line is "host port", separated by spaces or tabs;
//     further words are ignored (so contact details work even without a
//     '#'). The host is a name or an IP address, IPv6 without brackets.
//
// A line SKS cannot use is left out and reported: one word only, a port
// that is not a number from 1 to 65535 (SKS would pass a service name to
// getaddrinfo; grapevine wants the number), a host in brackets or with a
// port, and a line that starts with a blank. NB: SKS 1.1.6 reads the host
// with OCaml's scanf "%s %s", which does not skip leading blanks, so it
// logs "Malformed entry" for an indented line and never peers with it;
// grapevine does the same and says so.
//
// When some lines are bad, ParseMembership returns the members from the good
// lines together with an error that joins one *ConfigLineError per bad
// line ("name:line: reason"). SKS logs such lines and carries on, so a
// caller that wants SKS's behaviour logs the error and uses the members.
// A read error returns nil members.
func ParseMembership(r io.Reader, name string) ([]Member, error) {
	var members []Member
	var errs []error
	err := readConfLines(r, name, func(n int, line string) error {
		comment := ""
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line, comment = line[:i], trimConfSpace(line[i+1:])
		}
		if trimConfSpace(line) == "" {
			return nil
		}
		bad := func(format string, args ...any) error {
			errs = append(errs, &ConfigLineError{Name: name, Line: n, Reason: fmt.Sprintf(format, args...)})
			return nil
		}
		if b, ok := firstControlChar(strings.TrimRight(line, "\r")); ok {
			return bad("control character 0x%02x in line", b)
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
		if line[0] == ' ' || line[0] == '\t' {
			return bad("%s: line starts with a blank; SKS 1.1.6 ignores such an entry (\"Malformed entry\"), remove the indentation", quoteTrunc(strings.Join(fields, " ")))
		}
		if len(fields) < 2 {
			if h, p, err := net.SplitHostPort(fields[0]); err == nil && h != "" && p != "" {
				return bad("%s: want \"host port\" separated by a blank, not host:port", quoteTrunc(fields[0]))
			}
			return bad("%s: want \"host port\"", quoteTrunc(fields[0]))
		}
		host, portText := fields[0], fields[1]
		if strings.HasPrefix(host, "[") {
			return bad("%s: write IPv6 addresses without brackets (SKS cannot resolve them)", quoteTrunc(host))
		}
		if err := checkHost(host); err != nil {
			return bad("%s", err)
		}
		port, err := strconv.Atoi(portText)
		if err != nil || port < 1 || port > 65535 {
			return bad("port %s: want a number from 1 to 65535", quoteTrunc(portText))
		}
		m := Member{Host: host, Port: port, Comment: comment, Line: n}
		for _, f := range fields[2:] {
			k, v, ok := strings.Cut(f, "=")
			switch {
			case !ok:
				// Contact details without '#': ignored, as by SKS.
			case k == "filters" && v == "hockeypuck":
				m.Filters = pgpkey.HockeypuckFilters
			case k == "filters" && v == "sks":
				m.Filters = wire.DefaultFilters
			case k == "filters" && v != "":
				m.Filters = v
			case k == "http_port":
				hp, err := strconv.Atoi(v)
				if err != nil || hp < 1 || hp > 65535 {
					return bad("http_port=%s: want a number from 1 to 65535", quoteTrunc(v))
				}
				m.HTTPPort = hp
			}
		}
		members = append(members, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return members, errors.Join(errs...)
}

// MemberResolver looks up host names; *net.Resolver implements it. Tests
// pass a fake so that no DNS query is made.
type MemberResolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

var _ MemberResolver = (*net.Resolver)(nil)

// ResolvedMember is a Member with the addresses its host resolved to.
type ResolvedMember struct {
	Member
	// Addrs are the member's IP addresses, sorted, without duplicates, with
	// IPv4-mapped IPv6 addresses turned into IPv4 (a Go listener on "::"
	// reports IPv4 peers that way; recon.md §10.3). Empty if Err is set.
	Addrs []netip.Addr
	// Err is why the host did not resolve. SKS keeps such an entry and
	// tries it again later, so the caller should too.
	Err error
}

// Has reports whether ip is one of the member's addresses. SKS accepts an
// incoming recon from any address of any member, whatever the source port
// (membership.ml test).
func (m ResolvedMember) Has(ip netip.Addr) bool {
	_, found := slices.BinarySearchFunc(m.Addrs, ip.Unmap(), netip.Addr.Compare)
	return found
}

// resolveConcurrency bounds the lookups ResolveMembers runs at once.
const resolveConcurrency = 8

// ResolveMembers resolves every member's host with resolver. An IP literal
// is taken as it is, without a lookup. It returns one ResolvedMember per
// member, in order, whatever happens. The error joins one error per member
// that did not resolve (or resolved to nothing), plus ctx's error if ctx
// ended; each member's own Err says the same. Lookups run concurrently, so
// resolver must be safe for concurrent use.
func ResolveMembers(ctx context.Context, resolver MemberResolver, members []Member) ([]ResolvedMember, error) {
	out := make([]ResolvedMember, len(members))
	sem := make(chan struct{}, resolveConcurrency)
	var wg sync.WaitGroup
	for i, m := range members {
		out[i].Member = m
		if ip, err := netip.ParseAddr(m.Host); err == nil {
			out[i].Addrs = []netip.Addr{ip.Unmap()}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				out[i].Err = ctx.Err()
				return
			}
			out[i].Addrs, out[i].Err = lookupMember(ctx, resolver, m.Host)
		}()
	}
	wg.Wait()
	var errs []error
	for _, rm := range out {
		if rm.Err != nil {
			errs = append(errs, fmt.Errorf("membership line %d: resolve %s: %w", rm.Line, rm.Host, rm.Err))
		}
	}
	return out, errors.Join(errs...)
}

func lookupMember(ctx context.Context, resolver MemberResolver, host string) ([]netip.Addr, error) {
	ips, err := resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if ip.Zone != "" && a.Is6() {
			a = a.WithZone(ip.Zone)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, errors.New("no addresses")
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs), nil
}
