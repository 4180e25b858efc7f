package recon_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon"
)

// setCase is two sets built from a shared part and a part of each side's own.
type setCase struct {
	name                 string
	shared, onlyA, onlyB int
}

var setCases = []setCase{
	{"empty-empty", 0, 0, 0},
	{"equal-500", 500, 0, 0},
	{"tiny-3v3", 0, 3, 3},
	{"one-each-1000", 1000, 1, 1},
	{"five-total-900", 900, 3, 2},
	{"six-total-900", 900, 3, 3},
	{"forty-one-sided-700", 700, 40, 0},
	{"spread-2000", 2000, 37, 61},
	{"empty-vs-3000", 0, 0, 3000},
	{"3000-vs-empty", 0, 3000, 0},
	{"leaf-vs-big", 0, 20, 2500},
}

// TestSessionSetDifferences runs grapevine against grapevine over net.Pipe
// for every set case, in both role assignments and in both modes (SKS's
// exact rules, and bounded messages), and checks that each side ends with
// exactly what the other has and it lacks.
func TestSessionSetDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, tc := range setCases {
		all := randomHashes(rng, tc.shared+tc.onlyA+tc.onlyB)
		setA := slices.Concat(all[:tc.shared], all[tc.shared:tc.shared+tc.onlyA])
		setB := slices.Concat(all[:tc.shared], all[tc.shared+tc.onlyA:])
		treeA, treeB := buildTree(t, setA), buildTree(t, setB)
		aLacks, bLacks := minus(setB, setA), minus(setA, setB)
		// "mixed": A runs SKS's exact rules, B bounded messages.
		for _, mode := range []string{"sks", "bounded", "mixed"} {
			for _, aRole := range []recon.Role{recon.Acceptor, recon.Initiator} {
				t.Run(fmt.Sprintf("%s/%s/A=%s", tc.name, mode, aRole), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						cfg, cfgA := testConfig(t), testConfig(t)
						if mode == "sks" {
							cfg = sksConfig(t)
						}
						if mode != "bounded" {
							cfgA = sksConfig(t)
						}
						var resA, resB *recon.Result
						var errA, errB error
						if aRole == recon.Acceptor {
							pr := runPair(t.Context(), cfgA, treeA, cfg, treeB)
							resA, errA, resB, errB = pr.acc, pr.accErr, pr.ini, pr.iniErr
						} else {
							pr := runPair(t.Context(), cfg, treeB, cfgA, treeA)
							resB, errB, resA, errA = pr.acc, pr.accErr, pr.ini, pr.iniErr
						}
						if errA != nil || errB != nil {
							t.Fatalf("session errors: A %v, B %v", errA, errB)
						}
						if !resA.Complete || !resB.Complete {
							t.Errorf("complete: A %v, B %v", resA.Complete, resB.Complete)
						}
						if got, want := resA.Missing, aLacks; !equalHashes(got, want) {
							t.Errorf("A lacks: got %s, want %s", describeHashes(got), describeHashes(want))
						}
						if got, want := resB.Missing, bLacks; !equalHashes(got, want) {
							t.Errorf("B lacks: got %s, want %s", describeHashes(got), describeHashes(want))
						}
						if mode == "bounded" {
							limit := max(cfg.MaxMessageElements, cfg.ReconThreshMult*cfg.MBar)
							for _, r := range []*recon.Result{resA, resB} {
								if r.Stats.MaxSetSize > limit {
									t.Errorf("largest set in one message: %d elements, want <= %d", r.Stats.MaxSetSize, limit)
								}
							}
						}
					})
				})
			}
		}
	}
}

// TestSessionTreeShapes reconciles trees whose shapes differ for the same
// or nearly the same sets (spec recon.md §8.3): other split thresholds, and
// a tree that split and joined again. The node counts and svalues depend
// only on the sets, so the protocol must not care.
func TestSessionTreeShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	base := randomHashes(rng, 1200)
	extraA, extraB := randomHashes(rng, 12), randomHashes(rng, 9)
	churn := randomHashes(rng, 400)
	setA := slices.Concat(base, extraA)
	setB := slices.Concat(base, extraB)
	shapes := []struct {
		name string
		o    treeOpts
	}{
		{"sks", treeOpts{}},
		{"split10", treeOpts{split: 10, join: 5}},
		{"split200", treeOpts{split: 200, join: 100}},
		{"churned", treeOpts{churn: churn}},
	}
	for _, sa := range shapes {
		for _, sb := range shapes {
			treeA, treeB := buildTreeOpts(t, setA, sa.o), buildTreeOpts(t, setB, sb.o)
			for _, mode := range []string{"sks", "bounded"} {
				t.Run(sa.name+"-vs-"+sb.name+"/"+mode, func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						cfg := testConfig(t)
						if mode == "sks" {
							cfg = sksConfig(t)
						}
						pr := runPair(t.Context(), cfg, treeA, cfg, treeB)
						if pr.accErr != nil || pr.iniErr != nil {
							t.Fatalf("session errors: acceptor %v, initiator %v", pr.accErr, pr.iniErr)
						}
						if got, want := pr.acc.Missing, minus(setB, setA); !equalHashes(got, want) {
							t.Errorf("acceptor lacks %s, want %s", describeHashes(got), describeHashes(want))
						}
						if got, want := pr.ini.Missing, minus(setA, setB); !equalHashes(got, want) {
							t.Errorf("initiator lacks %s, want %s", describeHashes(got), describeHashes(want))
						}
					})
				})
			}
		}
	}
}

// TestSessionLargeDifference is spec recon.md §8.6: an empty node catches
// up with a 100,000-element peer by recon alone, in either role. With
// MaxMessageElements no message carries more than about 1000 elements; in
// SKS mode one Elements message carries them all.
func TestSessionLargeDifference(t *testing.T) {
	if testing.Short() {
		t.Skip("100k elements")
	}
	rng := rand.New(rand.NewPCG(9, 9))
	full := randomHashes(rng, 100_000)
	big, empty := buildTree(t, full), buildTree(t, nil)
	want := sortHashes(full)
	for _, mode := range []string{"bounded", "sks"} {
		for _, emptyRole := range []recon.Role{recon.Acceptor, recon.Initiator} {
			t.Run(fmt.Sprintf("%s/empty=%s", mode, emptyRole), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					cfg := testConfig(t)
					if mode == "sks" {
						cfg = sksConfig(t)
					}
					var res, other *recon.Result
					var pr pairResult
					if emptyRole == recon.Acceptor {
						pr = runPair(t.Context(), cfg, empty, cfg, big)
						res, other = pr.acc, pr.ini
					} else {
						pr = runPair(t.Context(), cfg, big, cfg, empty)
						res, other = pr.ini, pr.acc
					}
					if pr.accErr != nil || pr.iniErr != nil {
						t.Fatalf("session errors: acceptor %v, initiator %v", pr.accErr, pr.iniErr)
					}
					if !equalHashes(res.Missing, want) {
						t.Fatalf("empty side lacks %d hashes, want %d", len(res.Missing), len(want))
					}
					if len(other.Missing) != 0 {
						t.Errorf("full side lacks %d", len(other.Missing))
					}
					t.Logf("requests %d, largest set %d elements, %d bytes received by the empty side",
						max(res.Stats.Requests, other.Stats.Requests), max(res.Stats.MaxSetSize, other.Stats.MaxSetSize), res.Stats.BytesReceived)
					if mode == "bounded" {
						if got := max(res.Stats.MaxSetSize, other.Stats.MaxSetSize); got > cfg.MaxMessageElements {
							t.Errorf("largest set in one message: %d elements, want <= %d", got, cfg.MaxMessageElements)
						}
					}
				})
			})
		}
	}
}

// TestSessionMaxMissing: the requester stops recursing once MaxMissing
// hashes are collected, ends with Done and reports Truncated.
func TestSessionMaxMissing(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	full := randomHashes(rng, 5000)
	big, empty := buildTree(t, full), buildTree(t, nil)
	for _, mode := range []string{"bounded", "sks"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig(t)
				if mode == "sks" {
					cfg = sksConfig(t)
				}
				cfg.MaxMissing = 700
				pr := runPair(t.Context(), cfg, empty, cfg, big)
				if pr.accErr != nil || pr.iniErr != nil {
					t.Fatalf("session errors: acceptor %v, initiator %v", pr.accErr, pr.iniErr)
				}
				if !pr.acc.Truncated || len(pr.acc.Missing) != 700 {
					t.Errorf("truncated %v with %d missing, want true with 700", pr.acc.Truncated, len(pr.acc.Missing))
				}
				in := make(map[pgpkey.KeyHash]bool)
				for _, h := range full {
					in[h] = true
				}
				for _, h := range pr.acc.Missing {
					if !in[h] {
						t.Fatalf("missing hash %s is not the peer's", h)
					}
				}
			})
		})
	}
}

// TestSessionCancel: cancelling the context ends both sides promptly with
// ErrIncomplete, even mid-session.
func TestSessionCancel(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	a, b := buildTree(t, randomHashes(rng, 3000)), buildTree(t, randomHashes(rng, 3000))
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		pr := runPair(ctx, testConfig(t), a, testConfig(t), b)
		if !errors.Is(pr.accErr, recon.ErrIncomplete) || !errors.Is(pr.iniErr, recon.ErrIncomplete) {
			t.Errorf("errors after cancel: acceptor %v, initiator %v; want ErrIncomplete", pr.accErr, pr.iniErr)
		}
	})
}

// TestSessionConfigMismatch: both sides send "failed" with SKS's reason and
// end with a *ConfigError; nothing is to be fetched.
func TestSessionConfigMismatch(t *testing.T) {
	tr := buildTree(t, randomHashes(rand.New(rand.NewPCG(12, 12)), 10))
	cases := []struct {
		name   string
		change func(*recon.Config)
		reason string
	}{
		{"mbar", func(c *recon.Config) { c.MBar = 6 }, "mbar values do not match"},
		{"bitquantum", func(c *recon.Config) { c.BitQuantum = 3 }, "bitquantum values do not match"},
		{"filters", func(c *recon.Config) { c.Filters = "yminsky.dedup" }, "filters do not match.\n\tlocal filters: [ yminsky.dedup yminsky.merge ]\n\tremote filters: [ yminsky.dedup ]"},
		{"version", func(c *recon.Config) { c.Version = "0.1.4" }, "Requires version at least 0.1.5.  0.1.4 provided "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				good, bad := testConfig(t), testConfig(t)
				tc.change(&bad)
				pr := runPair(t.Context(), good, tr, bad, tr)
				var ce *recon.ConfigError
				if !errors.As(pr.accErr, &ce) || ce.ByPeer || ce.Reason != tc.reason {
					t.Errorf("acceptor: %v, want our rejection %q", pr.accErr, tc.reason)
				}
				if !errors.As(pr.iniErr, &ce) {
					t.Errorf("initiator: %v, want a *ConfigError", pr.iniErr)
				}
				if len(pr.acc.Missing)+len(pr.ini.Missing) != 0 {
					t.Errorf("missing after a config failure: %d, %d", len(pr.acc.Missing), len(pr.ini.Missing))
				}
			})
		})
	}
}
