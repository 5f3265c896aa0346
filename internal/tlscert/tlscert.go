// Package tlscert serves a TLS certificate loaded from a certificate file and
// a key file, and reloads it on demand. A long-running server picks up a
// renewed certificate without a restart and without dropping a connection.
package tlscert

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// Reloader holds the certificate of a pair of PEM files. Its GetCertificate
// method goes into tls.Config, so each handshake uses whatever certificate
// was loaded last; handshakes already done keep theirs.
type Reloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// Load reads certFile and keyFile and returns a Reloader serving them.
func Load(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again. On failure, such as a certificate renewed
// but its key not yet written, the certificate loaded before stays in use.
func (r *Reloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&cert)
	return nil
}

// GetCertificate returns the certificate loaded last, for
// tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Config returns a server configuration that serves the certificate loaded
// last, and TLS 1.2 or later.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		GetCertificate: r.GetCertificate,
		MinVersion:     tls.VersionTLS12,
	}
}
