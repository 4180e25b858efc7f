// Package farm holds the scale-out test: a farm of grapevine nodes behind a
// real nginx, peered with each other and with a real SKS 1.1.6, each on its
// own network namespace ("host") with its own address, joined by veth pairs
// on a bridge in a further namespace (the "switch"). See docs/scale-out.md.
//
// It lives under testdata/ because it is test support, not product code;
// the Makefile names it (go test ./testdata/farm). The test needs root (ip
// netns) and the programs ip (iproute2), nginx and sks; as everywhere in
// grapevine, a missing one skips locally and fails when CI=true.
//
// Nothing leaves the namespaces the test creates: the addresses
// (10.213.0.0/24) exist only on the bridge inside the switch namespace and
// the veth ends attached to it, and the root namespace gets no interface,
// address or route.
package farm
