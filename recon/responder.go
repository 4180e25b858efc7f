package recon

import (
	"errors"
	"fmt"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// respond is the responder (Initiator) side: SKS server.ml handle, spec
// recon.md §8.2. Replies are buffered and written on Flush (or when the
// 64 KiB buffer fills); the reader goroutine keeps reading meanwhile.
func (ss *sessionState) respond() error {
	for {
		m, err := ss.next()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *wire.ReconRqstPoly:
			ss.res.Stats.Requests++
			if err := ss.answerPoly(m); err != nil {
				return err
			}
		case *wire.ReconRqstFull:
			ss.res.Stats.Requests++
			if err := ss.answerFull(m); err != nil {
				return err
			}
		case *wire.Elements:
			// The requester's share after our FullElements.
			if err := checkSet(m.Set, "Elements"); err != nil {
				return err
			}
			ss.noteSet(len(m.Set))
			ss.addMissing(m.Set)
		case *wire.Flush:
			if err := ss.flush(); err != nil {
				return err
			}
		case *wire.Done:
			ss.res.Complete = true
			return nil
		case *wire.ErrorMsg:
			return protocolErrorf("peer sent Error %q", truncate(m.Text, 200))
		default:
			// SKS: failwith "Unexpected message".
			return protocolErrorf("unexpected %s", m.Type())
		}
	}
}

// responderNode returns our node for p. If the tree has a leaf above p,
// SKS answers Error and ends the session (spec recon.md §8.3); so do we,
// unless we caused the request ourselves by answering SyncFail for the
// leaf (MaxMessageElements), in which case we answer from the leaf's
// elements under p. found is false after the Error was sent.
func (ss *sessionState) responderNode(p ptree.Prefix, errText string) (n *ptree.Node, found bool, err error) {
	n, err = ss.s.View.Node(p)
	switch {
	case err == nil:
		return n, true, nil
	case errors.Is(err, ptree.ErrNodeNotFound):
		if p.Bits() > 0 && ss.virtual[parentPrefix(p, ss.cfg.BitQuantum)] {
			n, err := ss.virtualNode(p)
			return n, err == nil, err
		}
		if err := ss.send(&wire.ErrorMsg{Text: errText}); err != nil {
			return nil, false, err
		}
		if err := ss.flush(); err != nil {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("%w: peer asked for prefix %q below one of our leaves", ErrIncomplete, p.String())
	case errors.Is(err, ptree.ErrBadPrefix):
		// SKS get_node_key raises Invalid_argument, which aborts.
		return nil, false, protocolErrorf("request for prefix %q: %v", p.String(), err)
	}
	return nil, false, fmt.Errorf("read node %q: %w", p.String(), err)
}

// answerPoly answers ReconRqst_Poly (spec recon.md §8.2).
func (ss *sessionState) answerPoly(m *wire.ReconRqstPoly) error {
	p, err := treePrefix(m.Prefix)
	if err != nil {
		return err
	}
	if len(m.Samples) != ss.cfg.MBar+1 {
		return protocolErrorf("ReconRqst_Poly for %q has %d samples, want %d", p.String(), len(m.Samples), ss.cfg.MBar+1)
	}
	if err := checkSet(m.Samples, "ReconRqst_Poly samples"); err != nil {
		return err
	}
	n, found, err := ss.responderNode(p, errTextPoly)
	if !found {
		return err
	}
	samples := make([]ptree.Zp, len(m.Samples))
	for i, e := range m.Samples {
		samples[i] = toZp(e)
	}
	localOnly, remoteOnly, err := ptree.Reconcile(n.SValues, samples, n.NumElements, int(m.Size), ss.points)
	if err == nil {
		ss.addMissing(toElements(remoteOnly))
		set := toElements(localOnly)
		sortElements(set)
		return ss.sendElements(set, false)
	}
	if !errors.Is(err, ptree.ErrLowMBar) {
		return fmt.Errorf("reconcile %q: %w", p.String(), err)
	}
	small := n.IsLeaf || n.NumElements < ss.thresh
	if small && ss.cfg.MaxMessageElements > 0 && int64(m.Size) > int64(ss.cfg.MaxMessageElements) &&
		p.Bits()+ss.cfg.BitQuantum <= ptree.MaxPrefixBits && len(ss.virtual) < maxVirtualNodes {
		// The peer's node is big and internal (SKS and conflux send Poly
		// only for internal nodes): make it recurse rather than send
		// everything it has under p in one Elements message (§8.6).
		if ss.virtual == nil {
			ss.virtual = make(map[ptree.Prefix]bool)
		}
		ss.virtual[p] = true
		small = false
	}
	if small {
		els, err := ss.nodeElements(n)
		if err != nil {
			return err
		}
		set := toElements(els)
		sortElements(set)
		ss.res.Stats.ElementsSent += len(set)
		ss.noteSet(len(set))
		return ss.send(&wire.FullElements{Set: set})
	}
	return ss.send(&wire.SyncFail{})
}

// answerFull answers ReconRqst_Full (spec recon.md §8.2).
func (ss *sessionState) answerFull(m *wire.ReconRqstFull) error {
	p, err := treePrefix(m.Prefix)
	if err != nil {
		return err
	}
	if err := checkSet(m.Set, "ReconRqst_Full"); err != nil {
		return err
	}
	ss.noteSet(len(m.Set))
	n, found, err := ss.responderNode(p, errTextFull)
	if !found {
		return err
	}
	els, err := ss.nodeElements(n)
	if err != nil {
		return err
	}
	local := toElements(els)
	ss.addMissing(diff(m.Set, setOf(local)))
	return ss.sendElements(diff(local, setOf(m.Set)), false)
}
