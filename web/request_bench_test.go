package web

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// BenchmarkRequestEcho measures a keep-alive client's request echoes, each
// a POST of a body of the size named, of text and of bytes JSON escapes
// six to one.
func BenchmarkRequestEcho(b *testing.B) {
	for _, tc := range []struct {
		name string
		fill byte
		size int
	}{
		{"text-100B", 'a', 100},
		{"text-64KiB", 'a', 64 << 10},
		{"control-64KiB", 0x01, 64 << 10},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(&Handler{})
			defer srv.Close()
			client := srv.Client()
			body := bytes.Repeat([]byte{tc.fill}, tc.size)
			b.SetBytes(int64(tc.size))
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Post(srv.URL+"/bench", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || n < int64(tc.size) {
					b.Fatalf("%s, %s bytes", resp.Status, strconv.FormatInt(n, 10))
				}
			}
		})
	}
}
