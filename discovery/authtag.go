package discovery

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math/bits"
	"strings"
)

// Recognising a known device from its Wi-Fi advertisement without
// connecting (discovery.md §3.1, §5). Both tags are optimisations: identity
// is still proven by pair-verify or a lockdown session.

// Mobdev2AuthTag is the 8-byte tag an iOS 26.4+ device publishes in its
// _apple-mobdev2._tcp TXT "authTag" for a host: K = HKDF-SHA512(ikm =
// HostID of the pair record, no salt, no info, 32 bytes); tag = first 8
// bytes of HMAC-SHA256(K, identifier TXT value) (jkcoxson/idevice
// src/mdns.rs, after MobileDevice's AMDIsTXTRecordForUDID).
func Mobdev2AuthTag(hostID, identifier string) [8]byte {
	key, err := hkdf.Key(sha512.New, []byte(hostID), nil, "", 32)
	if err != nil {
		// Only an output length above 255·64 fails.
		panic("discovery: hkdf: " + err.Error())
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(identifier))
	var tag [8]byte
	copy(tag[:], mac.Sum(nil))
	return tag
}

// Mobdev2Matches reports whether any of the advertised authTag values (base64,
// surrounding ASCII space ignored) is the tag of hostID for identifier.
func Mobdev2Matches(hostID, identifier string, authTags []string) bool {
	want := Mobdev2AuthTag(hostID, identifier)
	for _, t := range authTags {
		got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(t))
		if err == nil && len(got) == 8 && subtle.ConstantTimeCompare(got, want[:]) == 1 {
			return true
		}
	}
	return false
}

// RemotePairingAuthTag is the base64 "authTag" TXT value of the
// _remotepairing family for an identifier, keyed by the peer's 16-byte
// altIRK (exchanged in pair-setup M5/M6): SipHash-2-4 of the identifier,
// its 8-byte little-endian output's first 6 bytes reversed (pymobiledevice3
// remote/siphash.py compute_auth_tag). That iPhones tag their own
// _remotepairing._tcp advertisement this way is UNCONFIRMED (inferred from
// the host-side advertisement, discovery.md §3.1).
func RemotePairingAuthTag(altIRK []byte, identifier string) (string, error) {
	if len(altIRK) != 16 {
		return "", errors.New("discovery: altIRK must be 16 bytes")
	}
	var out [8]byte
	binary.LittleEndian.PutUint64(out[:], siphash24([16]byte(altIRK), []byte(identifier)))
	var tag [6]byte
	for i := range tag {
		tag[i] = out[5-i]
	}
	return base64.StdEncoding.EncodeToString(tag[:]), nil
}

// siphash24 is SipHash-2-4 (Aumasson & Bernstein) with a 64-bit output.
func siphash24(key [16]byte, msg []byte) uint64 {
	k0 := binary.LittleEndian.Uint64(key[:8])
	k1 := binary.LittleEndian.Uint64(key[8:])
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(msg)
	for len(msg) >= 8 {
		m := binary.LittleEndian.Uint64(msg)
		v3 ^= m
		round()
		round()
		v0 ^= m
		msg = msg[8:]
	}
	last := uint64(n&0xff) << 56
	for i, c := range msg {
		last |= uint64(c) << (8 * i)
	}
	v3 ^= last
	round()
	round()
	v0 ^= last
	v2 ^= 0xff
	for range 4 {
		round()
	}
	return v0 ^ v1 ^ v2 ^ v3
}
