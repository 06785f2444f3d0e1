package tlspsk

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// tlsPSKVector is testdata/tls_psk.json (tlspsk.md §4), the key schedule
// for 0x00A9 that go-ios's PRF reproduces.
type tlsPSKVector struct {
	CipherSuite          string `json:"cipher_suite"`
	PSK                  string `json:"psk"`
	ClientRandom         string `json:"client_random"`
	ServerRandom         string `json:"server_random"`
	PremasterSecret      string `json:"premaster_secret"`
	MasterSecret         string `json:"master_secret"`
	KeyBlock             string `json:"key_block_72"`
	ClientWriteKey       string `json:"client_write_key"`
	ServerWriteKey       string `json:"server_write_key"`
	ClientWriteIV        string `json:"client_write_iv_fixed"`
	ServerWriteIV        string `json:"server_write_iv_fixed"`
	TranscriptSHA384     string `json:"example_transcript_sha384"`
	ClientFinishedVerify string `json:"client_finished_verify_data"`
	ServerFinishedVerify string `json:"server_finished_verify_data"`
}

func loadVector(t *testing.T) tlsPSKVector {
	t.Helper()
	data, err := os.ReadFile("testdata/tls_psk.json")
	if err != nil {
		t.Fatal(err)
	}
	var v tlsPSKVector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func checkHex(t *testing.T, name string, got []byte, want string) {
	t.Helper()
	if h := hex.EncodeToString(got); h != want {
		t.Errorf("%s: got %s, want %s", name, h, want)
	}
}

func TestKeyScheduleVector(t *testing.T) {
	v := loadVector(t)
	if v.CipherSuite != "0x00A9" {
		t.Fatalf("vector is for %s", v.CipherSuite)
	}
	s := suiteByID(TLS_PSK_WITH_AES_256_GCM_SHA384)
	cr, sr := mustHex(v.ClientRandom), mustHex(v.ServerRandom)

	pms := pskPremaster(mustHex(v.PSK))
	checkHex(t, "premaster", pms, v.PremasterSecret)
	master := masterSecret(s, pms, cr, sr)
	checkHex(t, "master secret", master, v.MasterSecret)
	kb := keyBlock(s, master, cr, sr)
	checkHex(t, "key block", kb, v.KeyBlock)
	checkHex(t, "client write key", kb[0:32], v.ClientWriteKey)
	checkHex(t, "server write key", kb[32:64], v.ServerWriteKey)
	checkHex(t, "client IV", kb[64:68], v.ClientWriteIV)
	checkHex(t, "server IV", kb[68:72], v.ServerWriteIV)

	transcript := []byte("iosmux handshake transcript")
	checkHex(t, "transcript hash", transcriptHash(s, transcript), v.TranscriptSHA384)
	if h := sha512.Sum384(transcript); hex.EncodeToString(h[:]) != v.TranscriptSHA384 {
		t.Errorf("vector transcript hash is not SHA-384 of %q", transcript)
	}
	checkHex(t, "client finished", finishedData(s, master, labelClientFinished, transcript), v.ClientFinishedVerify)
	checkHex(t, "server finished", finishedData(s, master, labelServerFinished, transcript), v.ServerFinishedVerify)

	// The record ciphers built from this key block seal exactly like a plain
	// AES-GCM with the vector's key and nonce IV || seq (RFC 5288 §3).
	client, _ := s.newCiphers(kb)
	const seq = 7
	payload := []byte("CDTunnel\x00\x2a")
	got, err := client.seal(nil, seq, recordTypeApplicationData, payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(mustHex(v.ClientWriteKey))
	gcm, _ := cipher.NewGCM(block)
	nonce := append(mustHex(v.ClientWriteIV), 0, 0, 0, 0, 0, 0, 0, seq)
	ad := []byte{0, 0, 0, 0, 0, 0, 0, seq, recordTypeApplicationData, 3, 3, 0, byte(len(payload))}
	want := gcm.Seal(append([]byte(nil), nonce[4:]...), nonce, payload, ad)
	if !bytes.Equal(got, want) {
		t.Errorf("sealed record\n got % x\nwant % x", got, want)
	}
}

// TestPRFShapes checks the properties every PRF output must have whatever
// the vector: the output is a prefix of a longer output, and the hash
// matters.
func TestPRFShapes(t *testing.T) {
	s384, s256 := suiteByID(TLS_PSK_WITH_AES_256_GCM_SHA384), suiteByID(TLS_PSK_WITH_AES_128_GCM_SHA256)
	long, short := make([]byte, 200), make([]byte, 33)
	prf12(s384.prfHash(), long, []byte("secret"), "label", []byte("seed"))
	prf12(s384.prfHash(), short, []byte("secret"), "label", []byte("seed"))
	if !bytes.Equal(long[:33], short) {
		t.Error("PRF output is not prefix-stable")
	}
	other := make([]byte, 33)
	prf12(s256.prfHash(), other, []byte("secret"), "label", []byte("seed"))
	if bytes.Equal(other, short) {
		t.Error("SHA-256 and SHA-384 PRF agree")
	}
	for _, s := range cipherSuites {
		if got, want := s.keyBlockLen(), 2*(s.macLen+s.keyLen+s.ivLen); got != want || got == 0 {
			t.Errorf("%s: key block %d", s.name, got)
		}
	}
}
