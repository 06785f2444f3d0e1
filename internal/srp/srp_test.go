package srp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"testing"
)

// caseJSON maps the vector keys, some of which differ only in case.
type caseJSON struct {
	Name        string `json:"name"`
	Username    string `json:"username"`
	Password    string `json:"password"`
	Salt        string `json:"salt"`
	Priva       string `json:"a"`
	Privb       string `json:"b"`
	K0          string `json:"k"`
	X           string `json:"x"`
	V           string `json:"v"`
	PubA        string `json:"A"`
	PubB        string `json:"B"`
	U           string `json:"u"`
	S           string `json:"S"`
	K           string `json:"K"`
	M1          string `json:"M1"`
	M2          string `json:"M2"`
	AMinimalLen int    `json:"A_minimal_len"`
	SMinimalLen int    `json:"S_minimal_len"`
	AltK        string `json:"alt_K_padded_S"`
	AltM2       string `json:"alt_M2_padded_A"`
	AltM1       string `json:"alt_M1_padded_AB"`
}

type vectorFile struct {
	N       string     `json:"N"`
	G       string     `json:"g"`
	HNXorHg string     `json:"H_N_xor_H_g"`
	Cases   []caseJSON `json:"cases"`
}

// json.Unmarshal matches keys case-insensitively, which would mix "a"/"A"
// and "k"/"K"; decode each case through a map instead.
func loadVectors(t testing.TB) vectorFile {
	t.Helper()
	raw, err := os.ReadFile("testdata/srp.json")
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		N       string           `json:"N"`
		G       string           `json:"g"`
		HNXorHg string           `json:"H_N_xor_H_g"`
		Cases   []map[string]any `json:"cases"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	f := vectorFile{N: top.N, G: top.G, HNXorHg: top.HNXorHg}
	for _, m := range top.Cases {
		s := func(k string) string { v, _ := m[k].(string); return v }
		n := func(k string) int { v, _ := m[k].(float64); return int(v) }
		f.Cases = append(f.Cases, caseJSON{
			Name: s("name"), Username: s("username"), Password: s("password"), Salt: s("salt"),
			Priva: s("a"), Privb: s("b"), K0: s("k"), X: s("x"), V: s("v"), PubA: s("A"), PubB: s("B"),
			U: s("u"), S: s("S"), K: s("K"), M1: s("M1"), M2: s("M2"),
			AMinimalLen: n("A_minimal_len"), SMinimalLen: n("S_minimal_len"),
			AltK: s("alt_K_padded_S"), AltM2: s("alt_M2_padded_A"), AltM1: s("alt_M1_padded_AB"),
		})
	}
	if len(f.Cases) != 4 {
		t.Fatalf("got %d cases, want 4", len(f.Cases))
	}
	return f
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGroupConstants(t *testing.T) {
	f := loadVectors(t)
	if got := hex.EncodeToString(N()); got != f.N {
		t.Errorf("N: got %s, want %s", got, f.N)
	}
	if f.G != "05" {
		t.Errorf("vector g = %s", f.G)
	}
	if got := hex.EncodeToString(HNXorHg()); got != f.HNXorHg {
		t.Errorf("H(N) xor H(g): got %s, want %s", got, f.HNXorHg)
	}
	for _, c := range f.Cases {
		if got := hex.EncodeToString(Multiplier()); got != c.K0 {
			t.Errorf("k: got %s, want %s", got, c.K0)
		}
	}
}

func TestVectors(t *testing.T) {
	for _, c := range loadVectors(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			user, pass, salt := []byte(c.Username), []byte(c.Password), unhex(t, c.Salt)
			if got := privateX(user, pass, salt); got.Cmp(new(big.Int).SetBytes(unhex(t, c.X))) != 0 {
				t.Errorf("x: got %x, want %s", got, c.X)
			}
			if got := hex.EncodeToString(Verifier(user, pass, salt)); got != c.V {
				t.Errorf("v: got %s, want %s", got, c.V)
			}

			srv := NewServer(user, pass, salt, unhex(t, c.Privb))
			if got := hex.EncodeToString(srv.PublicB()); got != c.PubB {
				t.Errorf("B: got %s, want %s", got, c.PubB)
			}
			if srv.Ambiguous() {
				t.Errorf("vector B has a zero top byte")
			}

			cl, err := NewClient(user, pass, salt, srv.PublicB(), unhex(t, c.Priva))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(cl.PublicA()); got != c.PubA {
				t.Errorf("A: got %s, want %s", got, c.PubA)
			}
			if got := len(cl.pubA.Bytes()); got != c.AMinimalLen {
				t.Errorf("len(MIN(A)): got %d, want %d", got, c.AMinimalLen)
			}
			if got := hex.EncodeToString(pad(scramble(cl.pubA, srv.B))); got[len(got)-128:] != c.U {
				t.Errorf("u: got %s, want %s", got, c.U)
			}
			if got := hex.EncodeToString(pad(cl.secret)); got != c.S {
				t.Errorf("S: got %s, want %s", got, c.S)
			}
			if got := len(cl.secret.Bytes()); got != c.SMinimalLen {
				t.Errorf("len(MIN(S)): got %d, want %d", got, c.SMinimalLen)
			}
			if got := hex.EncodeToString(cl.SessionKey()); got != c.K {
				t.Errorf("K: got %s, want %s", got, c.K)
			}
			if got := hex.EncodeToString(cl.Proof()); got != c.M1 {
				t.Errorf("M1: got %s, want %s", got, c.M1)
			}
			wantAmbiguous := c.AMinimalLen < Size || c.SMinimalLen < Size
			if cl.Ambiguous() != wantAmbiguous {
				t.Errorf("Ambiguous: got %v, want %v", cl.Ambiguous(), wantAmbiguous)
			}

			m2, K, err := srv.Verify(cl.PublicA(), cl.Proof())
			if err != nil {
				t.Fatalf("server Verify: %v", err)
			}
			if hex.EncodeToString(m2) != c.M2 || hex.EncodeToString(K) != c.K {
				t.Errorf("server: M2 %x K %x; want %s %s", m2, K, c.M2, c.K)
			}
			if !cl.VerifyServerProof(unhex(t, c.M2)) {
				t.Error("client rejects the vector M2")
			}
			if c.AltM2 != c.M2 && cl.VerifyServerProof(unhex(t, c.AltM2)) {
				t.Error("client accepts the padded-A M2")
			}

			// A sent in minimal form (pymobiledevice3 may send 383 bytes).
			if _, _, err := srv.Verify(cl.pubA.Bytes(), cl.Proof()); err != nil {
				t.Errorf("server rejects minimal A: %v", err)
			}
		})
	}
}

// TestServerToleratesOtherConventions feeds the server the proofs the
// vectors give for the other padding conventions.
func TestServerToleratesOtherConventions(t *testing.T) {
	for _, c := range loadVectors(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			user, pass, salt := []byte(c.Username), []byte(c.Password), unhex(t, c.Salt)
			srv := NewServer(user, pass, salt, unhex(t, c.Privb))
			A := unhex(t, c.PubA)

			// appium: K = H(PAD(S)), M1 otherwise standard.
			if c.AltK != c.K {
				aK := unhex(t, c.AltK)
				a := new(big.Int).SetBytes(A)
				m1 := clientProof(user, salt, a, srv.B, aK, convention{padS: true})
				_, K, err := srv.Verify(A, m1)
				if err != nil || !bytes.Equal(K, aK) {
					t.Errorf("padded-S host: err %v, K %x, want %s", err, K, c.AltK)
				}
			}
			// HomeKitADK: M1 over PAD(A), PAD(B); M2 over PAD(A).
			if c.AltM1 != c.M1 {
				m2, _, err := srv.Verify(A, unhex(t, c.AltM1))
				if err != nil {
					t.Fatalf("padded-AB M1 rejected: %v", err)
				}
				// The host padded A in M1, so it expects PAD(A) in M2 too.
				want := hash(A, unhex(t, c.AltM1), unhex(t, c.K))
				if !bytes.Equal(m2, want) {
					t.Errorf("M2: got %x, want %x", m2, want)
				}
			}
			// alt_M2_padded_A is H(PAD(A) ‖ M1 ‖ K) over the standard M1.
			a := new(big.Int).SetBytes(A)
			if got := hex.EncodeToString(serverProof(a, unhex(t, c.M1), unhex(t, c.K), convention{padAB: true})); got != c.AltM2 {
				t.Errorf("padded-A M2: got %s, want %s", got, c.AltM2)
			}
			if got := hex.EncodeToString(clientProof(user, salt, a, srv.B, unhex(t, c.K), convention{padAB: true})); got != c.AltM1 {
				t.Errorf("padded-AB M1: got %s, want %s", got, c.AltM1)
			}
		})
	}
}

func TestServerRejects(t *testing.T) {
	c := loadVectors(t).Cases[0]
	user, salt := []byte(c.Username), unhex(t, c.Salt)
	srv := NewServer(user, []byte("000000"), salt, unhex(t, c.Privb))
	cl, err := NewClient(user, []byte("999999"), salt, srv.PublicB(), unhex(t, c.Priva))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.Verify(cl.PublicA(), cl.Proof()); !errors.Is(err, ErrBadProof) {
		t.Errorf("wrong password: got %v, want ErrBadProof", err)
	}
	tests := []struct {
		name string
		A    []byte
		want error
	}{
		{"zero", make([]byte, Size), ErrBadPublic},
		{"N", N(), ErrBadPublic},
		{"empty", nil, ErrBadPublic},
		{"too long", make([]byte, Size+1), ErrBadSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := srv.Verify(tt.A, make([]byte, 64)); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if _, err := NewClient(user, []byte("000000"), salt, tt.A, unhex(t, c.Priva)); !errors.Is(err, tt.want) {
				t.Errorf("client with this B: got %v, want %v", err, tt.want)
			}
		})
	}
}

func BenchmarkExchange(b *testing.B) {
	a := bytes.Repeat([]byte{7}, 32)
	bb := bytes.Repeat([]byte{9}, 32)
	salt := make([]byte, 16)
	for b.Loop() {
		srv := NewServer([]byte("Pair-Setup"), []byte("000000"), salt, bb)
		cl, err := NewClient([]byte("Pair-Setup"), []byte("000000"), salt, srv.PublicB(), a)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := srv.Verify(cl.PublicA(), cl.Proof()); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzVerify feeds arbitrary A and M1 to the server and arbitrary B to the
// client: errors, never panics; nothing but the right proof verifies.
func FuzzVerify(f *testing.F) {
	c := loadVectors(f).Cases[0]
	f.Add(unhex(f, c.PubA), unhex(f, c.M1))
	f.Add([]byte{}, []byte{})
	f.Add(N(), make([]byte, 64))
	salt := unhex(f, c.Salt)
	srv := NewServer([]byte(c.Username), []byte(c.Password), salt, unhex(f, c.Privb))
	f.Fuzz(func(t *testing.T, a, m1 []byte) {
		if m2, k, err := srv.Verify(a, m1); err == nil {
			if len(m2) != 64 || len(k) != 64 {
				t.Fatalf("M2 %d, K %d bytes", len(m2), len(k))
			}
			if !bytes.Equal(a, unhex(t, c.PubA)) && !bytes.Equal(new(big.Int).SetBytes(a).Bytes(), new(big.Int).SetBytes(unhex(t, c.PubA)).Bytes()) {
				t.Fatalf("accepted a proof for a foreign A %x", a)
			}
		}
		if cl, err := NewClient([]byte(c.Username), []byte(c.Password), salt, a, unhex(t, c.Priva)); err == nil {
			if len(cl.PublicA()) != Size || len(cl.Proof()) != 64 || cl.VerifyServerProof(m1) && len(m1) != 64 {
				t.Fatal("client values of the wrong size")
			}
		}
	})
}
