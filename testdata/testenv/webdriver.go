package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Browser drives a real headless Chromium through chromedriver's W3C
// WebDriver HTTP API (Debian packages chromium and chromium-driver), so
// tests click through pages as a person would. No WebDriver library: the
// protocol is a handful of JSON calls.
type Browser struct {
	tb       testing.TB
	base     string // http://127.0.0.1:PORT/session/ID
	Download string // directory downloads land in
}

// elementKey is the W3C WebDriver element reference key.
const elementKey = "element-6066-11e4-a52e-4f735466cecf"

// StartBrowser starts chromedriver on loopback and opens a headless
// Chromium session; both end at cleanup.
func StartBrowser(tb testing.TB) *Browser {
	tb.Helper()
	driver := RequireProgram(tb, "chromedriver")
	chromium := RequireProgram(tb, "chromium")
	port := FreePort(tb)
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port), "--allowed-ips=127.0.0.1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(root + "/status")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("chromedriver did not start: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	download := tb.TempDir()
	profile := tb.TempDir()
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			// Flags for a closed network and root in a sandbox (env docs).
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--disable-dev-shm-usage", "--user-data-dir=" + profile},
			"prefs": map[string]any{"download.default_directory": download, "download.prompt_for_download": false},
		},
	}}}
	var res struct {
		Value struct {
			SessionID string `json:"sessionId"`
		} `json:"value"`
	}
	call(tb, "POST", root+"/session", caps, &res)
	if res.Value.SessionID == "" {
		tb.Fatalf("no WebDriver session:\n%s", out.String())
	}
	b := &Browser{tb: tb, base: root + "/session/" + res.Value.SessionID, Download: download}
	tb.Cleanup(func() { call(tb, "DELETE", b.base, nil, nil) })
	// Allow downloads in headless mode, into Download.
	call(tb, "POST", b.base+"/chromium/send_command", map[string]any{"cmd": "Page.setDownloadBehavior",
		"params": map[string]any{"behavior": "allow", "downloadPath": download}}, nil)
	return b
}

func call(tb testing.TB, method, url string, body any, out any) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("webdriver %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		tb.Fatalf("webdriver %s %s: %d %s", method, url, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			tb.Fatalf("webdriver %s: %v in %s", url, err, data)
		}
	}
}

// Open navigates to url and waits for the page to load.
func (b *Browser) Open(url string) {
	b.tb.Helper()
	call(b.tb, "POST", b.base+"/url", map[string]any{"url": url}, nil)
}

// Find returns the element matching a CSS selector.
func (b *Browser) Find(css string) string {
	b.tb.Helper()
	var res struct {
		Value map[string]string `json:"value"`
	}
	call(b.tb, "POST", b.base+"/element", map[string]any{"using": "css selector", "value": css}, &res)
	return res.Value[elementKey]
}

// Type types text into an element.
func (b *Browser) Type(css, text string) {
	b.tb.Helper()
	call(b.tb, "POST", b.base+"/element/"+b.Find(css)+"/value", map[string]any{"text": text}, nil)
}

// Click clicks an element.
func (b *Browser) Click(css string) {
	b.tb.Helper()
	call(b.tb, "POST", b.base+"/element/"+b.Find(css)+"/click", map[string]any{}, nil)
}

// Source returns the current page's HTML.
func (b *Browser) Source() string {
	b.tb.Helper()
	var res struct {
		Value string `json:"value"`
	}
	call(b.tb, "GET", b.base+"/source", nil, &res)
	return res.Value
}

// URL returns the current page's address.
func (b *Browser) URL() string {
	b.tb.Helper()
	var res struct {
		Value string `json:"value"`
	}
	call(b.tb, "GET", b.base+"/url", nil, &res)
	return res.Value
}

// WaitFor polls the page source until it contains want.
func (b *Browser) WaitFor(want string) string {
	b.tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		src := b.Source()
		if strings.Contains(src, want) {
			return src
		}
		if time.Now().After(deadline) {
			b.tb.Fatalf("page %s never contained %q:\n%s", b.URL(), want, src)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitDownload waits for a finished file in the download directory.
func (b *Browser) WaitDownload() string {
	b.tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _ := os.ReadDir(b.Download)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".crdownload") {
				return b.Download + "/" + e.Name()
			}
		}
		if time.Now().After(deadline) {
			b.tb.Fatal("no download arrived")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
