package tlspsk

import (
	"crypto/rand"
	"errors"
	"io"
	"slices"
)

// VersionTLS12 is the only protocol version tlspsk speaks (tlspsk.md §1).
const VersionTLS12 uint16 = 0x0303

// Older versions, named only to reject them with a clear error.
const (
	versionSSL30 uint16 = 0x0300
	versionTLS10 uint16 = 0x0301
	versionTLS11 uint16 = 0x0302
)

// Config configures a client or a server. A Config may be shared between
// connections once passed to Client or Server and must not be changed after.
type Config struct {
	// PSK is the pre-shared key (for the iPhone tunnel: the 32-byte
	// pair-verify secret, remotepairing.md §7.1). A server with GetPSK set
	// ignores it.
	PSK []byte

	// Identity is the PSK identity a client sends in ClientKeyExchange.
	// Empty for the iPhone tunnel (tlspsk.md §2: the body is exactly 00 00).
	Identity string

	// IdentityHint, on a server, is sent in a ServerKeyExchange; when empty
	// no ServerKeyExchange is sent, as the device does. A client reports the
	// hint it received in ConnectionState and otherwise ignores it.
	IdentityHint string

	// GetPSK, on a server, picks the key for the identity the client sent.
	// Returning an error fails the handshake with unknown_psk_identity.
	// Nil means PSK, whatever the identity.
	GetPSK func(identity string) ([]byte, error)

	// CipherSuites lists the suites in preference order. A client offers
	// exactly these; a server picks the first of its list the client also
	// offered. Nil means DefaultClientSuites / DefaultServerSuites.
	CipherSuites []uint16

	// ExtendedMasterSecret makes a client offer RFC 7627 extended master
	// secret together with an empty renegotiation_info (RFC 5746). It is off
	// by default because the iPhone tunnel's client sends no extensions
	// (tlspsk.md §2), as the references that talk to devices do. A server
	// ignores this field.
	ExtendedMasterSecret bool

	// DisableExtendedMasterSecret stops a server from negotiating extended
	// master secret when a client offers it. By default a server follows
	// RFC 7627 §5.2 and uses it; tlspsk.md §2 suggests a simulated
	// device answer without it, which this field allows.
	DisableExtendedMasterSecret bool

	// MinVersion and MaxVersion exist for symmetry with crypto/tls; the only
	// accepted values are 0 and VersionTLS12.
	MinVersion, MaxVersion uint16

	// Rand supplies the hello random and the CBC record IVs. Nil means
	// crypto/rand.Reader; tests set it to replay recorded transcripts. It
	// must be safe for concurrent use when the Config is shared.
	Rand io.Reader

	// KeyLogWriter, if set, receives one NSS key-log line
	// ("CLIENT_RANDOM <client random> <master secret>", hex) per connection
	// so captures decrypt in Wireshark. It weakens security; debug only.
	KeyLogWriter io.Writer
}

// DefaultClientSuites is the client's offer (tlspsk.md §3.2): the AEAD
// suites first, AES-256-GCM leading (the one suite go-ios offers and the
// first plain-PSK suite of pymobiledevice3's OpenSSL offer), then the CBC
// suites idevice offers, so a device that only has those still agrees. The
// device picks; the order decides only when it honours the client's.
var DefaultClientSuites = []uint16{
	TLS_PSK_WITH_AES_256_GCM_SHA384,
	TLS_PSK_WITH_AES_128_GCM_SHA256,
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
	TLS_PSK_WITH_AES_256_CBC_SHA384,
	TLS_PSK_WITH_AES_128_CBC_SHA,
}

// DefaultServerSuites is a server's preference: the AEAD suites ahead of
// CBC, in the client's order (tlspsk.md §3.3). A simulated device can put
// CBC first (sim's TLSSuites) to stand in for a device that prefers it.
var DefaultServerSuites = []uint16{
	TLS_PSK_WITH_AES_256_GCM_SHA384,
	TLS_PSK_WITH_AES_128_GCM_SHA256,
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
	TLS_PSK_WITH_AES_256_CBC_SHA384,
	TLS_PSK_WITH_AES_128_CBC_SHA,
}

var (
	errNoPSK         = errors.New("tlspsk: config has no PSK")
	errNilConfig     = errors.New("tlspsk: nil config")
	errVersionConfig = errors.New("tlspsk: MinVersion and MaxVersion must be 0 or VersionTLS12")
	errSuiteConfig   = errors.New("tlspsk: CipherSuites lists no suite tlspsk implements")
	errLengthConfig  = errors.New("tlspsk: PSK, Identity and IdentityHint must each be shorter than 64 KiB")
)

// check reports a configuration that cannot work before any byte is sent.
func (c *Config) check(isClient bool) error {
	if c == nil {
		return errNilConfig
	}
	for _, v := range []uint16{c.MinVersion, c.MaxVersion} {
		if v != 0 && v != VersionTLS12 {
			return errVersionConfig
		}
	}
	if len(c.PSK) == 0 && (isClient || c.GetPSK == nil) {
		return errNoPSK
	}
	// Each travels in (or is sized by) a 16-bit length (RFC 4279 §2).
	if len(c.PSK) > 0xffff || len(c.Identity) > 0xffff || len(c.IdentityHint) > 0xffff {
		return errLengthConfig
	}
	if !slices.ContainsFunc(c.suites(isClient), func(id uint16) bool { return suiteByID(id) != nil }) {
		return errSuiteConfig
	}
	return nil
}

func (c *Config) suites(isClient bool) []uint16 {
	switch {
	case c.CipherSuites != nil:
		return c.CipherSuites
	case isClient:
		return DefaultClientSuites
	default:
		return DefaultServerSuites
	}
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

// ConnectionState describes a completed handshake.
type ConnectionState struct {
	Version              uint16 // always VersionTLS12 once HandshakeComplete
	HandshakeComplete    bool
	CipherSuite          uint16 // the suite in use, e.g. TLS_PSK_WITH_AES_256_GCM_SHA384
	ExtendedMasterSecret bool   // RFC 7627 was negotiated
	SecureRenegotiation  bool   // both sides signalled RFC 5746 (renegotiation is still refused)
	Identity             string // the PSK identity the client sent
	IdentityHint         string // the hint the server sent, if any
}
