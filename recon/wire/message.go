package wire

import "strconv"

// MsgType is the type byte of a recon frame (spec recon.md §2.3; SKS
// reconMessages.ml).
type MsgType uint8

// Message types. Append only: values are part of the protocol.
const (
	MsgReconRqstPoly MsgType = 0
	MsgReconRqstFull MsgType = 1
	MsgElements      MsgType = 2
	MsgFullElements  MsgType = 3
	MsgSyncFail      MsgType = 4
	MsgDone          MsgType = 5
	MsgFlush         MsgType = 6
	MsgError         MsgType = 7
	MsgDbRqst        MsgType = 8
	MsgDbRepl        MsgType = 9
	MsgConfig        MsgType = 10
)

var msgTypeNames = [...]string{
	MsgReconRqstPoly: "ReconRqst_Poly",
	MsgReconRqstFull: "ReconRqst_Full",
	MsgElements:      "Elements",
	MsgFullElements:  "FullElements",
	MsgSyncFail:      "SyncFail",
	MsgDone:          "Done",
	MsgFlush:         "Flush",
	MsgError:         "Error",
	MsgDbRqst:        "DbRqst",
	MsgDbRepl:        "DbRepl",
	MsgConfig:        "Config",
}

// String returns SKS's name for t ("ReconRqst_Poly"), as SKS logs it, or
// "MsgType(N)" for an unknown value.
func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) {
		return msgTypeNames[t]
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// Known reports whether t is one of the eleven types of SKS 1.1.6.
func (t MsgType) Known() bool { return int(t) < len(msgTypeNames) }

// Message is one decoded recon frame: *ReconRqstPoly, *ReconRqstFull,
// *Elements, *FullElements, *SyncFail, *Done, *Flush, *ErrorMsg, *DbRqst,
// *DbRepl or *ConfigMsg. The set is closed; switch on the concrete type.
//
// Messages returned by ReadMessage do not alias the reader's buffers.
type Message interface {
	// Type returns the frame's type byte.
	Type() MsgType

	// bodyLen returns the number of bytes after the type byte.
	bodyLen() uint64
	// encodeBody writes the bytes after the type byte.
	encodeBody(e *encoder)
}

// ReconRqstPoly (type 0) carries a requester's node summary: "here are my
// element count and sample values, try to decode the difference".
type ReconRqstPoly struct {
	Prefix Prefix
	// Size is the node's element count, a u32 on the wire.
	Size uint32
	// Samples are the node's svalues, mbar+1 of them (6 with SKS
	// defaults). The count is not checked here; the session checks it
	// against the negotiated mbar.
	Samples []Element
}

// ReconRqstFull (type 1) carries every element under the requester's node.
type ReconRqstFull struct {
	Prefix Prefix
	Set    []Element
}

// Elements (type 2) carries elements the receiver lacks. Both sides send
// it; an empty set is sent as count 0.
type Elements struct {
	Set []Element
}

// FullElements (type 3) is the responder's "decoding failed and my node is
// small: here are all my elements under the prefix".
type FullElements struct {
	Set []Element
}

// SyncFail (type 4) is the responder's "decoding failed and my node is big:
// recurse into the children". It has no body.
type SyncFail struct{}

// Done (type 5) ends the session. It has no body.
type Done struct{}

// Flush (type 6) asks the responder to write out its buffered replies. It
// has no body and gets no reply.
type Flush struct{}

// ErrorMsg (type 7, SKS "Error") carries a fatal error text.
type ErrorMsg struct {
	Text string
}

// DbRqst (type 8) is reserved: SKS 1.1.6 and Hockeypuck never send it, and
// receiving it is a protocol error for the session. It is decoded so the
// session can say what it got.
type DbRqst struct {
	Data string
}

// DbRepl (type 9) is reserved like DbRqst.
type DbRepl struct {
	Data string
}

// ConfigMsg (type 10) is the session-parameter list exchanged first (spec
// recon.md §4). Pairs keep the order and the exact bytes they had on the
// wire; Config is the typed view.
type ConfigMsg struct {
	Pairs []ConfigPair
}

// ConfigPair is one key/value string pair of a ConfigMsg. Values of
// "http port", "bitquantum" and "mbar" are 4-byte big-endian binary, not
// text; Go strings hold them as they are.
type ConfigPair struct {
	Key, Value string
}

// Get returns the value of key. If key occurs more than once the last one
// wins, as in SKS (Map.of_alist adds the pairs in order).
func (m *ConfigMsg) Get(key string) (string, bool) {
	for i := len(m.Pairs) - 1; i >= 0; i-- {
		if m.Pairs[i].Key == key {
			return m.Pairs[i].Value, true
		}
	}
	return "", false
}

func (*ReconRqstPoly) Type() MsgType { return MsgReconRqstPoly }
func (*ReconRqstFull) Type() MsgType { return MsgReconRqstFull }
func (*Elements) Type() MsgType      { return MsgElements }
func (*FullElements) Type() MsgType  { return MsgFullElements }
func (*SyncFail) Type() MsgType      { return MsgSyncFail }
func (*Done) Type() MsgType          { return MsgDone }
func (*Flush) Type() MsgType         { return MsgFlush }
func (*ErrorMsg) Type() MsgType      { return MsgError }
func (*DbRqst) Type() MsgType        { return MsgDbRqst }
func (*DbRepl) Type() MsgType        { return MsgDbRepl }
func (*ConfigMsg) Type() MsgType     { return MsgConfig }
