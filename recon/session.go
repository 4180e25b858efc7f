package recon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// Role says which side of a session we play (spec recon.md §1). NB: SKS
// calls the acceptor "client" and the initiator "server".
type Role int

const (
	// Initiator is the side that dialled. It only answers requests
	// (SKS server.ml, conflux interactWithServer).
	Initiator Role = 1
	// Acceptor is the side that accepted the connection. It walks its
	// tree, sends the requests and ends the session with Done (SKS
	// client.ml, conflux interactWithClient).
	Acceptor Role = 2
)

func (r Role) String() string {
	switch r {
	case Initiator:
		return "initiator"
	case Acceptor:
		return "acceptor"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Session is one recon session over an established connection: the Config
// exchange, then the requester (Acceptor) or responder (Initiator) side of
// spec recon.md §8. It does no dialling, accepting, membership checks or
// fetching; Server does those around it.
type Session struct {
	Role Role
	// Config supplies the parameters, limits, timeouts and the logger.
	// It must pass Validate.
	Config Config
	// Peer, if not nil, supplies per-peer overrides of the Config message
	// we send (filters, http port).
	Peer *Peer
	// View is the local tree as of the session's start. Run does not close
	// it.
	View View
	// Check, when not nil, replaces SKS 1.1.6's rules (wire.Config.Check)
	// for the peer's Config; local is the Config we sent. Server sets it
	// for the Hockeypuck dataset (Dataset.HockeypuckRules).
	Check func(local wire.Config, remote *wire.ConfigMsg) wire.Verdict
}

// Result is what a session learned.
type Result struct {
	// Remote is the peer's Config message, parsed; its HTTPPort is where
	// the missing keys are fetched from (spec recon.md §11.1). Zero if the
	// Config exchange did not get that far.
	Remote wire.Config
	// RemoteFilters is the filters value of the peer's Config, set as soon
	// as it is read, even when the exchange then fails (Server learns from
	// it which dataset the peer wants).
	RemoteFilters string
	// Missing are the key hashes the peer has and we lack, sorted
	// bytewise. It holds what to fetch: everything on success, what was
	// collected so far when the session ended early (ErrIncomplete), and
	// nothing after a protocol violation or a Config failure (§8.4).
	Missing []pgpkey.KeyHash
	// Complete reports whether the session ended with Done.
	Complete bool
	// Truncated reports that MaxMissing was reached.
	Truncated bool
	// NotKeyHashes counts elements the peer said we lack that are not key
	// hashes (2^128 or more); they cannot be fetched.
	NotKeyHashes int
	Stats        SessionStats
}

// SessionStats counts a session's traffic.
type SessionStats struct {
	// Requests is the number of ReconRqst_Poly/Full messages sent
	// (Acceptor) or answered (Initiator).
	Requests int
	// Sent and Received count messages after the Config exchange.
	Sent, Received int
	// BytesSent and BytesReceived count every byte, Config included.
	BytesSent, BytesReceived int64
	// ElementsSent counts the elements we sent in Elements and
	// FullElements messages.
	ElementsSent int
	// MaxSetSize is the largest element set in one message, either way.
	MaxSetSize int
	// Took is the session's duration, Config exchange included.
	Took time.Duration
}

// errorTexts are SKS's Error messages for a request naming a node the
// responder does not have (server.ml; "received" sic).
const (
	errTextPoly = "server should never receive request for non-existant node (ReconRqst_Poly)"
	errTextFull = "server should never received request for non-existant node (ReconRqst_Full)"
)

// maxVirtualNodes bounds the prefixes a responder remembers answering with
// SyncFail for a node it holds as a leaf (MaxMessageElements); past it,
// such nodes get FullElements as in SKS.
const maxVirtualNodes = 1 << 16

// Run runs the session on conn and closes conn before it returns.
//
// Both sides send their Config unprompted, then the verdict; a rejected
// Config gives a *ConfigError. Then the Acceptor walks its tree and the
// Initiator answers, until Done. Errors wrap ErrProtocol (nothing is to be
// fetched) or ErrIncomplete (Result.Missing holds what to fetch), or are a
// *ConfigError. The Result is never nil.
//
// ctx bounds the whole session; Config's timeouts bound each part.
// Messages are read by one goroutine into a queue and every write has a
// deadline, so a session never blocks on a write while the peer blocks on
// one (spec recon.md §8.7).
func (s *Session) Run(ctx context.Context, conn net.Conn) (*Result, error) {
	res := &Result{}
	if err := s.Config.Validate(); err != nil {
		conn.Close()
		return res, err
	}
	if s.View == nil || (s.Role != Initiator && s.Role != Acceptor) {
		conn.Close()
		return res, errors.New("recon: Session needs a View and a Role")
	}
	ss := newSessionState(s, conn, res)
	err := ss.run(ctx)
	res.Stats.Took = time.Since(ss.start)
	res.Stats.BytesSent = ss.wbytes
	res.Stats.BytesReceived = ss.rbytes.Load()
	if !errors.Is(err, ErrProtocol) && !isConfigError(err) {
		res.Missing = ss.missingSorted()
	}
	return res, err
}

func isConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// sessionState is one running session. Only the reader goroutine touches
// the reading side; everything else belongs to the goroutine in Run.
type sessionState struct {
	s      *Session
	cfg    *Config
	conn   net.Conn
	log    zerolog.Logger
	res    *Result
	start  time.Time
	ctx    context.Context
	points []ptree.Zp
	thresh int

	bw     *bufio.Writer
	wbytes int64
	rbytes atomic.Int64

	// hsDeadline bounds the Config exchange; sessDeadline (Unix nanos,
	// set by the reader when the verdict arrives) the rest.
	hsDeadline   time.Time
	sessDeadline atomic.Int64

	in         chan inMsg
	done       chan struct{} // closed when run returns: the reader stops delivering
	readerDone chan struct{}

	missing map[pgpkey.KeyHash]struct{}
	virtual map[ptree.Prefix]bool // responder: prefixes answered SyncFail as a leaf
}

// inMsg is one item from the reader: a frame, the verdict, or the error
// that ended reading.
type inMsg struct {
	msg     wire.Message
	verdict *wire.Verdict
	err     error
}

func newSessionState(s *Session, conn net.Conn, res *Result) *sessionState {
	cfg := &s.Config
	ss := &sessionState{
		s:          s,
		cfg:        cfg,
		conn:       conn,
		log:        cfg.Logger,
		res:        res,
		start:      time.Now(),
		points:     ptree.SamplePoints(cfg.MBar + 1),
		thresh:     cfg.reconThreshold(),
		in:         make(chan inMsg, 2*cfg.MaxOutstandingRequests+16),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		missing:    make(map[pgpkey.KeyHash]struct{}),
	}
	ss.hsDeadline = ss.start.Add(cfg.ConfigTimeout)
	ss.bw = bufio.NewWriterSize(writerFunc(ss.write), 64<<10)
	return ss
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// aLongTimeAgo is a deadline that has passed: it makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

// deadline returns the deadline for the next read or write that should
// take at most d: the Config deadline during the exchange, else the
// earlier of now+d and the session deadline.
func (ss *sessionState) deadline(d time.Duration) time.Time {
	sd := ss.sessDeadline.Load()
	if sd == 0 {
		return ss.hsDeadline
	}
	t := time.Now().Add(d)
	if s := time.Unix(0, sd); s.Before(t) {
		return s
	}
	return t
}

// write is the bufio.Writer's sink: every write to the socket gets a
// deadline. A cancelled ctx wins over the deadline set here (see run).
func (ss *sessionState) write(b []byte) (int, error) {
	ss.conn.SetWriteDeadline(ss.deadline(ss.cfg.WriteTimeout))
	if ss.ctx.Err() != nil {
		ss.conn.SetWriteDeadline(aLongTimeAgo)
	}
	n, err := ss.conn.Write(b)
	ss.wbytes += int64(n)
	return n, err
}

// countingReader counts the bytes the reader goroutine reads.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (ss *sessionState) run(ctx context.Context) error {
	ss.ctx = ctx
	// A context does not interrupt a blocked Read or Write; an expired
	// deadline does. Setting deadlines later checks ctx again, so this
	// cannot be overwritten by a later deadline.
	stop := context.AfterFunc(ctx, func() { ss.conn.SetDeadline(aLongTimeAgo) })
	defer func() {
		stop()
		close(ss.done)
		ss.conn.Close()
		<-ss.readerDone
	}()
	go ss.readLoop()

	if err := ss.handshake(); err != nil {
		return err
	}
	if ss.s.Role == Acceptor {
		return ss.request()
	}
	return ss.respond()
}

// readLoop reads the peer's Config, its verdict and then frames, and
// delivers each to ss.in, until an error (which is delivered too) or until
// run has returned.
func (ss *sessionState) readLoop() {
	defer close(ss.readerDone)
	r := wire.NewReader(bufio.NewReaderSize(countingReader{ss.conn, &ss.rbytes}, 64<<10), ss.cfg.Limits)
	arm := func(t time.Time) {
		ss.conn.SetReadDeadline(t)
		if ss.ctx.Err() != nil {
			ss.conn.SetReadDeadline(aLongTimeAgo)
		}
	}
	arm(ss.hsDeadline)
	m, err := r.ReadMessage()
	if !ss.deliver(inMsg{msg: m, err: err}) || err != nil {
		return
	}
	v, err := r.ReadVerdict()
	if err == nil {
		ss.sessDeadline.Store(time.Now().Add(ss.cfg.SessionTimeout).UnixNano())
	}
	if !ss.deliver(inMsg{verdict: &v, err: err}) || err != nil || !v.Passed {
		return
	}
	for {
		arm(ss.deadline(ss.cfg.ReadTimeout))
		m, err := r.ReadMessage()
		if !ss.deliver(inMsg{msg: m, err: err}) || err != nil {
			return
		}
	}
}

func (ss *sessionState) deliver(m inMsg) bool {
	select {
	case ss.in <- m:
		return true
	case <-ss.done:
		return false
	}
}

// next returns the next message from the reader. A read error is
// returned wrapped in ErrIncomplete, unless it is bad input, which is a
// protocol violation.
func (ss *sessionState) next() (wire.Message, error) {
	m := <-ss.in
	if m.err != nil {
		return nil, ss.readError(m.err)
	}
	ss.res.Stats.Received++
	return m.msg, nil
}

func (ss *sessionState) readError(err error) error {
	if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrUnknownType) {
		return fmt.Errorf("%w: read: %w", ErrProtocol, err)
	}
	if err == io.EOF {
		return fmt.Errorf("%w: connection closed by peer", ErrIncomplete)
	}
	return fmt.Errorf("%w: read: %w", ErrIncomplete, err)
}

func (ss *sessionState) writeError(err error) error {
	return fmt.Errorf("%w: write: %w", ErrIncomplete, err)
}

// send buffers m; it goes out at the next flush (or when the buffer fills,
// as SKS's 64 KiB channel buffer does).
func (ss *sessionState) send(m wire.Message) error {
	if err := wire.WriteMessage(ss.bw, m); err != nil {
		return ss.writeError(err)
	}
	ss.res.Stats.Sent++
	if ss.log.GetLevel() <= zerolog.TraceLevel {
		ss.log.Trace().Str("type", m.Type().String()).Msg("recon message sent")
	}
	return nil
}

func (ss *sessionState) flush() error {
	if err := ss.bw.Flush(); err != nil {
		return ss.writeError(err)
	}
	return nil
}

// handshake runs the Config exchange (spec recon.md §4; SKS reconCS.ml
// handle_config): send ours, read theirs, send our verdict, read theirs.
func (ss *sessionState) handshake() error {
	local := ss.cfg.wireConfig(ss.s.Peer)
	msg, err := local.Message()
	if err != nil {
		return err
	}
	if err := wire.WriteMessage(ss.bw, msg); err != nil {
		return ss.writeError(err)
	}
	if err := ss.flush(); err != nil {
		return fmt.Errorf("send config: %w", err)
	}
	in := <-ss.in
	if in.err != nil {
		return fmt.Errorf("read config: %w", ss.readError(in.err))
	}
	cm, ok := in.msg.(*wire.ConfigMsg)
	if !ok {
		// SKS: failwith "No configdata provided", and closes.
		return protocolErrorf("expected Config, got %s", in.msg.Type())
	}
	ss.res.RemoteFilters, _ = cm.Get(wire.KeyFilters)
	verdict := local.Check(cm)
	if ss.s.Check != nil {
		verdict = ss.s.Check(local, cm)
	}
	remote, perr := wire.ParseConfig(cm)
	if err := wire.WriteVerdict(ss.bw, verdict); err != nil {
		return ss.writeError(err)
	}
	if err := ss.flush(); err != nil {
		return fmt.Errorf("send verdict: %w", err)
	}
	if !verdict.Passed {
		// Give the peer's verdict a moment to arrive, so that closing
		// with unread data does not reset the connection before the peer
		// has read our reason.
		t := time.NewTimer(time.Second)
		select {
		case <-ss.in:
		case <-t.C:
		}
		t.Stop()
		return &ConfigError{Reason: verdict.Reason}
	}
	in = <-ss.in
	if in.err != nil {
		return fmt.Errorf("read verdict: %w", ss.readError(in.err))
	}
	if !in.verdict.Passed {
		return &ConfigError{ByPeer: true, Reason: in.verdict.Reason}
	}
	if perr != nil {
		// SKS reads "http port" only now and aborts without it.
		return protocolErrorf("peer config: %v", perr)
	}
	ss.res.Remote = remote
	return nil
}

// addMissing records elements the peer has and we lack.
func (ss *sessionState) addMissing(set []wire.Element) {
	for _, e := range set {
		h, ok := e.KeyHash()
		if !ok {
			ss.res.NotKeyHashes++
			continue
		}
		if _, dup := ss.missing[h]; dup {
			continue
		}
		if len(ss.missing) >= ss.cfg.MaxMissing {
			ss.res.Truncated = true
			return
		}
		ss.missing[h] = struct{}{}
	}
}

func (ss *sessionState) missingSorted() []pgpkey.KeyHash {
	out := make([]pgpkey.KeyHash, 0, len(ss.missing))
	for h := range ss.missing {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b pgpkey.KeyHash) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// noteSet updates MaxSetSize.
func (ss *sessionState) noteSet(n int) {
	if n > ss.res.Stats.MaxSetSize {
		ss.res.Stats.MaxSetSize = n
	}
}

// checkSet rejects elements that are not below p: SKS always sends reduced
// values, and a value with two encodings would break set arithmetic.
func checkSet(set []wire.Element, what string) error {
	for i := range set {
		if !canonical(&set[i]) {
			return protocolErrorf("%s: element %s is not below p", what, set[i])
		}
	}
	return nil
}

// modulusLE is p in the 17-byte little-endian wire form.
var modulusLE = func() wire.Element {
	var e wire.Element
	copy(e[:], ptree.Modulus().FillBytes(make([]byte, wire.ElementSize)))
	slices.Reverse(e[:])
	return e
}()

// canonical reports whether e < p.
func canonical(e *wire.Element) bool {
	return compareLE(e, &modulusLE) < 0
}

// compareLE compares two little-endian numbers: SKS sends sets in
// ascending numeric order (spec recon.md §2.1).
func compareLE(a, b *wire.Element) int {
	for i := wire.ElementSize - 1; i >= 0; i-- {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func sortElements(s []wire.Element) {
	slices.SortFunc(s, func(a, b wire.Element) int { return compareLE(&a, &b) })
}

func toElement(z ptree.Zp) wire.Element {
	var e wire.Element
	z.AppendBytes(e[:0])
	return e
}

func toElements(zs []ptree.Zp) []wire.Element {
	out := make([]wire.Element, len(zs))
	for i, z := range zs {
		out[i] = toElement(z)
	}
	return out
}

func toZp(e wire.Element) ptree.Zp {
	z, err := ptree.ZpFromBytes(e[:])
	if err != nil {
		// Callers check canonical first.
		panic("recon: toZp on a non-canonical element")
	}
	return z
}

// diff returns the elements of a that are not in b, in ascending order.
func diff(a []wire.Element, b map[wire.Element]struct{}) []wire.Element {
	var out []wire.Element
	for _, e := range a {
		if _, ok := b[e]; !ok {
			out = append(out, e)
		}
	}
	sortElements(out)
	return out
}

func setOf(s []wire.Element) map[wire.Element]struct{} {
	m := make(map[wire.Element]struct{}, len(s))
	for _, e := range s {
		m[e] = struct{}{}
	}
	return m
}

// wirePrefix converts a tree prefix for sending.
func wirePrefix(p ptree.Prefix) wire.Prefix {
	wp, err := wire.NewPrefix(p.Bits(), p.Bytes())
	if err != nil {
		panic("recon: prefix has no wire form: " + err.Error())
	}
	return wp
}

// treePrefix converts a received prefix.
func treePrefix(p wire.Prefix) (ptree.Prefix, error) {
	tp, err := ptree.PrefixFromWire(p.Len(), p.Bytes())
	if err != nil {
		return ptree.Prefix{}, protocolErrorf("prefix %q: %v", p.String(), err)
	}
	return tp, nil
}

// parentPrefix returns p without its last q bits.
func parentPrefix(p ptree.Prefix, q int) ptree.Prefix {
	n := p.Bits() - q
	if n < 0 {
		n = 0
	}
	b := p.Bytes()[:(n+7)/8]
	pp, err := ptree.PrefixFromWire(n, b)
	if err != nil {
		panic("recon: parentPrefix: " + err.Error())
	}
	return pp
}

// virtualNode summarises the elements under p as if p were a leaf. The
// count and svalues of a node depend only on the elements under its
// prefix, not on the tree's shape (spec recon.md §5.2), so a peer cannot
// tell it from a real node.
func (ss *sessionState) virtualNode(p ptree.Prefix) (*ptree.Node, error) {
	els, err := ss.s.View.Elements(p)
	if err != nil {
		return nil, fmt.Errorf("elements %q: %w", p.String(), err)
	}
	return &ptree.Node{
		Prefix:      p,
		NumElements: len(els),
		SValues:     ptree.SValues(els, ss.points),
		IsLeaf:      true,
		Elements:    els,
	}, nil
}

// nodeElements returns every element under n.
func (ss *sessionState) nodeElements(n *ptree.Node) ([]ptree.Zp, error) {
	if n.IsLeaf {
		return n.Elements, nil
	}
	els, err := ss.s.View.Elements(n.Prefix)
	if err != nil {
		return nil, fmt.Errorf("elements %q: %w", n.Prefix.String(), err)
	}
	return els, nil
}
