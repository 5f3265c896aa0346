package web

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/echod/echod/internal/testkit"
	"github.com/echod/echod/internal/tooltest"
)

// TestPageInChromium loads the page in Debian's chromium and sends a text
// and a binary message through the page itself, as a person would. With
// ECHOD_SCREENSHOT=FILE it also saves a screenshot of the page (the one in
// docs/web-echo.png).
func TestPageInChromium(t *testing.T) {
	path := tooltest.Require(t, "chromium")
	forEachEngine(t, func(t *testing.T, engine string) {
		h := &Handler{Hostname: "echod.example"}
		srv := serveOn(t, h, engine)
		pageInChromium(t, path, h, srv.URL, "ws://", "HTTP/1.1", "none (plain HTTP)")
	})
}

// Over HTTPS the page loads over HTTP/2 and its WebSocket, wss://, over
// HTTP/1.1.
func TestPageInChromiumOverHTTPS(t *testing.T) {
	path := tooltest.Require(t, "chromium")
	h := &Handler{Hostname: "echod.example"}
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	pageInChromium(t, path, h, srv.URL, "wss://", "HTTP/2.0", "ALPN h2")
}

// pageInChromium drives the page at url in chromium: a text and a binary
// message through the page, each echoed and verified in the page.
func pageInChromium(t *testing.T, path string, h *Handler, url, scheme, protocol, tlsSeen string) {

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		// httptest's certificate is its own; over HTTPS the test is
		// about the protocols, not the trust.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(900, 1000),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	text := "hello from chromium, ünïcödé ✓"
	err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(`#statebox.ok`),
		chromedp.SetValue(`#msg`, text),
		chromedp.Click(`#send`),
		chromedp.WaitVisible(`#log li[data-type=text][data-status=ok]`),
		chromedp.SetValue(`#count`, "100000"),
		chromedp.Click(`#sendbin`),
		chromedp.WaitVisible(`#log li[data-type=binary][data-status=ok]`),
		chromedp.WaitReady(`#headers tr`),
	)
	if err != nil {
		t.Fatalf("in chromium: %v", err)
	}
	state, _ := chromedp.Run(ctx, chromedp.Text(`#state`))
	textEntry, _ := chromedp.Run(ctx, chromedp.Text(`#log li[data-type=text]`))
	binEntry, _ := chromedp.Run(ctx, chromedp.Text(`#log li[data-type=binary]`))
	seen, _ := chromedp.Run(ctx, chromedp.Text(`#seen`))
	t.Logf("state %q\ntext %q\nbinary %q\nseen %q", state, textEntry, binEntry, seen)
	for _, c := range []struct{ what, got, want string }{
		{"state", state, "connected to " + scheme},
		{"text echo", textEntry, "bytes match"},
		{"text echo", textEntry, text},
		{"binary echo", binEntry, "97 KiB"},
		{"binary echo", binEntry, "bytes match"},
		{"what echod sees", seen, "127.0.0.1:"},
		{"what echod sees", seen, "echod.example"},
		{"what echod sees", seen, protocol},
		{"what echod sees", seen, tlsSeen},
	} {
		if !strings.Contains(c.got, c.want) {
			t.Errorf("%s %q lacks %q", c.what, c.got, c.want)
		}
	}
	// The echoes went through echod, not a shortcut in the page. (The
	// goroutine echo counts a message once its write returns, which can be
	// a moment after the page has it.)
	want := uint64(len(text) + 100000)
	if !testkit.Eventually(10*time.Second, func() bool {
		s := h.Stats()
		return s.Messages == 2 && s.MessageBytes == want
	}) {
		s := h.Stats()
		t.Errorf("echod echoed %d messages of %d bytes, want 2 of %d", s.Messages, s.MessageBytes, want)
	}

	if out := os.Getenv("ECHOD_SCREENSHOT"); out != "" && scheme == "ws://" {
		err := chromedp.Do(ctx,
			chromedp.SetValue(`#msg`, "Hello, echod!"),
			chromedp.Click(`#send`),
			chromedp.SetValue(`#count`, "1024"),
			chromedp.Click(`#sendbin`),
			chromedp.WaitVisible(`#log li:nth-child(4)[data-status=ok]`),
			chromedp.WaitVisible(`#log li:first-child[data-status=ok]`),
		)
		if err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Close from the page: the state shows the code and the reason.
	err = chromedp.Do(ctx, chromedp.Click(`#connect`), chromedp.WaitVisible(`#statebox.bad`))
	if err != nil {
		t.Fatal(err)
	}
	if state, _ := chromedp.Run(ctx, chromedp.Text(`#state`)); state != "closed: 1000 closed from the page" {
		t.Errorf("state after closing: %q", state)
	}
}
