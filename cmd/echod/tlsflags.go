package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"

	"github.com/echod/echod/internal/target"
)

// tlsFlags are how check and bench talk TLS to a tls:// or wss:// server:
// -ca, -insecure and -sni.
type tlsFlags struct {
	ca, sni  string
	insecure bool
}

func addTLSFlags(fs *flag.FlagSet) *tlsFlags {
	f := &tlsFlags{}
	fs.StringVar(&f.ca, "ca", "", "for tls:// and wss://: verify the server's certificate against the CA certificates in `FILE` (PEM); without it the certificate is not verified")
	fs.BoolVar(&f.insecure, "insecure", false, "for tls:// and wss://: do not verify the server's certificate, and say nothing of it (the default without -ca)")
	fs.StringVar(&f.sni, "sni", "", "for tls:// and wss://: the server `NAME` to send in the TLS hello (SNI) and, with -ca, to verify; default: the address's host")
	return f
}

// config returns the TLS client configuration for tgt, nil when tgt does
// not speak TLS, or a usage error of cmd.
func (f *tlsFlags) config(cmd string, tgt target.Target) (*tls.Config, error) {
	overTLS := tgt.Transport == target.TLS || tgt.Transport == target.WSS
	switch {
	case f.ca != "" && f.insecure:
		return nil, usagef(cmd, "-ca verifies the certificate and -insecure does not: give one of them")
	case !overTLS && f.ca != "":
		return nil, usagef(cmd, "-ca applies to tls:// and wss:// addresses, not %s", tgt)
	case !overTLS && f.insecure:
		return nil, usagef(cmd, "-insecure applies to tls:// and wss:// addresses, not %s", tgt)
	case !overTLS && f.sni != "":
		return nil, usagef(cmd, "-sni applies to tls:// and wss:// addresses, not %s", tgt)
	case !overTLS:
		return nil, nil
	}
	cfg, err := target.ClientTLS{CAFile: f.ca, ServerName: f.sni}.Config(tgt.Host)
	if err != nil {
		return nil, &usageError{cmd: cmd, err: err}
	}
	return cfg, nil
}

// note says on stderr that cfg, for tgt, does not verify the certificate,
// unless -insecure asked for that.
func (f *tlsFlags) note(stderr io.Writer, tgt target.Target, cfg *tls.Config) {
	if cfg != nil && cfg.InsecureSkipVerify && !f.insecure {
		fmt.Fprintf(stderr, "note: not verifying the TLS certificate of %s (give -ca FILE to verify it)\n", tgt.Addr())
	}
}
