package tlspsk

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// Cipher suite identifiers (RFC 4279, RFC 5487, RFC 7905).
const (
	TLS_PSK_WITH_AES_128_CBC_SHA          uint16 = 0x008C
	TLS_PSK_WITH_AES_128_GCM_SHA256       uint16 = 0x00A8
	TLS_PSK_WITH_AES_256_GCM_SHA384       uint16 = 0x00A9
	TLS_PSK_WITH_AES_256_CBC_SHA384       uint16 = 0x00AF
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 uint16 = 0xCCAB

	// scsvRenegotiation is TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3),
	// which OpenSSL clients send instead of the extension.
	scsvRenegotiation uint16 = 0x00FF
)

// cipherSuite is one row of the suite table: lengths and constructors, so a
// new suite is a new row (crypto/tls cipher_suites.go).
type cipherSuite struct {
	id   uint16
	name string
	// keyLen is the encryption key, macLen the HMAC key (0 for AEAD), ivLen
	// the fixed IV taken from the key block (0 for CBC, whose IVs are
	// explicit per record).
	keyLen, macLen, ivLen int
	// prf is the hash of the TLS 1.2 PRF and of the Finished transcript.
	prf crypto.Hash
	// aead or cbc builds the record protection for one direction.
	aead func(key, fixedIV []byte) recordCipher
	cbc  func(key, macKey []byte) recordCipher
}

var cipherSuites = []*cipherSuite{
	{TLS_PSK_WITH_AES_256_GCM_SHA384, "TLS_PSK_WITH_AES_256_GCM_SHA384", 32, 0, 4, crypto.SHA384, newGCM, nil},
	{TLS_PSK_WITH_AES_128_GCM_SHA256, "TLS_PSK_WITH_AES_128_GCM_SHA256", 16, 0, 4, crypto.SHA256, newGCM, nil},
	{TLS_PSK_WITH_AES_256_CBC_SHA384, "TLS_PSK_WITH_AES_256_CBC_SHA384", 32, 48, 0, crypto.SHA384, nil, newCBC(sha512.New384)},
	{TLS_PSK_WITH_AES_128_CBC_SHA, "TLS_PSK_WITH_AES_128_CBC_SHA", 16, 20, 0, crypto.SHA256, nil, newCBC(sha1.New)},
	{TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", 32, 0, 12, crypto.SHA256, newChaCha20Poly1305, nil},
}

func suiteByID(id uint16) *cipherSuite {
	for _, s := range cipherSuites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// CipherSuiteName returns the IANA name of a suite tlspsk implements, or a
// hex form for any other value.
func CipherSuiteName(id uint16) string {
	if s := suiteByID(id); s != nil {
		return s.name
	}
	return fmt.Sprintf("0x%04X", id)
}

// CipherSuites returns the identifiers of every suite tlspsk implements.
func CipherSuites() []uint16 {
	ids := make([]uint16, len(cipherSuites))
	for i, s := range cipherSuites {
		ids[i] = s.id
	}
	return ids
}

// keyBlockLen is the key_block length RFC 5246 §6.3 asks the PRF for.
func (s *cipherSuite) keyBlockLen() int { return 2 * (s.macLen + s.keyLen + s.ivLen) }

// prfHash returns a constructor of the PRF hash.
func (s *cipherSuite) prfHash() func() hash.Hash {
	if s.prf == crypto.SHA384 {
		return sha512.New384
	}
	return sha256.New
}

// newCiphers splits the key block (client MAC, server MAC, client key,
// server key, client IV, server IV; RFC 5246 §6.3) into the two directions.
func (s *cipherSuite) newCiphers(keyBlock []byte) (client, server recordCipher) {
	kb := keyBlock
	take := func(n int) []byte { b := kb[:n:n]; kb = kb[n:]; return b }
	cMAC, sMAC := take(s.macLen), take(s.macLen)
	cKey, sKey := take(s.keyLen), take(s.keyLen)
	cIV, sIV := take(s.ivLen), take(s.ivLen)
	if s.aead != nil {
		return s.aead(cKey, cIV), s.aead(sKey, sIV)
	}
	return s.cbc(cKey, cMAC), s.cbc(sKey, sMAC)
}

func newGCM(key, fixedIV []byte) recordCipher {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("tlspsk: bad AES key length from the suite table: " + err.Error())
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("tlspsk: " + err.Error())
	}
	c := &aeadCipher{aead: aead, explicit: true}
	copy(c.nonce[:4], fixedIV)
	return c
}

func newChaCha20Poly1305(key, fixedIV []byte) recordCipher {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		panic("tlspsk: bad ChaCha20 key length from the suite table: " + err.Error())
	}
	c := &aeadCipher{aead: aead}
	copy(c.fixedIV[:], fixedIV)
	return c
}

func newCBC(h func() hash.Hash) func(key, macKey []byte) recordCipher {
	return func(key, macKey []byte) recordCipher {
		block, err := aes.NewCipher(key)
		if err != nil {
			panic("tlspsk: bad AES key length from the suite table: " + err.Error())
		}
		return newCBCCipher(block, hmac.New(h, macKey))
	}
}
