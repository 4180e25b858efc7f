package recon_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// TestEmptyNodeCatchesUp is issue 5 item 5 at a scale that stays fast: an
// empty node catches up with a peer holding 3,000 keys by recon alone, over
// loopback with real HKP servers, in either role. MaxMissing 1,000 makes it
// take several sessions (as 100k keys do with the default 250,000 on a
// real catch-up of a few million), and MaxMessageElements 200 bounds every
// message of both sides. Each session's fetch sends its hashquery requests
// in parallel, at most FetchBatch hashes each, and every key is appended
// once.
func TestEmptyNodeCatchesUp(t *testing.T) {
	t.Parallel()
	const (
		total      = 3000
		maxMissing = 1000
		maxElems   = 200
	)
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: total, Seed: 7, Mix: corpus.Mix{Ed25519: 1}}); err != nil {
		t.Fatal(err)
	}
	keys, hashes := splitKeys(t, buf.Bytes())
	want := sortHashes(hashes)

	for _, emptyRole := range []recon.Role{recon.Initiator, recon.Acceptor} {
		t.Run("empty="+emptyRole.String(), func(t *testing.T) {
			// reports[0] are the full node's session reports, reports[1]
			// the empty node's (OnReport runs after a session's fetch).
			var mu sync.Mutex
			var reports [2][]*recon.Report
			bounded := func(i int) func(*recon.Config) {
				return func(c *recon.Config) {
					c.MaxMissing = maxMissing
					c.MaxMessageElements = maxElems
					c.OnReport = func(r *recon.Report) {
						mu.Lock()
						defer mu.Unlock()
						reports[i] = append(reports[i], r)
					}
				}
			}
			emptyReports := func() []*recon.Report {
				mu.Lock()
				defer mu.Unlock()
				return append([]*recon.Report(nil), reports[1]...)
			}
			full := newNode(t, keys, bounded(0))
			empty := newNode(t, nil, bounded(1))
			full.setPeers(empty.peerEntry())
			empty.setPeers(full.peerEntry())

			ctx := t.Context()
			sessions := 0
			for len(empty.hashes()) < total {
				if sessions++; sessions > total/maxMissing+1 {
					t.Fatalf("%d sessions and the empty node holds %d of %d keys", sessions-1, len(empty.hashes()), total)
				}
				if emptyRole == recon.Initiator {
					if _, err := empty.recon.ReconcileOnce(ctx, full.reconAddr.String()); err != nil {
						t.Fatalf("session %d: %v", sessions, err)
					}
					continue
				}
				if _, err := full.recon.ReconcileOnce(ctx, empty.reconAddr.String()); err != nil {
					t.Fatalf("session %d: %v", sessions, err)
				}
				// The acceptor fetches after its session.
				waitFor(t, 60*time.Second, fmt.Sprintf("the empty acceptor's fetch %d", sessions), func() bool {
					return len(emptyReports()) == sessions
				})
			}
			waitFor(t, 60*time.Second, "the full node's reports", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(reports[0]) == sessions
			})
			if !equalHashes(empty.hashes(), want) {
				t.Fatalf("the empty node holds %d hashes, not the peer's %d", len(empty.hashes()), total)
			}
			if want := total / maxMissing; sessions != want {
				t.Errorf("%d sessions, want %d (MaxMissing %d of %d keys)", sessions, want, maxMissing, total)
			}
			if last := empty.log.LastIndex(); int(last) != total {
				t.Errorf("the empty node's log has %d events, want each of the %d keys once", last, total)
			}
			mu.Lock()
			defer mu.Unlock()
			added := 0
			for i, side := range []string{"full", "empty"} {
				for j, r := range reports[i] {
					s := r.Session
					if r.SessionErr != nil || !s.Complete {
						t.Errorf("%s node, session %d: complete %v, err %v", side, j+1, s.Complete, r.SessionErr)
					}
					if s.Stats.MaxSetSize > maxElems {
						t.Errorf("%s node, session %d: a message carried %d elements, want <= %d", side, j+1, s.Stats.MaxSetSize, maxElems)
					}
					if len(s.Missing) > maxMissing {
						t.Errorf("%s node, session %d: %d missing hashes collected, want <= %d", side, j+1, len(s.Missing), maxMissing)
					}
					if i == 0 {
						if len(s.Missing) != 0 || r.Fetch.Asked != 0 {
							t.Errorf("full node, session %d: %d missing, %d asked", j+1, len(s.Missing), r.Fetch.Asked)
						}
						continue
					}
					f := r.Fetch
					if r.FetchErr != nil || f.FailedRequests != 0 || f.Added != len(s.Missing) || f.Requests < (f.Asked+99)/100 {
						t.Errorf("empty node, session %d: %d missing, fetch %+v, err %v", j+1, len(s.Missing), f, r.FetchErr)
					}
					added += f.Added
					t.Logf("session %d: %d requests, largest set %d elements, %d+%d bytes; fetch: %d hashquery requests, took %v",
						j+1, s.Stats.Requests, s.Stats.MaxSetSize, s.Stats.BytesSent, s.Stats.BytesReceived, f.Requests, f.Took)
				}
			}
			if added != total {
				t.Errorf("the empty node's fetches added %d keys, want %d", added, total)
			}
		})
	}
}
