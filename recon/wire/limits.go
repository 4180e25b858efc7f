package wire

// Limits bounds what the decoders accept. Every length prefix and count is
// checked against them before anything is allocated for it, and bodies are
// read in growing chunks, so memory follows the bytes actually received, not
// the lengths a peer claims.
//
// A zero (or negative) field means the value from DefaultLimits, so the
// zero Limits is the default.
type Limits struct {
	// MaxFrameBytes bounds the length field of a frame (type byte plus
	// body) for every type except ReconRqst_Full, Elements and
	// FullElements. 16 MiB is conflux's maxReadLen (spec recon.md §2.2,
	// §8.6); SKS itself has no limit.
	MaxFrameBytes int

	// MaxSetFrameBytes bounds the length field of the frames that carry a
	// set: ReconRqst_Full, Elements, FullElements. An almost empty peer
	// receives every element of a full one in a single Elements frame
	// (~17 bytes × N), so spec recon.md §8.6 asks for at least 256 MiB.
	MaxSetFrameBytes int

	// MaxElements bounds the count of a zset or zarray. The default,
	// 256 MiB / 17 = 15,790,320, is what the default MaxSetFrameBytes can
	// hold; the frame length bounds it anyway.
	MaxElements int

	// MaxStringBytes bounds a string inside a frame (Error text, DbRqst,
	// DbRepl, Config keys and values) and a bare verdict string. SKS
	// sends at most a few hundred bytes (the longest is a filters
	// mismatch reason); 64 KiB leaves room for any filters list.
	MaxStringBytes int

	// MaxConfigPairs bounds the pair count of a Config. SKS sends 5,
	// conflux 5 plus its custom keys.
	MaxConfigPairs int

	// MaxHashQueryCount bounds the count of a /pks/hashquery request or
	// response body. SKS sends 100 hashes per request and refuses POST
	// bodies over 5 MiB (Wserver.max_post_length, spec hkp.md §1.6), which
	// hold at most 5 MiB / 20 = 262,144 hashes.
	MaxHashQueryCount int

	// MaxKeyStringBytes bounds one key in a hashquery response. SKS stores
	// keys of any size (spec keyhash.md); Hockeypuck stores at most 1 MiB
	// (maxKeyLength). 64 MiB admits anything a peer is likely to hold;
	// the importer applies its own key-size policy afterwards.
	MaxKeyStringBytes int

	// MaxHashQueryBytes bounds the sum of the string lengths in one
	// hashquery body. 256 MiB is Hockeypuck's maxResponseLen default
	// (spec hkp.md §10).
	MaxHashQueryBytes int
}

// DefaultLimits returns the limits used when a Limits field is zero. Each
// value's reason is on its field.
func DefaultLimits() Limits {
	return Limits{
		MaxFrameBytes:     16 << 20,
		MaxSetFrameBytes:  256 << 20,
		MaxElements:       (256 << 20) / ElementSize,
		MaxStringBytes:    64 << 10,
		MaxConfigPairs:    64,
		MaxHashQueryCount: (5 << 20) / (4 + KeyHashSize),
		MaxKeyStringBytes: 64 << 20,
		MaxHashQueryBytes: 256 << 20,
	}
}

// norm returns l with zero and negative fields replaced by the defaults.
func (l Limits) norm() Limits {
	d := DefaultLimits()
	def := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	def(&l.MaxFrameBytes, d.MaxFrameBytes)
	def(&l.MaxSetFrameBytes, d.MaxSetFrameBytes)
	def(&l.MaxElements, d.MaxElements)
	def(&l.MaxStringBytes, d.MaxStringBytes)
	def(&l.MaxConfigPairs, d.MaxConfigPairs)
	def(&l.MaxHashQueryCount, d.MaxHashQueryCount)
	def(&l.MaxKeyStringBytes, d.MaxKeyStringBytes)
	def(&l.MaxHashQueryBytes, d.MaxHashQueryBytes)
	return l
}

// frameLimit returns the largest length field accepted for a frame of type t.
func (l Limits) frameLimit(t MsgType) int {
	switch t {
	case MsgReconRqstFull, MsgElements, MsgFullElements:
		return l.MaxSetFrameBytes
	}
	return l.MaxFrameBytes
}
