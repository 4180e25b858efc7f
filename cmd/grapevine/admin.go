package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections"
)

// The admin socket lets commands reach a running daemon on the same
// basedir: only one process may hold the log and Pebble, so `grapevine dump`
// and `grapevine stats` run inside the daemon when it is up, while it keeps
// serving (SKS cannot dump a live database). It is a unix socket in
// DIR/grapevine/, reachable only by users who can reach the basedir.
const adminSocket = "grapevine/admin.sock"

// serveAdmin answers admin requests until ctx is done.
func serveAdmin(ctx context.Context, b *basedir) (func(), error) {
	path := filepath.Join(b.dir, adminSocket)
	os.Remove(path) // a stale socket of a killed daemon; we hold the lock
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if err := writeStats(&buf, b); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(buf.Bytes())
	})
	mux.HandleFunc("/admin-event", adminEventHandler(b))
	mux.HandleFunc("/check", checkHandler(b))
	mux.HandleFunc("/dump", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		perFile, err := strconv.Atoi(q.Get("keys-per-file"))
		if err != nil || perFile < 1 {
			http.Error(w, "bad keys-per-file", http.StatusBadRequest)
			return
		}
		msg, err := runDump(r.Context(), b, q.Get("at"), q.Get("out"), q.Get("prefix"), perFile)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, msg)
	})
	mux.HandleFunc("/submit", adminSubmit(b))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() {
		srv.Close()
		os.Remove(path)
	}, nil
}

// adminRequest sends a request to the daemon running on dir. It returns
// errNoDaemon when no daemon answers there.
func adminRequest(ctx context.Context, dir, method, path string, q url.Values) (string, error) {
	sock := filepath.Join(dir, adminSocket)
	if _, err := os.Stat(sock); err != nil {
		return "", errNoDaemon
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, method, "http://daemon"+path+"?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", errNoDaemon
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

var errNoDaemon = errors.New("no running daemon")

// writeStats writes the `grapevine stats` lines of an open basedir.
func writeStats(w io.Writer, b *basedir) error {
	keys, err := b.store.KeyCount()
	if err != nil {
		return err
	}
	applied, err := b.store.AppliedIndexes()
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "keys: %d\n", keys)
	fmt.Fprintf(bw, "log_first_offset: %d\n", b.log.FirstIndex())
	fmt.Fprintf(bw, "log_offset: %d\n", b.log.LastIndex())
	fmt.Fprintf(bw, "log_bytes: %d\n", b.log.SizeBytes())
	for _, p := range projections.Projections {
		fmt.Fprintf(bw, "applied_%s: %d\n", p, applied[p])
	}
	fmt.Fprintf(bw, "ptree_elements: %d\n", b.store.PtreeElements())
	// The Hockeypuck dataset has its own applied index (issue 11).
	fmt.Fprintf(bw, "applied_%s: %d\n", projections.ProjectionHockeypuck, b.store.HockeypuckApplied())
	fmt.Fprintf(bw, "hockeypuck_ptree_elements: %d\n", b.store.HockeypuckPtreeElements())
	return bw.Flush()
}
