// Package recon runs SKS set reconciliation ("recon", TCP port 11370) with
// SKS 1.1.6, Hockeypuck and other grapevine nodes, and fetches the keys it
// finds missing with POST /pks/hashquery (spec recon.md). The wire format
// lives in recon/wire, the prefix tree and its mathematics in
// projections/ptree; this package owns the sessions, the gossip schedule,
// membership checks and the fetch.
//
// # Roles
//
// SKS's names are easy to misread (spec recon.md §1):
//
//	Initiator  dialled the connection (its gossip timer fired, or
//	           ReconcileOnce). It only answers requests: SKS server.ml.
//	Acceptor   accepted the connection. It walks its own tree from the
//	           root, sends the requests, and ends with Done: SKS client.ml.
//
// Both sides end with the set of hashes they lack, and both fetch.
//
// # Use
//
// cmd/grapevine wires a Server to the store and the log:
//
//	cfg := recon.DefaultConfig()                 // then sksconf values
//	srv, err := recon.New(cfg,
//		recon.PebbleTree(store.DB(), store.PtreeConfig()), // the tree, read from snapshots
//		store,                                   // recon.Keys: ByHash, Novel, WaitApplied
//		log,                                     // recon.Appender: fetched keys become events
//		members)                                 // recon.Members: resolved membership
//	go srv.Serve(ctx, reconListener)             // sessions from members, as Acceptor
//	go srv.Gossip(ctx)                           // every GossipInterval ± jitter, as Initiator
//	rep, err := srv.ReconcileOnce(ctx, "host:11370") // one session now (grapevine recon)
//
// Session runs the protocol alone over any net.Conn (tests use net.Pipe
// inside testing/synctest), with a View of the tree; it does no dialling,
// membership or fetching.
//
// # A session
//
//  1. Config exchange (§4). Both sides send Config unprompted, then the
//     bare verdict "passed", or "failed" and SKS's reason, and close.
//     Filters and our advertised http port may be set per Peer (§4.3).
//  2. The Acceptor keeps a FIFO of prefixes to request (starting with the
//     root) and a FIFO of requests awaiting replies; it flushes when more
//     than MaxOutstandingRequests are out or nothing is left to send, and
//     handles Elements (we lack these), FullElements (send our share, keep
//     theirs) and SyncFail (recurse into the children), exactly as SKS
//     client.ml (§8.1). The Initiator answers from its snapshot, buffering
//     replies until Flush: Elements for a decoded difference, else
//     FullElements for a leaf or a node under 150 elements, else SyncFail
//     (§8.2). A request for a node below one of our leaves gets SKS's Error
//     text and ends the session (§8.3).
//  3. Done, or an early end: EOF, a socket error, a timeout, or our Error
//     reply for a node we do not have keeps what was collected
//     (ErrIncomplete); a protocol violation, an Error from the peer
//     included, keeps nothing (ErrProtocol), as in SKS (§8.4).
//  4. The Server fetches Result.Missing from the peer's IP at the "http
//     port" of its Config (§11.1), right away (SKS's acceptor waits 10 s).
//
// # Large differences
//
// With MaxMessageElements (default 1000; 0 restores SKS's exact
// behaviour), sessions keep messages small when one side is far behind
// (§8.6): as requester we summarise every node with ReconRqst_Poly, whose
// replies are bounded, and recurse below our own leaves when the peer
// answers SyncFail; we split the Elements we send; and as responder we
// answer SyncFail instead of FullElements when the peer's node is big, so
// it recurses rather than sending everything at once. Node counts and
// svalues depend only on the set under a prefix, not on the tree's shape,
// so peers cannot tell. Replays of captured SKS sessions match byte for
// byte in SKS mode (MaxMessageElements 0). In ordinary sessions the
// default differs from SKS only in sending Poly where SKS sends
// ReconRqst_Full; the other two changes act only on large differences.
//
// # Limits
//
//   - Reads: every message has a deadline (ReadTimeout; the Config exchange
//     ConfigTimeout from the start; the whole session SessionTimeout), and
//     every length and count is checked against Config.Limits before
//     anything is allocated (recon/wire).
//   - Writes: every write has a deadline (WriteTimeout). One goroutine per
//     session reads into a bounded queue while the session writes, so two
//     peers that both write before reading never deadlock (§8.7).
//   - Memory: the hashes collected per session are capped (MaxMissing);
//     received elements that are not field elements end the session,
//     those that are no key hashes (2^128 or more) are counted and dropped.
//   - Sessions: at most MaxConcurrentSessions at once, incoming and
//     outgoing; more incoming ones are closed at once, as SKS closes them
//     while busy. Connections from addresses of no member are closed
//     without a byte (SKS checks the IP only, §10.1).
//   - Fetching: hashquery requests carry at most FetchBatch hashes,
//     halving after a failure and doubling again after success; up to four
//     are in flight while they succeed, one while the peer fails; each has
//     FetchTimeout; responses are decoded within Limits (a peer returns at
//     most what it was asked), parsed by the request's goroutine, and
//     answers that arrived together are appended in one log append. Every key must parse and hash to a hash
//     we asked for, else it alone is dropped and logged. New keys are
//     appended as eventlog.KindKeySubmitted events with origin recon and
//     the peer's name. Hashes that yield nothing (not returned, an
//     unchanged key, a key stored under another hash once applied, an
//     answer over the limits) are not asked of that peer again for
//     NegativeTTL, at most NegativeMax of them (§11.5).
package recon
