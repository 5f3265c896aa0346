package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// This file renders results for people (one line per check, then a
// summary) and for programs (one JSON object).

// Line returns r as one line: "PASS name (detail)", "FAIL name: reason",
// "NOTE name: note" or "SKIP name: why"; with verbose, passes and failures
// end with how long the check took.
func (r Result) Line(verbose bool) string {
	var line string
	switch r.Status {
	case Pass:
		line = fmt.Sprintf("PASS %s (%s)", r.Name, r.Detail)
	case Fail:
		line = fmt.Sprintf("FAIL %s: %s", r.Name, r.Reason)
	case Note:
		line = fmt.Sprintf("NOTE %s: %s", r.Name, r.Reason)
	default:
		line = fmt.Sprintf("SKIP %s: %s", r.Name, r.Reason)
	}
	if verbose && (r.Status == Pass || r.Status == Fail) {
		line += fmt.Sprintf(" [%v]", r.Duration.Round(time.Millisecond))
	}
	return line
}

// WriteText writes r's line, and below a failure the dump of the bytes
// around the first difference, if there is one. Skipped checks are written
// only with verbose.
func (r Result) WriteText(w io.Writer, verbose bool) error {
	if r.Status == Skip && !verbose {
		return nil
	}
	text := r.Line(verbose) + "\n"
	if r.Dump != "" {
		text += r.Dump + "\n"
	}
	_, err := io.WriteString(w, text)
	return err
}

// Target names what was checked: HOST:PORT, tls://HOST:PORT, UDP HOST:PORT,
// or both; or a WebSocket URL.
func (r Report) Target() string {
	if r.URL != "" {
		return r.URL
	}
	tcp := r.Addr
	if r.TLS {
		tcp = "tls://" + r.Addr
	}
	switch {
	case r.Addr == "":
		return "UDP " + r.UDPAddr
	case r.UDPAddr == "" || (r.UDPAddr == r.Addr && !r.TLS):
		return tcp
	}
	return tcp + " and UDP " + r.UDPAddr
}

// count returns how many results have status s.
func (r Report) count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// readingFailures points a failing run at the pages that explain each
// reason and the bug behind it.
const readingFailures = `each reason and its bug: README "Reading failures", docs/learn.md`

// Summary is the report's last line: PASS or FAIL, the counts, the target
// and how long the run took.
func (r Report) Summary() string {
	var extra []string
	if n := r.count(Note); n > 0 {
		extra = append(extra, count(n, "note"))
	}
	if n := r.count(Skip); n > 0 {
		extra = append(extra, fmt.Sprintf("%d skipped", n))
	}
	note := ""
	if len(extra) > 0 {
		note = ", " + strings.Join(extra, ", ")
	}
	took := r.Duration.Round(10 * time.Millisecond)
	if f := r.Failed(); f > 0 {
		return fmt.Sprintf("FAIL: %d of %s failed against %s%s (%v); %s", f, count(f+r.Passed(), "check"), r.Target(), note, took, readingFailures)
	}
	return fmt.Sprintf("PASS: %s passed against %s%s (%v)", count(r.Passed(), "check"), r.Target(), note, took)
}

// jsonReport is the JSON form of a Report: one object, stable field names.
type jsonReport struct {
	Addr    string       `json:"addr,omitempty"`
	UDPAddr string       `json:"udp_addr,omitempty"`
	TLS     bool         `json:"tls,omitempty"`
	URL     string       `json:"url,omitempty"`
	OK      bool         `json:"ok"`
	Passed  int          `json:"passed"`
	Failed  int          `json:"failed"`
	Skipped int          `json:"skipped"`
	Notes   int          `json:"notes"`
	Seconds float64      `json:"seconds"`
	Checks  []jsonResult `json:"checks"`
}

type jsonResult struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"` // pass, fail, note or skip
	Detail  string  `json:"detail,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Dump    string  `json:"dump,omitempty"`
	Seconds float64 `json:"seconds"`
}

// WriteJSON writes r as one indented JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	out := jsonReport{
		Addr: r.Addr, UDPAddr: r.UDPAddr, TLS: r.TLS, URL: r.URL,
		OK: r.OK(), Passed: r.Passed(), Failed: r.Failed(),
		Skipped: r.count(Skip), Notes: r.count(Note),
		Seconds: r.Duration.Seconds(),
		Checks:  []jsonResult{},
	}
	for _, res := range r.Results {
		out.Checks = append(out.Checks, jsonResult{
			Name: res.Name, Status: string(res.Status), Detail: res.Detail, Reason: res.Reason, Dump: res.Dump,
			Seconds: res.Duration.Seconds(),
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteProtohackersLog writes r, the result of c, in the shape of the
// Protohackers checker's log: "[0simple.test] NOTE:what it checks", then
// "[0simple.test] PASS" or "[0simple.test] FAIL:reason". n numbers the
// check from 0. The shape is a local reconstruction, not the real checker's
// words; its checks are ProtohackersChecks.
func (r Result) WriteProtohackersLog(w io.Writer, n int, c Check) error {
	// protohackers/5-clients is tagged [4clients.test].
	tag := fmt.Sprintf("[%d%s.test]", n, strings.TrimLeft(strings.TrimPrefix(c.Name, "protohackers/"), "0123456789-"))
	text := fmt.Sprintf("%s NOTE:%s\n", tag, c.Doc)
	switch r.Status {
	case Pass:
		text += fmt.Sprintf("%s PASS\n", tag)
	case Fail:
		text += fmt.Sprintf("%s FAIL:%s\n", tag, r.Reason)
		if r.Dump != "" {
			text += r.Dump + "\n"
		}
	default:
		text += fmt.Sprintf("%s NOTE:%s: %s\n", tag, r.Status, r.Reason)
	}
	_, err := io.WriteString(w, text)
	return err
}
