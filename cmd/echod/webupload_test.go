package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/echod/echod/internal/tooltest"
	"github.com/echod/echod/web"
)

// bigUpload is larger than the default -http-max-body, and than the
// 256 KiB net/http reads past a handler on its own.
const bigUpload = 10 << 20

// A large upload's echo arrives whole, cut at -http-max-body and marked so,
// and never lost to a reset: the rest of the body is read and discarded.
// Go's client sends Expect: 100-continue as curl does.
func TestServeWebLargeUploadIsEchoedNotReset(t *testing.T) {
	for _, engine := range []string{"goroutine", "epoll"} {
		t.Run(engine, func(t *testing.T) {
			byProto, _ := startServeAll(t, 1, "-engine", engine, "-http-listen", "127.0.0.1:0")
			addr := byProto["http"][0]
			body := bytes.Repeat([]byte("x"), bigUpload)
			for i := range 5 {
				for _, keepAlive := range []bool{true, false} {
					tr := &http.Transport{DisableKeepAlives: !keepAlive, ExpectContinueTimeout: 5 * time.Second}
					req, err := http.NewRequest("POST", "http://"+addr+"/big", bytes.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Expect", "100-continue")
					resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
					if err != nil {
						t.Fatalf("try %d (keep-alive %v): %v", i, keepAlive, err)
					}
					var e web.Request
					err = json.NewDecoder(resp.Body).Decode(&e)
					resp.Body.Close()
					tr.CloseIdleConnections()
					if err != nil {
						t.Fatalf("try %d (keep-alive %v): the echo did not arrive whole: %v", i, keepAlive, err)
					}
					if !e.BodyTruncated || e.BodyBytes != web.DefaultMaxBody {
						t.Fatalf("try %d: echo of %d bytes, truncated %v; want %d bytes marked truncated", i, e.BodyBytes, e.BodyTruncated, web.DefaultMaxBody)
					}
				}
			}
		})
	}
}

// The same with curl, which reported "Connection reset by peer" in 11 of
// 12 tries.
func TestServeWebLargeUploadWithCurl(t *testing.T) {
	curl := tooltest.Require(t, "curl")
	byProto, _ := startServeAll(t, 1, "-http-listen", "127.0.0.1:0")
	addr := byProto["http"][0]
	file := filepath.Join(t.TempDir(), "10MB")
	if err := os.WriteFile(file, bytes.Repeat([]byte("y"), bigUpload), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		args := []string{"-sS", "--max-time", "30", "--data-binary", "@" + file, "http://" + addr + "/big"}
		if i%2 == 1 {
			args = append(args, "-H", "Connection: close")
		}
		out, err := exec.Command(curl, args...).Output()
		if err != nil {
			msg := ""
			if ee, ok := err.(*exec.ExitError); ok {
				msg = string(ee.Stderr)
			}
			t.Fatalf("curl %v: %v %s (got %d bytes)", args, err, msg, len(out))
		}
		var e web.Request
		if err := json.Unmarshal(out, &e); err != nil {
			t.Fatalf("curl try %d: not a whole JSON echo (%d bytes): %v", i, len(out), err)
		}
		if !e.BodyTruncated || e.BodyBytes != web.DefaultMaxBody {
			t.Fatalf("curl try %d: %s", i, fmt.Sprint(e.BodyBytes, e.BodyTruncated))
		}
	}
}
