package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/echod/echod/internal/tooltest"
)

// TestHTMLReportInChromium opens a report of two runs from disk in
// Debian's chromium: it renders, every chart has lines with points, and the
// page fetches nothing. With ECHOD_REPORT=FILE it checks that report
// instead of making one, and with ECHOD_SCREENSHOT=FILE it saves a
// screenshot of it (docs/bench-report.png).
func TestHTMLReportInChromium(t *testing.T) {
	path := tooltest.Require(t, "chromium")
	report := os.Getenv("ECHOD_REPORT")
	if report == "" {
		report = filepath.Join(t.TempDir(), "report.html")
		writeReport(t, report, twoRuns(t))
	}
	ctx := chromium(t, path, 1280)

	var (
		mu       sync.Mutex
		requests []string
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		if r, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, r.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	url := "file://" + report
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(`svg path.line`)); err != nil {
		t.Fatalf("in chromium: %v", err)
	}
	type drawn struct {
		Chart  string
		Series string
		Points int
		Width  float64
	}
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[[]drawn](`[...document.querySelectorAll("figure.chart path.line")].map(p => ({
		Chart: p.closest("figure").querySelector("figcaption").textContent,
		Series: p.dataset.series,
		Points: (p.getAttribute("d").match(/[ML]/g) || []).length,
		Width: p.getBBox().width,
	}))`))
	if err != nil {
		t.Fatal(err)
	}
	charts, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("figure.chart figcaption")].map(c => c.textContent)`))
	noData, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(".nodata").length`))
	t.Logf("charts %q", charts)
	withData := map[string]bool{}
	for _, l := range lines {
		if l.Points >= 2 && l.Width > 0 {
			withData[l.Chart] = true
		}
	}
	for _, c := range charts {
		if !withData[c] {
			t.Errorf("chart %q has no line with points: %+v", c, lines)
		}
	}
	if os.Getenv("ECHOD_REPORT") == "" {
		// The spectrum, each run's latency over time, throughput, errors,
		// and the server's CPU and memory (one run had -pid).
		if len(charts) != 7 || noData != 0 {
			t.Errorf("%d charts, %d without data; want 7 with", len(charts), noData)
		}
	}
	if os.Getenv("ECHOD_REPORT") == "" {
		rows, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("table.compare tr")].map(r => r.textContent)`))
		if len(rows) != 3 || !strings.Contains(rows[1], "4 connections, -pid") || !strings.Contains(rows[1], "messages/s") {
			t.Errorf("comparison table %q", rows)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range requests {
		if u != url {
			t.Errorf("the report fetched %s", u)
		}
	}

	if out := os.Getenv("ECHOD_SCREENSHOT"); out != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The network listener above sees a fetch when there is one: a page that
// loads an image from loopback.
func TestChromiumSeesFetches(t *testing.T) {
	path := tooltest.Require(t, "chromium")
	page := filepath.Join(t.TempDir(), "fetches.html")
	os.WriteFile(page, []byte(`<!DOCTYPE html><img src="http://127.0.0.1:9/x.png"><p id="p">hi</p>`), 0o644)
	ctx := chromium(t, path, 800)
	seen := make(chan string, 10)
	chromedp.Listen(ctx, func(ev any) {
		if r, ok := ev.(*network.EventRequestWillBeSent); ok {
			select {
			case seen <- r.Request.URL:
			default:
			}
		}
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page), chromedp.WaitVisible(`#p`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-seen:
			if strings.HasPrefix(u, "http://127.0.0.1:9/") {
				return
			}
		case <-deadline:
			t.Fatal("the image fetch was not seen")
		}
	}
}

// chromium starts a headless chromium for the test and returns its context.
func chromium(t *testing.T, path string, width int) context.Context {
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, 1000),
	)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(func() {
		cancel()
		cancelBrowser()
		cancelAlloc()
	})
	return ctx
}

// twoRuns runs two short benchmarks at once, one observing this process
// as its server, long enough for a few seconds in their series.
func twoRuns(t *testing.T) []Labeled {
	addr := serveTCP(t, echo)
	runs := []Labeled{{Label: "4 connections, -pid"}, {Label: "2 connections, depth 8"}}
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i := range runs {
		cfg := smoke(addr, PingPong)
		cfg.Duration = 2500 * time.Millisecond
		if i == 1 {
			cfg.Conns, cfg.Depth, cfg.PID = 2, 8, 0
		}
		wg.Go(func() { runs[i].Result, errs[i] = Run(context.Background(), cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			err = runs[i].Result.Err()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return runs
}

func writeReport(t *testing.T, name string, runs []Labeled) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteHTML(f, runs); err != nil {
		t.Fatal(err)
	}
}
