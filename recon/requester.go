package recon

import (
	"errors"
	"fmt"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// fifo is a first-in first-out queue.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) push(v T) { q.items = append(q.items, v) }
func (q *fifo[T]) len() int { return len(q.items) - q.head }
func (q *fifo[T]) front() T { return q.items[q.head] }
func (q *fifo[T]) clear()   { q.items, q.head = nil, 0 }

func (q *fifo[T]) pop() T {
	v := q.items[q.head]
	var zero T
	q.items[q.head] = zero
	q.head++
	if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0:0], q.items[q.head:]...)
		q.head = 0
	}
	return v
}

// bottom is an entry of the requester's queue of outstanding requests
// (SKS client.ml bottomQ_entry): a request awaiting its reply, or the
// marker that the replies to everything sent before a Flush have arrived.
type bottom struct {
	prefix     ptree.Prefix
	flushEnded bool
}

// request is the requester (Acceptor) side: SKS client.ml
// connection_manager, spec recon.md §8.1. The non-blocking read of SKS is
// a non-blocking receive from the reader goroutine's queue.
func (ss *sessionState) request() error {
	var requestQ fifo[ptree.Prefix]
	var bottomQ fifo[bottom]
	flushing := false
	requestQ.push(ptree.Prefix{})

	sendNext := func() error {
		p := requestQ.pop()
		if err := ss.sendRequest(p); err != nil {
			return err
		}
		bottomQ.push(bottom{prefix: p})
		return nil
	}
	handle := func(p ptree.Prefix, m wire.Message) error {
		if err := ss.handleReply(p, m, &requestQ); err != nil {
			return err
		}
		if ss.res.Truncated {
			// MaxMissing reached: stop recursing, collect the replies
			// still due, and end.
			requestQ.clear()
		}
		return nil
	}

	for requestQ.len() > 0 || bottomQ.len() > 0 {
		if bottomQ.len() == 0 {
			if err := sendNext(); err != nil {
				return err
			}
			continue
		}
		head := bottomQ.front()
		if head.flushEnded {
			bottomQ.pop()
			flushing = false
			continue
		}
		select {
		case in := <-ss.in:
			bottomQ.pop()
			if in.err != nil {
				return ss.readError(in.err)
			}
			ss.res.Stats.Received++
			if err := handle(head.prefix, in.msg); err != nil {
				return err
			}
			continue
		default:
		}
		if bottomQ.len() > ss.cfg.MaxOutstandingRequests || requestQ.len() == 0 {
			if !flushing {
				if err := ss.send(&wire.Flush{}); err != nil {
					return err
				}
				if err := ss.flush(); err != nil {
					return err
				}
				bottomQ.push(bottom{flushEnded: true})
				flushing = true
				continue
			}
			bottomQ.pop()
			m, err := ss.next()
			if err != nil {
				return err
			}
			if err := handle(head.prefix, m); err != nil {
				return err
			}
			continue
		}
		if err := sendNext(); err != nil {
			return err
		}
	}
	if err := ss.send(&wire.Done{}); err != nil {
		return err
	}
	if err := ss.flush(); err != nil {
		return err
	}
	ss.res.Complete = true
	return nil
}

// requesterNode returns our node for p. Below one of our leaves (possible
// only with MaxMessageElements, after a SyncFail for the leaf) it is a
// virtual node computed from the leaf's elements.
func (ss *sessionState) requesterNode(p ptree.Prefix) (*ptree.Node, error) {
	n, err := ss.s.View.Node(p)
	if errors.Is(err, ptree.ErrNodeNotFound) && ss.cfg.MaxMessageElements > 0 {
		return ss.virtualNode(p)
	}
	if err != nil {
		return nil, fmt.Errorf("read node %q: %w", p.String(), err)
	}
	return n, nil
}

// sendRequest sends the request for our node p (spec recon.md §8.1.1).
func (ss *sessionState) sendRequest(p ptree.Prefix) error {
	n, err := ss.requesterNode(p)
	if err != nil {
		return err
	}
	ss.res.Stats.Requests++
	full := n.IsLeaf || n.NumElements < ss.thresh
	if ss.cfg.MaxMessageElements > 0 {
		// ReconRqst_Full's reply is every element the peer has under p,
		// however many; Poly's replies are bounded (§8.6).
		full = false
	}
	if full {
		els, err := ss.nodeElements(n)
		if err != nil {
			return err
		}
		set := toElements(els)
		sortElements(set)
		ss.noteSet(len(set))
		return ss.send(&wire.ReconRqstFull{Prefix: wirePrefix(p), Set: set})
	}
	samples := make([]wire.Element, len(n.SValues))
	for i, z := range n.SValues {
		samples[i] = toElement(z)
	}
	return ss.send(&wire.ReconRqstPoly{Prefix: wirePrefix(p), Size: uint32(n.NumElements), Samples: samples})
}

// handleReply handles the reply to the request for our node p (spec
// recon.md §8.1.2).
func (ss *sessionState) handleReply(p ptree.Prefix, m wire.Message, requestQ *fifo[ptree.Prefix]) error {
	switch m := m.(type) {
	case *wire.SyncFail:
		n, err := ss.requesterNode(p)
		if err != nil {
			return err
		}
		q := ss.cfg.BitQuantum
		switch {
		case !n.IsLeaf:
			for _, c := range n.Children {
				requestQ.push(c)
			}
		case ss.cfg.MaxMessageElements > 0 && p.Bits()+q <= ptree.MaxPrefixBits:
			// We summarised a leaf with Poly and the peer's node is big:
			// recurse into children computed from the leaf.
			for i := range 1 << q {
				requestQ.push(p.Child(i, q))
			}
		default:
			// SKS raises Bug "Syncfail received at leaf node".
			return protocolErrorf("SyncFail received for leaf node %q", p.String())
		}
	case *wire.Elements:
		if err := checkSet(m.Set, "Elements"); err != nil {
			return err
		}
		ss.noteSet(len(m.Set))
		ss.addMissing(m.Set)
	case *wire.FullElements:
		if err := checkSet(m.Set, "FullElements"); err != nil {
			return err
		}
		ss.noteSet(len(m.Set))
		n, err := ss.requesterNode(p)
		if err != nil {
			return err
		}
		els, err := ss.nodeElements(n)
		if err != nil {
			return err
		}
		local := toElements(els)
		localDiff := diff(local, setOf(m.Set))
		remoteDiff := diff(m.Set, setOf(local))
		if err := ss.sendElements(localDiff, true); err != nil {
			return err
		}
		ss.addMissing(remoteDiff)
	case *wire.ErrorMsg:
		return protocolErrorf("peer sent Error %q for prefix %q", truncate(m.Text, 200), p.String())
	default:
		return protocolErrorf("unexpected %s in reply to the request for prefix %q", m.Type(), p.String())
	}
	return nil
}

// sendElements sends an Elements message (the count may be 0). With
// MaxMessageElements and split, a large set goes out as several
// messages; the responder merges them (SKS server.ml handle_one).
func (ss *sessionState) sendElements(set []wire.Element, split bool) error {
	ss.res.Stats.ElementsSent += len(set)
	max := ss.cfg.MaxMessageElements
	for split && max > 0 && len(set) > max {
		ss.noteSet(max)
		if err := ss.send(&wire.Elements{Set: set[:max]}); err != nil {
			return err
		}
		set = set[max:]
	}
	ss.noteSet(len(set))
	return ss.send(&wire.Elements{Set: set})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
