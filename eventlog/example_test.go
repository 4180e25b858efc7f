package eventlog_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

func Example() {
	dir, err := os.MkdirTemp("", "eventlog-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := eventlog.Open(dir, eventlog.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	ctx := context.Background()
	last, err := l.Append(ctx,
		&eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: []byte{0x99, 0x00}},
		&eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginRecon, Peer: "peer.example.net", Key: []byte{0xc6, 0x00}},
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored up to index", last) // durable now

	it := l.NewIterator(1, 0) // [1, LastIndex+1)
	defer it.Close()
	for {
		i, e, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(i, e.Kind, e.Origin, e.Peer, len(e.Key))
	}
	// Output:
	// stored up to index 2
	// 1 key_submitted hkp  2
	// 2 key_submitted recon peer.example.net 2
}
