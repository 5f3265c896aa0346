package netpath

import (
	"crypto/tls"
	"time"
)

// TLSInfo is what the TLS handshake settled.
type TLSInfo struct {
	Handshake time.Duration `json:"handshake_ns"`
	Version   string        `json:"version"`
	Cipher    string        `json:"cipher"`
	ALPN      string        `json:"alpn,omitempty"`
	// Verified says the chain was verified against the CAs given; false
	// when none were, and the handshake took any certificate.
	Verified bool   `json:"verified"`
	Chain    []Cert `json:"chain"`
}

// Cert is one certificate of the chain the server sent, its own first.
type Cert struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	DNSNames []string  `json:"dns_names,omitempty"`
}

func tlsInfo(c *tls.Conn, handshake time.Duration, cfg *tls.Config) *TLSInfo {
	st := c.ConnectionState()
	ti := &TLSInfo{
		Handshake: handshake,
		Version:   tls.VersionName(st.Version),
		Cipher:    tls.CipherSuiteName(st.CipherSuite),
		ALPN:      st.NegotiatedProtocol,
		Verified:  cfg != nil && !cfg.InsecureSkipVerify,
	}
	for _, cert := range st.PeerCertificates {
		ti.Chain = append(ti.Chain, Cert{
			Subject:  cert.Subject.String(),
			Issuer:   cert.Issuer.String(),
			NotAfter: cert.NotAfter,
			DNSNames: cert.DNSNames,
		})
	}
	return ti
}
