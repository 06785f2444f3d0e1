package pairing

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha512"
	"encoding/binary"

	"golang.org/x/crypto/chacha20poly1305"
)

// The key schedule. Every HKDF salt/info pair and every nonce label of
// RemotePairing is defined here once and used by both roles
// (remotepairing.md §3.2, §4.6, §4.8, §6.1, §6.2; vectors in
// testdata/hkdf.json and testdata/chacha20poly1305.json).

// hkdfLabel is one salt/info pair. A nil salt is RFC 5869's absent salt.
type hkdfLabel struct {
	salt, info string
}

var (
	// labelVerify keys the encrypted parts of pair-verify V2/V3 from the
	// X25519 shared secret.
	labelVerify = hkdfLabel{"Pair-Verify-Encrypt-Salt", "Pair-Verify-Encrypt-Info"}
	// labelSetup keys the encrypted parts of pair-setup M5/M6 from SRP K.
	labelSetup = hkdfLabel{"Pair-Setup-Encrypt-Salt", "Pair-Setup-Encrypt-Info"}
	// labelControllerSign is the first part of what the host signs in M5.
	labelControllerSign = hkdfLabel{"Pair-Setup-Controller-Sign-Salt", "Pair-Setup-Controller-Sign-Info"}
	// labelAccessorySign is the first part of what the device signs in M6.
	labelAccessorySign = hkdfLabel{"Pair-Setup-Accessory-Sign-Salt", "Pair-Setup-Accessory-Sign-Info"}
	// labelClientMain and labelServerMain key the control channel, host to
	// device and device to host; no salt.
	labelClientMain = hkdfLabel{"", "ClientEncrypt-main"}
	labelServerMain = hkdfLabel{"", "ServerEncrypt-main"}
)

// Nonce labels of the handshake messages: nonce = 00 00 00 00 ‖ label.
const (
	nonceVerifyM2 = "PV-Msg02"
	nonceVerifyM3 = "PV-Msg03"
	nonceSetupM5  = "PS-Msg05"
	nonceSetupM6  = "PS-Msg06"
)

// keyLen is the length of every derived key.
const keyLen = 32

// derive runs HKDF-SHA512 with the label over secret.
func derive(secret []byte, l hkdfLabel) []byte {
	var salt []byte
	if l.salt != "" {
		salt = []byte(l.salt)
	}
	k, err := hkdf.Key(sha512.New, secret, salt, l.info, keyLen)
	if err != nil {
		// Only possible for an output longer than 255*64 bytes.
		panic("pairing: hkdf: " + err.Error())
	}
	return k
}

// labelNonce builds the 12-byte nonce of a handshake message.
func labelNonce(label string) []byte {
	n := make([]byte, chacha20poly1305.NonceSize)
	copy(n[4:], label)
	return n
}

// counterNonce builds the control-channel nonce: the counter little-endian
// first, then four zero bytes (the opposite layout of labelNonce).
func counterNonce(c uint64) []byte {
	n := make([]byte, chacha20poly1305.NonceSize)
	binary.LittleEndian.PutUint64(n, c)
	return n
}

func newAEAD(key []byte) cipher.AEAD {
	a, err := chacha20poly1305.New(key)
	if err != nil {
		// Every key comes from derive and is keyLen bytes.
		panic("pairing: chacha20poly1305: " + err.Error())
	}
	return a
}

// sealLabel encrypts a handshake message's inner TLV.
func sealLabel(key []byte, label string, plaintext []byte) []byte {
	return newAEAD(key).Seal(nil, labelNonce(label), plaintext, nil)
}

// openLabel decrypts a handshake message's inner TLV.
func openLabel(key []byte, label string, ciphertext []byte) ([]byte, error) {
	return newAEAD(key).Open(nil, labelNonce(label), ciphertext, nil)
}

// mainKeys derives the control-channel keys from the session secret (the
// pair-verify shared secret or the SRP K).
func mainKeys(secret []byte) (client, server []byte) {
	return derive(secret, labelClientMain), derive(secret, labelServerMain)
}
