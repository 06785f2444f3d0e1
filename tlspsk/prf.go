package tlspsk

import (
	"crypto/hmac"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io"
	"sync"
)

// Lengths and labels of the TLS 1.2 key schedule (RFC 5246 §6.3, §7.4.9,
// §8.1; RFC 7627 §4).
const (
	masterSecretLen = 48
	finishedLen     = 12

	labelMaster         = "master secret"
	labelExtendedMaster = "extended master secret"
	labelKeyExpansion   = "key expansion"
	labelClientFinished = "client finished"
	labelServerFinished = "server finished"
)

// prf12 fills out with P_hash(secret, label || seed) (RFC 5246 §5).
func prf12(h func() hash.Hash, out, secret []byte, label string, seed []byte) {
	labelSeed := make([]byte, 0, len(label)+len(seed))
	labelSeed = append(append(labelSeed, label...), seed...)
	mac := hmac.New(h, secret)
	mac.Write(labelSeed)
	a := mac.Sum(nil) // A(1)
	for len(out) > 0 {
		mac.Reset()
		mac.Write(a)
		mac.Write(labelSeed)
		out = out[copy(out, mac.Sum(nil)):]
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
}

// pskPremaster is the plain-PSK premaster secret of RFC 4279 §2:
// uint16(len) || zeros(len) || uint16(len) || psk.
func pskPremaster(psk []byte) []byte {
	n := len(psk)
	pms := make([]byte, 2+n+2+n)
	binary.BigEndian.PutUint16(pms, uint16(n))
	binary.BigEndian.PutUint16(pms[2+n:], uint16(n))
	copy(pms[4+n:], psk)
	return pms
}

// masterSecret derives the 48-byte master secret from the randoms.
func masterSecret(s *cipherSuite, pms, clientRandom, serverRandom []byte) []byte {
	seed := append(append([]byte{}, clientRandom...), serverRandom...)
	out := make([]byte, masterSecretLen)
	prf12(s.prfHash(), out, pms, labelMaster, seed)
	return out
}

// extendedMasterSecret derives the RFC 7627 master secret from the session
// hash: the PRF hash of every handshake message up to and including
// ClientKeyExchange.
func extendedMasterSecret(s *cipherSuite, pms, sessionHash []byte) []byte {
	out := make([]byte, masterSecretLen)
	prf12(s.prfHash(), out, pms, labelExtendedMaster, sessionHash)
	return out
}

// keyBlock expands the master secret into the suite's key material; note
// the seed order, server random first (RFC 5246 §6.3).
func keyBlock(s *cipherSuite, master, clientRandom, serverRandom []byte) []byte {
	seed := append(append([]byte{}, serverRandom...), clientRandom...)
	out := make([]byte, s.keyBlockLen())
	prf12(s.prfHash(), out, master, labelKeyExpansion, seed)
	return out
}

// transcriptHash hashes the handshake messages so far with the PRF hash.
func transcriptHash(s *cipherSuite, transcript []byte) []byte {
	h := s.prfHash()()
	h.Write(transcript)
	return h.Sum(nil)
}

// finishedData is verify_data for one side (RFC 5246 §7.4.9).
func finishedData(s *cipherSuite, master []byte, label string, transcript []byte) []byte {
	out := make([]byte, finishedLen)
	prf12(s.prfHash(), out, master, label, transcriptHash(s, transcript))
	return out
}

// keyLogMu serialises key-log lines of all connections, which may share
// one writer through a shared Config (crypto/tls does the same).
var keyLogMu sync.Mutex

// writeKeyLog writes the NSS key-log line for a master secret
// (https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/).
func writeKeyLog(w io.Writer, clientRandom, master []byte) error {
	if w == nil {
		return nil
	}
	keyLogMu.Lock()
	defer keyLogMu.Unlock()
	line := make([]byte, 0, 14+2*len(clientRandom)+1+2*len(master)+1)
	line = append(line, "CLIENT_RANDOM "...)
	line = hex.AppendEncode(line, clientRandom)
	line = append(line, ' ')
	line = hex.AppendEncode(line, master)
	line = append(line, '\n')
	_, err := w.Write(line)
	return err
}
