package web

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// wantJSON is what json.MarshalIndent makes of e with body, the reference
// writeJSON must match byte for byte.
func wantJSON(t testing.TB, e Request, body []byte) []byte {
	t.Helper()
	if e.BodyEncoding == "base64" {
		e.Body = base64.StdEncoding.EncodeToString(body)
	} else {
		e.Body = string(body)
	}
	out, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func checkJSON(t testing.TB, e Request, body []byte) {
	t.Helper()
	want := wantJSON(t, e, body)
	var got bytes.Buffer
	if err := writeJSON(&got, &e, body, int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("writeJSON:\n%s\nwant (json.MarshalIndent):\n%s", got.Bytes(), want)
	}
	if n := jsonSize(&e, body); n != int64(len(want)) {
		t.Fatalf("jsonSize = %d, want %d", n, len(want))
	}
}

func TestWriteJSONIsMarshalIndent(t *testing.T) {
	full := Request{
		Method: "POST", Path: "/a b", URI: "/a%20b?x=<1>&y=2", Protocol: "HTTP/2.0", Host: "h\u2028",
		Query:   map[string][]string{"x": {"<1>"}, "y": {}, "z": nil, "\x01": {"\xff\xfe", "é"}},
		Headers: map[string][]string{"B": {"1"}, "A": {"\"q\"\\", "\t\r\n\b\f\x7f"}},
		Client:  "[::1]:5", XForwardedFor: []string{"a", "b"}, Forwarded: []string{"c"},
		TLS:      &TLS{Version: "TLS 1.3", Cipher: "C", SNI: "s"},
		Hostname: "x&y", BodyEncoding: "text", BodyBytes: 3, BodyTruncated: true, BodyCut: CutMemory,
	}
	for _, tc := range []struct {
		name string
		e    Request
		body []byte
	}{
		{"empty", Request{}, nil},
		{"empty maps", Request{Query: map[string][]string{}, Headers: map[string][]string{}, BodyEncoding: "text"}, nil},
		{"full", full, []byte("a\x01<\u2029\xc3")},
		{"base64", Request{BodyEncoding: "base64", BodyBytes: 4, TLS: &TLS{ALPN: "h2", ClientCertSubject: "CN=x"}}, []byte{0, 1, 0x80, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkJSON(t, tc.e, tc.body) })
	}
}

func FuzzWriteJSON(f *testing.F) {
	f.Add("GET", "/", "k", "v", []byte("hello"), false)
	f.Add("\x00", "\u2028", "<&>", "\xed\xa0\x80", []byte("\x01\xff\"\\"), true)
	f.Fuzz(func(t *testing.T, method, path, key, value string, body []byte, b64 bool) {
		e := Request{
			Method: method, Path: path, URI: path + "?" + key, Host: value,
			Query:   map[string][]string{key: {value, path}},
			Headers: map[string][]string{key: {value}, value: {key}},
			Client:  key, XForwardedFor: strings.Fields(value), Hostname: method,
			BodyEncoding: "text", BodyBytes: len(body),
		}
		if b64 || !utf8.Valid(body) {
			e.BodyEncoding = "base64"
		}
		checkJSON(t, e, body)
	})
}
