package projections

import (
	"fmt"
	"testing"
)

// TestWordFactsBounded: facts survive one generation change (and move to
// the current one when used), and the memory stays bounded: a fact not
// used for two generations is gone.
func TestWordFactsBounded(t *testing.T) {
	var f wordFacts
	key := func(i int) []byte {
		return appendFactKey(nil, []byte{byte(i), byte(i >> 8), byte(i >> 16)}, 7, fmt.Sprint("w", i))
	}
	f.put(key(-1), true)
	f.put(key(-2), false)
	for i := 0; i < wordFactsPerGeneration; i++ {
		f.put(key(i), i%2 == 0)
	}
	// key(-1) and key(-2) are in the previous generation now.
	if has, ok := f.lookup(key(-1)); !ok || !has {
		t.Fatalf("fact -1 after one generation: %v %v", has, ok)
	}
	for i := wordFactsPerGeneration; i < 2*wordFactsPerGeneration; i++ {
		f.put(key(i), true)
	}
	if _, ok := f.lookup(key(-2)); ok {
		t.Fatal("a fact unused for two generations is still there")
	}
	if has, ok := f.lookup(key(-1)); !ok || !has {
		t.Fatalf("fact -1, used in the previous generation: %v %v", has, ok)
	}
	if has, ok := f.lookup(key(2*wordFactsPerGeneration - 1)); !ok || !has {
		t.Fatal("the newest fact is missing")
	}
	if n := len(f.cur) + len(f.prev); n > 2*wordFactsPerGeneration {
		t.Fatalf("%d facts kept, bound %d", n, 2*wordFactsPerGeneration)
	}
	// A different version of the same key is a different fact.
	if _, ok := f.lookup(appendFactKey(nil, []byte{0, 0, 0}, 8, "w0")); ok {
		t.Fatal("a fact about version 7 answered for version 8")
	}
}
