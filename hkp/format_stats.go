package hkp

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// This file formats op=stats (hkp.md §8): SKS's HTML page, which pool
// spiders parse with XPath, and Hockeypuck's JSON.

// StatsInfo is what the stats page shows. The zero value of a field is shown
// as such (an empty contact, port 0).
type StatsInfo struct {
	// Now is when the page is computed. Its location is the time zone the
	// title names, as SKS shows local time.
	Now      time.Time
	Hostname string
	Nodename string
	// Version is shown as SKS's "Version:"; spiders compare it with
	// ^\d+\.\d+\.\d+\+?$ (hkp.md §1.5).
	Version  string
	Software string // product name; JSON only, the SKS page has no such row
	Contact  string // server_contact, free text (usually a key ID)

	HTTPPort, ReconPort, DebugLevel int
	// HTTPAddr and ReconAddr are the listen addresses for the JSON
	// ("httpAddr", "reconAddr"); empty means ":<port>".
	HTTPAddr, ReconAddr string

	// Peers are the gossip peers, "host port" as written in the membership
	// file (SKS normalises the blank between them to one space). An entry
	// without a port gets SKS's default recon port 11370: the spider splits
	// each row at a space and crashes on a row without one.
	Peers         []string
	MailsyncPeers []string // e-mail addresses, as in the mailsync file
	// MailsyncStatus, when not empty, is shown in a section after the
	// histograms (SKS has none; spiders read nothing after them): how the
	// outgoing mail queue fares.
	MailsyncStatus string
	TotalKeys      int64

	// Daily and Hourly are the histograms, newest bin first.
	Daily, Hourly []HistogramBin
}

// HistogramBin is one row of a stats histogram: the keys new in
// [Time, Time+bin width) and the keys updated in it. Time is the lower edge,
// in the location to show it in.
type HistogramBin struct {
	Time         time.Time
	New, Updated int64
}

// defaultReconPort is SKS's recon_port default (settings.ml).
const defaultReconPort = "11370"

// WriteStatsHTML writes SKS's stats page (hkp.md §8.1), with the structure
// pool spiders parse (philpennock/sks_spider server_info.go): an h2
// "Settings" followed by a table of "Key:" / value rows; h2 "Gossip Peers"
// and "Outgoing Mailsync Peers" each followed by a table of one-cell rows;
// and an h2 "Statistics" whose next sibling is the <p> "Total number of keys:
// N". Given SKS's values it is byte for byte the page of
// hkp-stats.response.http.
//
// Compared with SKS, deliberately: the Statistics heading and the key count
// are always there (SKS leaves the heading out when it has no recent
// changes, and shows no count until its first daily run, so spiders read 0
// and drop the server); values are HTML-escaped (SKS writes them raw).
func WriteStatsHTML(w io.Writer, s StatsInfo) error {
	var b strings.Builder
	fmt.Fprintf(&b, "<h2>Settings</h2>\n"+
		"     <table summary=\"Keyserver Settings\">\n"+
		"     <tr><td>Hostname:</td><td>%s</td></tr>\n"+
		"     <tr><td>Nodename:</td><td>%s</td></tr>\n"+
		"     <tr><td>Version:</td><td>%s</td></tr>\n"+
		"     <tr><td>Server contact:</td><td>%s</td></tr>\n"+
		"     <tr><td>HTTP port:</td><td>%d</td></tr>\n"+
		"     <tr><td>Recon port:</td><td>%d</td></tr>\n"+
		"     <tr><td>Debug level:</td><td>%d</td></tr>\n"+
		"</table>\r\n",
		htmlText(s.Hostname), htmlText(s.Nodename), htmlText(s.Version), htmlText(s.Contact),
		s.HTTPPort, s.ReconPort, s.DebugLevel)

	b.WriteString("\n\n<table summary=\"Keyserver Peers\" width=\"100%\">\n<tr valign=\"top\"><td>\n")
	b.WriteString("<h2>Gossip Peers</h2>\n<table summary=\"Gossip Peers\">\n")
	for _, p := range s.Peers {
		host, port := splitMembershipPeer(p)
		b.WriteString("<tr><td>" + htmlText(host+" "+port) + "</td></tr>\n")
	}
	b.WriteString("</table>\n</td><td>\n")
	b.WriteString("<h2>Outgoing Mailsync Peers</h2>\n<table summary=\"Mailsync Peers\">\n")
	for _, m := range s.MailsyncPeers {
		b.WriteString("<tr><td>" + htmlText(m) + "</td></tr>\n")
	}
	b.WriteString("</table>\n</td></tr></table>\r\n")

	// NB: no white space between </h2> and <p>: the spider takes the h2's
	// next sibling node, which would otherwise be a text node.
	fmt.Fprintf(&b, "<h2>Statistics</h2><p>Total number of keys: %d</p>\n", s.TotalKeys)
	if len(s.Daily) == 0 && len(s.Hourly) == 0 {
		b.WriteString("\n<p>No recent transactions</p>")
	} else {
		b.WriteString("<h3>Daily Histogram</h3>\n")
		writeHistogram(&b, s.Daily, "2006-01-02")
		b.WriteString("<h3>Hourly Histogram</h3>\n")
		writeHistogram(&b, s.Hourly, "2006-01-02 15")
	}
	if s.MailsyncStatus != "" {
		b.WriteString("<h3>Outgoing Mailsync</h3>\n<p>" + htmlText(s.MailsyncStatus) + "</p>\n")
	}

	title := "SKS OpenPGP Keyserver statistics<br />Taken at " + htmlText(s.Now.Format("2006-01-02 15:04:05 MST"))
	return WritePage(w, title, b.String())
}

// writeHistogram is SKS's Stats.histogram_to_table.
func writeHistogram(b *strings.Builder, bins []HistogramBin, layout string) {
	b.WriteString("<table summary=\"Statistics\" border=\"1\">\n")
	b.WriteString("<tr><td>Time</td><td>New Keys</td><td>Updated Keys</td></tr>\n")
	for i, bin := range bins {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(b, "<tr><td>%s</td><td>%d</td><td>%d</td></tr>", bin.Time.Format(layout), bin.New, bin.Updated)
	}
	b.WriteString("\n</table>\n")
}

// splitMembershipPeer splits a membership entry "host port" at its blanks.
func splitMembershipPeer(p string) (host, port string) {
	f := strings.Fields(p)
	switch len(f) {
	case 0:
		return "", defaultReconPort
	case 1:
		return f[0], defaultReconPort
	}
	return f[0], f[1]
}

// statsJSON is Hockeypuck master's stats document (server/server.go stats),
// plus HP 2.2's numkeys and server_contact (hkp.md §8.3), so both
// generations of consumers find the count and the contact. queryConfig is
// left out: it describes Hockeypuck settings we do not have.
type statsJSON struct {
	Now           string          `json:"now"`
	Version       string          `json:"version"`
	Hostname      string          `json:"hostname"`
	Nodename      string          `json:"nodename"`
	Contact       string          `json:"contact"`
	HTTPAddr      string          `json:"httpAddr"`
	ReconAddr     string          `json:"reconAddr"`
	Software      string          `json:"software"`
	Total         int64           `json:"total"`
	NumKeys       int64           `json:"numkeys"`
	ServerContact string          `json:"server_contact"`
	Peers         []statsPeerJSON `json:"peers"`
	PKSTargets    []pksTargetJSON `json:"pksTargets"`
	Hourly        []loadStatJSON  `json:"hourly"`
	Daily         []loadStatJSON  `json:"daily"`
}

// statsPeerJSON is the part of Hockeypuck's statsPeer we know: the spider
// reads reconAddr ("host:port").
type statsPeerJSON struct {
	Name      string `json:"name"`
	ReconAddr string `json:"reconAddr"`
}

// pksTargetJSON is the part of Hockeypuck's pks Status we know.
type pksTargetJSON struct {
	Addr string `json:"addr"`
}

// loadStatJSON is Hockeypuck's loadStat: the embedded sks.LoadStat fields,
// untagged, and Time.
type loadStatJSON struct {
	Inserted       int64
	Updated        int64
	Removed        int64
	InsertedJitter int64
	RemovedJitter  int64
	Time           time.Time
}

// WriteStatsJSON writes the stats as JSON (hkp.md §8.2–8.3): Hockeypuck
// master's field names, plus "numkeys" (= total) and "server_contact"
// (= contact), followed by a line break. Spiders copy every top-level string
// and number, take the key count from numkeys or total and the peers from
// peers[].reconAddr.
//
// The histograms are oldest bin first, as Hockeypuck sorts them (the HTML
// page, like SKS, is newest first); Inserted is New, Updated is Updated,
// and Removed and the jitters are 0. Times are UTC in RFC 3339.
func WriteStatsJSON(w io.Writer, s StatsInfo) error {
	doc := statsJSON{
		Now:           s.Now.UTC().Format(time.RFC3339),
		Version:       s.Version,
		Hostname:      s.Hostname,
		Nodename:      s.Nodename,
		Contact:       s.Contact,
		HTTPAddr:      statsListenAddr(s.HTTPAddr, s.HTTPPort),
		ReconAddr:     statsListenAddr(s.ReconAddr, s.ReconPort),
		Software:      s.Software,
		Total:         s.TotalKeys,
		NumKeys:       s.TotalKeys,
		ServerContact: s.Contact,
		Peers:         []statsPeerJSON{},
		PKSTargets:    []pksTargetJSON{},
		Hourly:        hpLoadStats(s.Hourly),
		Daily:         hpLoadStats(s.Daily),
	}
	for _, p := range s.Peers {
		host, port := splitMembershipPeer(p)
		doc.Peers = append(doc.Peers, statsPeerJSON{Name: host, ReconAddr: net.JoinHostPort(host, port)})
	}
	for _, m := range s.MailsyncPeers {
		doc.PKSTargets = append(doc.PKSTargets, pksTargetJSON{Addr: "mailto:" + m})
	}
	return writeJSONDoc(w, doc)
}

func statsListenAddr(addr string, port int) string {
	if addr != "" || port == 0 {
		return addr
	}
	return ":" + strconv.Itoa(port)
}

func hpLoadStats(bins []HistogramBin) []loadStatJSON {
	out := make([]loadStatJSON, len(bins))
	for i, b := range bins {
		out[len(bins)-1-i] = loadStatJSON{Inserted: b.New, Updated: b.Updated, Time: b.Time.UTC()}
	}
	return out
}
