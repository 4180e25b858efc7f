package hkp

import (
	"bytes"
	"net/http"
	"time"
)

func (s *Server) statsPage(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	return s.writeStats(w, r, q.mr || q.json)
}

// writeStats serves op=stats (hkp.md §8): SKS's HTML page, computed live
// from the projections' counters (SKS cached it once a day, and spiders read
// a missing count as 0), or JSON with options=mr or json.
func (s *Server) writeStats(w http.ResponseWriter, r *http.Request, asJSON bool) error {
	now := time.Now()
	info := StatsInfo{
		Now:        now,
		Hostname:   s.conf().Hostname,
		Nodename:   s.conf().Nodename,
		Version:    s.conf().Version,
		Software:   s.conf().Software,
		Contact:    s.conf().Contact,
		HTTPPort:   s.conf().HTTPPort,
		ReconPort:  s.conf().ReconPort,
		DebugLevel: s.conf().DebugLevel,
	}
	if s.stats != nil {
		info.Peers = s.stats.GossipPeers()
		info.MailsyncPeers = s.stats.MailsyncPeers()
		if ms, ok := s.stats.(MailsyncStatuser); ok {
			info.MailsyncStatus = ms.MailsyncStatus()
		}
	}
	s.awaitUploads(r.Context()) // the counts include uploads answered already
	n, err := s.store.KeyCount()
	if err != nil {
		return err
	}
	info.TotalKeys = n
	// SKS shows the last 31 days of changes (hkp.md §8.1).
	for _, g := range []struct {
		name  string
		since time.Time
		out   *[]HistogramBin
	}{
		{"day", now.AddDate(0, 0, -31), &info.Daily},
		{"hour", now.Add(-48 * time.Hour), &info.Hourly},
	} {
		bins, err := s.store.Histogram(g.name, g.since)
		if err != nil {
			return err
		}
		for _, b := range bins {
			*g.out = append(*g.out, HistogramBin{Time: b.Start, New: b.New, Updated: b.Updated})
		}
	}
	var body bytes.Buffer
	if asJSON {
		w.Header().Set("Content-Type", "application/json")
		err = WriteStatsJSON(&body, info)
	} else {
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		err = WriteStatsHTML(&body, info)
	}
	if err != nil {
		return err
	}
	return writeBody(w, r, body.Bytes())
}
