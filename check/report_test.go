package check

import (
	"strings"
	"testing"
)

func TestSummaryCountsInWords(t *testing.T) {
	tests := []struct {
		rep  Report
		want string
	}{
		{Report{Addr: "h:1", Results: []Result{{Status: Pass}}},
			"PASS: 1 check passed against h:1 (0s)"},
		{Report{Addr: "h:1", UDPAddr: "h:1", Results: []Result{{Status: Pass}, {Status: Pass}, {Status: Note}, {Status: Skip}}},
			"PASS: 2 checks passed against h:1, 1 note, 1 skipped (0s)"},
		{Report{Addr: "h:1", TLS: true, Results: []Result{{Status: Fail}, {Status: Skip}, {Status: Skip}}},
			"FAIL: 1 of 1 check failed against tls://h:1, 2 skipped (0s); " + readingFailures},
		{Report{UDPAddr: "h:2", Results: []Result{{Status: Fail}, {Status: Pass}, {Status: Note}, {Status: Note}}},
			"FAIL: 1 of 2 checks failed against UDP h:2, 2 notes (0s); " + readingFailures},
		{Report{Addr: "h:1", UDPAddr: "h:2", Results: []Result{{Status: Pass}}},
			"PASS: 1 check passed against h:1 and UDP h:2 (0s)"},
	}
	for _, tt := range tests {
		if got := tt.rep.Summary(); got != tt.want {
			t.Errorf("Summary() = %q, want %q", got, tt.want)
		}
	}
}

func TestProtohackersLog(t *testing.T) {
	c := ProtohackersChecks()[4]
	var b strings.Builder
	r := Result{Name: c.Name, Status: Fail, Reason: "it broke", Dump: "  got  ..."}
	if err := r.WriteProtohackersLog(&b, 4, c); err != nil {
		t.Fatal(err)
	}
	want := "[4clients.test] NOTE:" + c.Doc + "\n[4clients.test] FAIL:it broke\n  got  ...\n"
	if b.String() != want {
		t.Errorf("log:\n%s\nwant\n%s", b.String(), want)
	}
}
