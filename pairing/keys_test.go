package pairing

import (
	"testing"
)

// TestHKDFLabels checks every salt/info pair of the key schedule against
// testdata/hkdf.json, which lists each pair of remotepairing.md §6.1 and
// §4.6 on two inputs.
func TestHKDFLabels(t *testing.T) {
	var f struct {
		Vectors []struct {
			IKM    string  `json:"ikm"`
			Salt   *string `json:"salt"`
			Info   string  `json:"info"`
			Length int     `json:"length"`
			OKM    string  `json:"okm"`
		} `json:"vectors"`
	}
	readJSONFile(t, "hkdf.json", &f)
	ours := []hkdfLabel{labelVerify, labelSetup, labelControllerSign, labelAccessorySign, labelClientMain, labelServerMain}
	covered := map[hkdfLabel]int{}
	for _, v := range f.Vectors {
		salt := ""
		if v.Salt != nil {
			salt = *v.Salt
		}
		var l hkdfLabel
		for _, o := range ours {
			if o.salt == salt && o.info == v.Info {
				l = o
			}
		}
		if l.info == "" {
			t.Errorf("vector salt %q info %q: no such label in keys.go", salt, v.Info)
			continue
		}
		if v.Length != keyLen {
			t.Fatalf("vector length %d, ours %d", v.Length, keyLen)
		}
		covered[l]++
		eqHex(t, l.info, derive(unhex(t, v.IKM), l), v.OKM)
	}
	for _, o := range ours {
		if covered[o] == 0 {
			t.Errorf("label %q has no vector", o.info)
		}
	}
}

// TestNonces checks the label and counter nonces and the AEAD output
// against testdata/chacha20poly1305.json.
func TestNonces(t *testing.T) {
	var f struct {
		Vectors []struct {
			Kind    string `json:"nonce_kind"`
			Label   string `json:"label"`
			Counter *uint64
			Key     string `json:"key"`
			Nonce   string `json:"nonce"`
			Plain   string `json:"plaintext"`
			Out     string `json:"ciphertext_and_tag"`
		} `json:"vectors"`
	}
	readJSONFile(t, "chacha20poly1305.json", &f)
	labels := map[string]bool{nonceVerifyM2: false, nonceVerifyM3: false, nonceSetupM5: false, nonceSetupM6: false}
	counters := 0
	for _, v := range f.Vectors {
		key, pt := unhex(t, v.Key), unhex(t, v.Plain)
		switch v.Kind {
		case "label":
			if _, ok := labels[v.Label]; !ok {
				t.Errorf("vector label %q is not one of ours", v.Label)
				continue
			}
			labels[v.Label] = true
			eqHex(t, v.Label+" nonce", labelNonce(v.Label), v.Nonce)
			eqHex(t, v.Label+" seal", sealLabel(key, v.Label, pt), v.Out)
			if got, err := openLabel(key, v.Label, unhex(t, v.Out)); err != nil || string(got) != string(pt) {
				t.Errorf("%s open: %v", v.Label, err)
			}
		case "counter":
			if v.Counter == nil {
				t.Fatal("counter vector without counter")
			}
			counters++
			c := *v.Counter
			eqHex(t, "counter nonce", counterNonce(c), v.Nonce)
			// The channel seals request c with the client key; use the
			// vector key as both keys through a channel at counter c.
			ch := &channel{client: newAEAD(key), server: newAEAD(key), c: c}
			eqHex(t, "channel seal", ch.sealRequest(pt), v.Out)
			got, err := ch.openResponse(unhex(t, v.Out))
			if err != nil || string(got) != string(pt) || ch.c != c+1 {
				t.Errorf("counter %d: open %v, counter now %d", c, err, ch.c)
			}
		default:
			t.Errorf("unknown nonce kind %q", v.Kind)
		}
	}
	for l, seen := range labels {
		if !seen {
			t.Errorf("label %s has no vector", l)
		}
	}
	if counters < 5 {
		t.Errorf("%d counter vectors, want 5", counters)
	}
}

func TestHostIdentifier(t *testing.T) {
	var f struct {
		IDs []struct {
			Host string `json:"hostname"`
			ID   string `json:"host_identifier"`
		} `json:"host_identifiers"`
	}
	readJSONFile(t, "host_id.json", &f)
	if len(f.IDs) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range f.IDs {
		if got := HostIdentifier(v.Host); got != v.ID {
			t.Errorf("HostIdentifier(%q) = %s, want %s", v.Host, got, v.ID)
		}
	}
}
