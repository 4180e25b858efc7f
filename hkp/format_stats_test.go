package hkp_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/hkp"
)

// fxSksStatsInfo holds the values of the SKS node whose stats page is
// hkp-stats.response.http (sks-peer-22371, 6 keys, one peer).
func fxSksStatsInfo() hkp.StatsInfo {
	return hkp.StatsInfo{
		Now:        time.Date(2026, 11, 22, 19, 11, 25, 0, time.UTC),
		Hostname:   "127.0.0.254",
		Nodename:   "sks-peer-22371",
		Version:    "1.1.6+",
		Software:   "grapevine",
		Contact:    "",
		HTTPPort:   22371,
		ReconPort:  22370,
		DebugLevel: 4,
		Peers:      []string{"127.0.0.1 21370"},
		TotalKeys:  6,
		Daily:      []hkp.HistogramBin{{Time: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), New: 6}},
		Hourly:     []hkp.HistogramBin{{Time: time.Date(2026, 11, 22, 19, 0, 0, 0, time.UTC), New: 6}},
	}
}

func fxStatsHTML(t *testing.T, s hkp.StatsInfo) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := hkp.WriteStatsHTML(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFormatStatsHTMLMatchesSKS: given SKS's values, our page is SKS's
// byte for byte (so it is also structurally identical).
func TestFormatStatsHTMLMatchesSKS(t *testing.T) {
	got := fxStatsHTML(t, fxSksStatsInfo())
	want := fxSksBody(t, "hkp-stats.response.http")
	if !bytes.Equal(got, want) {
		t.Errorf("stats page differs from SKS's:\n%s", fxFirstDiff(got, want))
	}
	fxCheckGolden(t, "stats.html", got)
}

// TestFormatStatsHTMLSpider parses our page the way the pool spider does
// (philpennock/sks_spider server_info.go, hkp.md §8.1), with XPath rules
// replayed on a DOM built by encoding/xml.
func TestFormatStatsHTMLSpider(t *testing.T) {
	s := fxSksStatsInfo()
	s.Contact = "0xDECAFBADDEADBEEF"
	s.Peers = []string{"127.0.0.1 21370", "peer2.example.net\t11370", "noport.example.org"}
	s.MailsyncPeers = []string{"pgp-public-keys@pks.example.org"}
	node := fxSpiderAnalyze(t, fxStatsHTML(t, s))
	for k, want := range map[string]string{
		"Hostname": "127.0.0.254", "Nodename": "sks-peer-22371", "Version": "1.1.6+",
		"Server contact": "0xDECAFBADDEADBEEF", "HTTP port": "22371", "Recon port": "22370", "Debug level": "4",
	} {
		if got := node.settings[k]; got != want {
			t.Errorf("Settings[%q] = %q, want %q", k, got, want)
		}
	}
	if got, want := len(node.settings), 7; got != want {
		t.Errorf("%d settings rows, want %d", got, want)
	}
	if got, want := node.keycount, 6; got != want {
		t.Errorf("key count %d, want %d", got, want)
	}
	if got, want := strings.Join(node.peers, ","), "127.0.0.1=21370,peer2.example.net=11370,noport.example.org=11370"; got != want {
		t.Errorf("gossip peers %s, want %s", got, want)
	}
	if got, want := strings.Join(node.mailsync, ","), "pgp-public-keys@pks.example.org"; got != want {
		t.Errorf("mailsync peers %s, want %s", got, want)
	}

	// The same rules on SKS's own page give the same answers.
	sks := fxSpiderAnalyze(t, fxSksBody(t, "hkp-stats.response.http"))
	ours := fxSpiderAnalyze(t, fxStatsHTML(t, fxSksStatsInfo()))
	if got, want := ours.String(), sks.String(); got != want {
		t.Errorf("spider reads\n%s\nfrom our page, and\n%s\nfrom SKS's", got, want)
	}
}

// TestFormatStatsHTMLNoHistogram: SKS drops the Statistics heading when it
// has no recent changes, and spiders then find no key count. We keep it.
func TestFormatStatsHTMLNoHistogram(t *testing.T) {
	s := fxSksStatsInfo()
	s.Daily, s.Hourly = nil, nil
	s.TotalKeys = 5432101
	page := fxStatsHTML(t, s)
	if !bytes.Contains(page, []byte("<h2>Statistics</h2><p>Total number of keys: 5432101</p>\n\n<p>No recent transactions</p></body></html>")) {
		t.Errorf("page:\n%s", page)
	}
	if got, want := fxSpiderAnalyze(t, page).keycount, 5432101; got != want {
		t.Errorf("key count %d, want %d", got, want)
	}
	fxCheckGolden(t, "stats-no-histogram.html", page)
}

func TestFormatStatsHTMLEscaping(t *testing.T) {
	s := fxSksStatsInfo()
	s.Hostname = `<script>alert("x")</script>`
	s.Contact = "Mallory & Co <m@example.org>\x00"
	s.MailsyncPeers = []string{"<b>@example.org"}
	page := string(fxStatsHTML(t, s))
	for _, bad := range []string{"<script>", "<b>", "\x00", "& Co"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	node := fxSpiderAnalyze(t, []byte(page))
	if got, want := node.settings["Hostname"], `<script>alert("x")</script>`; got != want {
		t.Errorf("Hostname %q, want %q", got, want)
	}
	if got, want := node.settings["Server contact"], "Mallory & Co <m@example.org>\uFFFD"; got != want {
		t.Errorf("Server contact %q, want %q", got, want)
	}
}

// TestFormatStatsHTMLHistograms checks the bins newest first, local time
// labels, and the title's time zone.
func TestFormatStatsHTMLHistograms(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	s := fxSksStatsInfo()
	s.Now = time.Date(2026, 11, 23, 1, 2, 3, 0, cet)
	s.Daily = []hkp.HistogramBin{
		{Time: time.Date(2026, 11, 23, 0, 0, 0, 0, cet), New: 1, Updated: 2},
		{Time: time.Date(2026, 11, 22, 0, 0, 0, 0, cet), New: 30, Updated: 40},
	}
	s.Hourly = []hkp.HistogramBin{
		{Time: time.Date(2026, 11, 23, 1, 0, 0, 0, cet), New: 1, Updated: 2},
		{Time: time.Date(2026, 11, 23, 0, 0, 0, 0, cet), New: 0, Updated: 0},
	}
	page := string(fxStatsHTML(t, s))
	for _, want := range []string{
		"<title>SKS OpenPGP Keyserver statistics&nbsp;|&nbsp;Taken at 2026-11-23 01:02:03 CET</title>",
		"<h1>SKS OpenPGP Keyserver statistics<br />Taken at 2026-11-23 01:02:03 CET</h1>",
		"<h3>Daily Histogram</h3>\n<table summary=\"Statistics\" border=\"1\">\n<tr><td>Time</td><td>New Keys</td><td>Updated Keys</td></tr>\n" +
			"<tr><td>2026-11-23</td><td>1</td><td>2</td></tr>\n<tr><td>2026-11-22</td><td>30</td><td>40</td></tr>\n</table>\n",
		"<h3>Hourly Histogram</h3>\n<table summary=\"Statistics\" border=\"1\">\n<tr><td>Time</td><td>New Keys</td><td>Updated Keys</td></tr>\n" +
			"<tr><td>2026-11-23 01</td><td>1</td><td>2</td></tr>\n<tr><td>2026-11-23 00</td><td>0</td><td>0</td></tr>\n</table>\n</body></html>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestFormatStatsJSON(t *testing.T) {
	s := fxSksStatsInfo()
	s.Contact = "0xDECAFBADDEADBEEF"
	s.Version = "1.1.6"
	s.Peers = []string{"127.0.0.1 21370", "::1 11370"}
	s.MailsyncPeers = []string{"pgp-public-keys@pks.example.org"}
	s.Daily = append(s.Daily, hkp.HistogramBin{Time: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), New: 3, Updated: 4})
	var b bytes.Buffer
	if err := hkp.WriteStatsJSON(&b, s); err != nil {
		t.Fatal(err)
	}
	fxCheckGolden(t, "stats.json", b.Bytes())

	// What the spider does with it (server_info.go Analyze, JSON branch):
	// top-level strings and numbers under strings.Title(key), key count from
	// Numkeys or Total, peers from peers[].reconAddr split at the first ':'.
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for k, v := range doc {
		key := strings.ToUpper(k[:1]) + k[1:]
		switch v := v.(type) {
		case string:
			settings[key] = v
		case float64:
			settings[key] = strconv.Itoa(int(v))
		}
	}
	for k, want := range map[string]string{
		"Numkeys": "6", "Total": "6", "Version": "1.1.6", "Software": "grapevine",
		"Contact": "0xDECAFBADDEADBEEF", "Server_contact": "0xDECAFBADDEADBEEF",
		"Hostname": "127.0.0.254", "Nodename": "sks-peer-22371",
		"HttpAddr": ":22371", "ReconAddr": ":22370", "Now": "2026-11-22T19:11:25Z",
	} {
		if got := settings[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	peers, _ := doc["peers"].([]any)
	var addrs []string
	for _, p := range peers {
		addr, _ := p.(map[string]any)["reconAddr"].(string)
		addr = strings.Replace(addr, ":", " ", 1)
		if f := strings.Fields(addr); len(f) < 2 {
			t.Errorf("reconAddr %q would crash the spider", addr)
		}
		addrs = append(addrs, addr)
	}
	if got, want := len(addrs), 2; got != want {
		t.Errorf("%d peers, want %d", got, want)
	}
	// Histograms oldest first, as Hockeypuck sorts them.
	daily, _ := doc["daily"].([]any)
	if len(daily) != 2 || daily[0].(map[string]any)["Time"] != "2026-11-21T00:00:00Z" || daily[1].(map[string]any)["Inserted"] != 6.0 {
		t.Errorf("daily %v", daily)
	}
}

// --- a small DOM and the spider's rules -------------------------------------

type fxDomNode struct {
	name     string // "" for a text node
	text     string
	parent   *fxDomNode
	children []*fxDomNode
}

// fxParseDOM builds a DOM of an XHTML page with encoding/xml, in its lenient
// HTML mode (HTML entities, auto-closed void elements).
func fxParseDOM(t *testing.T, page []byte) *fxDomNode {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	root := &fxDomNode{name: "#document"}
	cur := root
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("page does not parse: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &fxDomNode{name: tok.Name.Local, parent: cur}
			cur.children = append(cur.children, n)
			cur = n
		case xml.EndElement:
			if cur.parent == nil || cur.name != tok.Name.Local {
				t.Fatalf("unbalanced </%s> in <%s>", tok.Name.Local, cur.name)
			}
			cur = cur.parent
		case xml.CharData:
			cur.children = append(cur.children, &fxDomNode{text: string(tok), parent: cur})
		}
	}
	if cur != root {
		t.Fatalf("<%s> not closed", cur.name)
	}
	return root
}

// find returns the first element in document order for which f is true.
func (n *fxDomNode) find(f func(*fxDomNode) bool) *fxDomNode {
	if n.name != "" && f(n) {
		return n
	}
	for _, c := range n.children {
		if r := c.find(f); r != nil {
			return r
		}
	}
	return nil
}

func (n *fxDomNode) findAll(name string) []*fxDomNode {
	var out []*fxDomNode
	var walk func(*fxDomNode)
	walk = func(n *fxDomNode) {
		for _, c := range n.children {
			if c.name == name {
				out = append(out, c)
			}
			walk(c)
		}
	}
	walk(n)
	return out
}

// hasText is XPath's [text()="s"]: a direct text child equal to s.
func (n *fxDomNode) hasText(s string) bool {
	for _, c := range n.children {
		if c.name == "" && c.text == s {
			return true
		}
	}
	return false
}

// content is libxml's Content(): all descendant text.
func (n *fxDomNode) content() string {
	if n.name == "" {
		return n.text
	}
	var b strings.Builder
	for _, c := range n.children {
		b.WriteString(c.content())
	}
	return b.String()
}

func (n *fxDomNode) nextSibling() *fxDomNode {
	if n.parent == nil {
		return nil
	}
	for i, c := range n.parent.children {
		if c == n && i+1 < len(n.parent.children) {
			return n.parent.children[i+1]
		}
	}
	return nil
}

type fxSpiderView struct {
	settings map[string]string
	keycount int
	peers    []string // host=port
	mailsync []string
}

func (v fxSpiderView) String() string {
	var b strings.Builder
	for _, k := range []string{"Hostname", "Nodename", "Version", "Server contact", "HTTP port", "Recon port", "Debug level"} {
		b.WriteString(k + "=" + v.settings[k] + "\n")
	}
	b.WriteString("keys=" + strconv.Itoa(v.keycount) + "\npeers=" + strings.Join(v.peers, ",") + "\nmailsync=" + strings.Join(v.mailsync, ",") + "\n")
	return b.String()
}

// fxSpiderAnalyze replays sks_spider's SksNode.Analyze (HTML branch); where the
// spider would crash (index out of range, nil sibling), the test fails.
func fxSpiderAnalyze(t *testing.T, page []byte) fxSpiderView {
	t.Helper()
	root := fxParseDOM(t, page)
	tableFollowing := func(text string) *fxDomNode {
		s := root.find(func(n *fxDomNode) bool { return n.hasText(text) })
		if s == nil {
			t.Fatalf("no element with text %q", text)
		}
		for s != nil && s.name != "table" {
			s = s.nextSibling()
		}
		if s == nil {
			t.Fatalf("no table after %q: the spider would dereference nil", text)
		}
		return s
	}
	plainRows := func(text string) []string {
		var rows []string
		for _, td := range tableFollowing(text).findAll("td") {
			rows = append(rows, strings.TrimSpace(td.content()))
		}
		return rows
	}
	v := fxSpiderView{settings: map[string]string{}, keycount: -1}
	v.mailsync = plainRows("Outgoing Mailsync Peers")
	for _, tr := range tableFollowing("Settings").findAll("tr") {
		tds := tr.findAll("td")
		if len(tds) < 2 {
			t.Fatalf("settings row with %d cells: the spider would crash", len(tds))
		}
		v.settings[strings.TrimRight(strings.TrimSpace(tds[0].content()), ":")] = strings.TrimSpace(tds[1].content())
	}
	h2 := root.find(func(n *fxDomNode) bool { return n.name == "h2" && n.hasText("Statistics") })
	if h2 == nil {
		t.Fatal(`no //h2[text()="Statistics"]: the spider would index an empty result`)
	}
	next := h2.nextSibling()
	if next == nil {
		t.Fatal("Statistics h2 has no next sibling")
	}
	if c := next.content(); strings.HasPrefix(c, "Total number of keys") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(c, ":", 2)[1]))
		if err == nil {
			v.keycount = n
		}
	}
	for _, row := range plainRows("Gossip Peers") {
		f := strings.SplitN(row, " ", 2)
		if len(f) < 2 {
			t.Fatalf("gossip peer row %q has no space: the spider would crash", row)
		}
		v.peers = append(v.peers, f[0]+"="+strings.Fields(f[1])[0])
	}
	return v
}
