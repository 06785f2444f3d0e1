package pairing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

type verifySession struct {
	HostPub     string `json:"host_x25519_public"`
	DevicePub   string `json:"device_x25519_public"`
	Shared      string `json:"shared_secret"`
	PVKey       string `json:"pair_verify_key"`
	M1          string `json:"m1_tlv"`
	M2          string `json:"m2_tlv"`
	M2Inner     string `json:"m2_inner_tlv"`
	M3          string `json:"m3_tlv"`
	M3Inner     string `json:"m3_inner_tlv"`
	M4          string `json:"m4_tlv"`
	HostID      string `json:"m3_host_identifier"`
	Result      string `json:"result"`
	HostSig     string `json:"m3_host_signature"`
	DeviceSig   string `json:"m2_device_signature"`
	DeviceEncM2 string `json:"m2_encrypted_data"`
}

type encryptedExchange struct {
	Secret    string `json:"session_secret"`
	ClientKey string `json:"client_key"`
	ServerKey string `json:"server_key"`
	ReqPlain  string `json:"request_plaintext"`
	ReqCT     string `json:"request_ciphertext"`
	RespPlain string `json:"response_plaintext"`
	RespCT    string `json:"response_ciphertext"`
}

type verifyFile struct {
	S1     verifySession     `json:"session1_unknown_host"`
	S2     verifySession     `json:"session2_known_host"`
	Listen encryptedExchange `json:"session2_create_listener"`
	Keys   struct {
		Client string `json:"client_key_ClientEncrypt_main"`
		Server string `json:"server_key_ServerEncrypt_main"`
	} `json:"session2_main_keys"`
	PSK string `json:"tls_psk_for_tcp_tunnel"`
}

// TestVerifyTranscript runs both pair-verify sessions of pair_verify.json
// through the create/consume functions of both roles, with the vectors'
// fixed keys, and compares every message and intermediate value.
func TestVerifyTranscript(t *testing.T) {
	var f verifyFile
	readJSONFile(t, "pair_verify.json", &f)
	hostKey := ed25519.NewKeyFromSeed(vecHostSeed)
	zeroKey := ed25519.NewKeyFromSeed(make([]byte, 32))
	devKey := ed25519.NewKeyFromSeed(vecDeviceSeed)
	known := func(id string) (ed25519.PublicKey, bool) {
		if id == vecHostID {
			return hostKey.Public().(ed25519.PublicKey), true
		}
		return nil, false
	}
	tests := []struct {
		name         string
		s            verifySession
		hostX, devX  []byte
		signWith     ed25519.PrivateKey
		wantVerified bool
	}{
		{"session1 unknown host", f.S1, vecHostX1, vecDeviceX1, zeroKey, false},
		{"session2 known host", f.S2, vecHostX2, vecDeviceX2, hostKey, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := newVerifyHost(bytes.NewReader(tt.hostX))
			if err != nil {
				t.Fatal(err)
			}
			m1 := h.createM1()
			eqHex(t, "M1", m1, tt.s.M1)

			hostEph, err := consumeVerifyM1(m1)
			if err != nil {
				t.Fatal(err)
			}
			d, err := newVerifyDevice(bytes.NewReader(tt.devX), hostEph)
			if err != nil {
				t.Fatal(err)
			}
			eqHex(t, "shared (device)", d.shared, tt.s.Shared)
			eqHex(t, "pair-verify key", d.key, tt.s.PVKey)
			m2 := d.createM2(vecDeviceID, devKey)
			eqHex(t, "M2", m2, tt.s.M2)

			if err := h.consumeM2(m2); err != nil {
				t.Fatal(err)
			}
			eqHex(t, "shared (host)", h.shared, tt.s.Shared)
			m3 := h.createM3(vecHostID, tt.signWith)
			eqHex(t, "M3", m3, tt.s.M3)

			id, err := d.consumeM3(m3, known)
			var m4 []byte
			if tt.wantVerified {
				if err != nil || id != vecHostID {
					t.Fatalf("device: %q, %v", id, err)
				}
				m4 = createVerifyM4(0)
			} else {
				if !errors.Is(err, ErrAuthentication) {
					t.Fatalf("device: got %v, want ErrAuthentication", err)
				}
				m4 = createVerifyM4(CodeAuthentication)
			}
			eqHex(t, "M4", m4, tt.s.M4)
			err = consumeVerifyM4(m4)
			var de *DeviceError
			if tt.wantVerified != (err == nil) || (!tt.wantVerified && (!errors.As(err, &de) || de.Code != CodeAuthentication)) {
				t.Errorf("host M4: %v", err)
			}
		})
	}
	ck, sk := mainKeys(unhex(t, f.S2.Shared))
	eqHex(t, "client key", ck, f.Keys.Client)
	eqHex(t, "server key", sk, f.Keys.Server)
	eqHex(t, "PSK", unhex(t, f.S2.Shared), f.PSK)
	checkExchange(t, "createListener", f.Listen, reqCreateListener)
}

// checkExchange opens the vector's request and response with our channel
// (both roles) and reseals the vector plaintexts.
func checkExchange(t *testing.T, what string, x encryptedExchange, name string) {
	t.Helper()
	secret := unhex(t, x.Secret)
	ck, sk := mainKeys(secret)
	eqHex(t, what+" client key", ck, x.ClientKey)
	eqHex(t, what+" server key", sk, x.ServerKey)

	host, dev := newChannel(secret), newChannel(secret)
	eqHex(t, what+" request", host.sealRequest([]byte(x.ReqPlain)), x.ReqCT)
	pt, err := dev.openRequest(unhex(t, x.ReqCT))
	if err != nil || string(pt) != x.ReqPlain {
		t.Fatalf("%s: device open: %v", what, err)
	}
	gotName, _, err := parseRequest(pt)
	if err != nil || gotName != name {
		t.Errorf("%s: parseRequest: %q, %v", what, gotName, err)
	}
	eqHex(t, what+" response", dev.sealResponse([]byte(x.RespPlain)), x.RespCT)
	pt, err = host.openResponse(unhex(t, x.RespCT))
	if err != nil || string(pt) != x.RespPlain {
		t.Fatalf("%s: host open: %v", what, err)
	}
	if _, err := parseResponse(pt, name); err != nil {
		t.Errorf("%s: parseResponse: %v", what, err)
	}
	if host.c != 1 || dev.c != 1 {
		t.Errorf("%s: counters %d/%d after one exchange, want 1", what, host.c, dev.c)
	}
}

type setupFile struct {
	Messages struct {
		M1, M2, M3, M4, M5, M6 string
		K                      string `json:"K"`
		SetupKey               string `json:"setup_encrypt_key"`
		ControllerX            string `json:"controller_sign_x"`
		AccessoryX             string `json:"accessory_sign_x"`
		M5Inner                string `json:"m5_inner_tlv"`
		M6Inner                string `json:"m6_inner_tlv"`
		HostInfo               string `json:"m5_host_info_opack"`
		DeviceInfo             string `json:"m6_device_info_opack"`
		HostLTPK               string `json:"m5_host_ltpk"`
		DeviceLTPK             string `json:"device_ltpk"`
	} `json:"messages"`
	Unlock encryptedExchange `json:"create_remote_unlock_key"`
	Record struct {
		XML           string `json:"xml"`
		UnlockHostKey string `json:"remote_unlock_host_key"`
	} `json:"resulting_pymobiledevice3_pair_record"`
}

func loadSetupFile(t *testing.T) setupFile {
	var f setupFile
	readJSONFile(t, "pair_setup.json", &f)
	// The mN_tlv keys do not follow Go's field-name matching.
	var raw struct {
		Messages map[string]any `json:"messages"`
	}
	readJSONFile(t, "pair_setup.json", &raw)
	get := func(k string) string { s, _ := raw.Messages[k].(string); return s }
	m := &f.Messages
	m.M1, m.M2, m.M3, m.M4, m.M5, m.M6 = get("m1_tlv"), get("m2_tlv"), get("m3_tlv"), get("m4_tlv"), get("m5_tlv"), get("m6_tlv")
	m.K = get("K")
	if m.M1 == "" || m.M6 == "" || m.K == "" {
		t.Fatal("pair_setup.json: messages missing")
	}
	return f
}

// TestSetupTranscript runs pair-setup M1–M6 of pair_setup.json through both
// roles with the fixed SRP values and keys.
func TestSetupTranscript(t *testing.T) {
	f := loadSetupFile(t)
	v := f.Messages

	m1 := createSetupM1()
	eqHex(t, "M1", m1, v.M1)
	if err := consumeSetupM1(m1); err != nil {
		t.Fatal(err)
	}
	d, err := newSetupDevice(bytes.NewReader(append(append([]byte{}, vecSalt...), vecSRPb...)), trustPassword)
	if err != nil {
		t.Fatal(err)
	}
	m2 := d.createM2()
	eqHex(t, "M2", m2, v.M2)

	salt, pubB, err := consumeSetupM2(m2)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newSetupHost(bytes.NewReader(vecSRPa), trustPassword, salt, pubB)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "K (host)", h.k, v.K)
	eqHex(t, "setup key", h.key, v.SetupKey)
	eqHex(t, "controller sign x", derive(h.k, labelControllerSign), v.ControllerX)
	eqHex(t, "accessory sign x", derive(h.k, labelAccessorySign), v.AccessoryX)
	m3 := h.createM3()
	eqHex(t, "M3", m3, v.M3)

	if err := d.consumeM3(m3); err != nil {
		t.Fatal(err)
	}
	eqHex(t, "K (device)", d.k, v.K)
	m4 := d.createM4()
	eqHex(t, "M4", m4, v.M4)
	if err := h.consumeM4(m4); err != nil {
		t.Fatal(err)
	}

	info, err := vecHostInfo.encode()
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "host INFO", info, v.HostInfo)
	hostKey := ed25519.NewKeyFromSeed(vecHostSeed)
	m5 := h.createM5(vecHostID, hostKey, info)
	eqHex(t, "M5", m5, v.M5)
	p, err := d.consumeM5(m5)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "host LTPK", p.ltpk, v.HostLTPK)
	if p.identifier != vecHostID || !bytes.Equal(p.info, info) {
		t.Errorf("device read host %q", p.identifier)
	}

	devInfo, err := vecDevice.encodeInfo()
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "device INFO", devInfo, v.DeviceInfo)
	m6 := d.createM6(vecDeviceID, ed25519.NewKeyFromSeed(vecDeviceSeed), devInfo)
	eqHex(t, "M6", m6, v.M6)
	peer, err := h.consumeM6(m6)
	if err != nil {
		t.Fatal(err)
	}
	pi := peerInfoFrom(peer)
	eqHex(t, "device LTPK", pi.PublicKey, v.DeviceLTPK)
	if !pi.SignatureOK || pi.Identifier != vecDeviceID || pi.UDID != vecDeviceUDID || !bytes.Equal(pi.AltIRK, vecDeviceIRK) || pi.InfoErr != nil {
		t.Errorf("peer info: %+v", pi)
	}
	checkExchange(t, "createRemoteUnlockKey", f.Unlock, reqRemoteUnlockKey)
}

// TestSetupWrongPIN: the device rejects M3 made with another password, and
// the host rejects a forged M2 proof.
func TestSetupWrongPIN(t *testing.T) {
	d, err := newSetupDevice(bytes.NewReader(append(append([]byte{}, vecSalt...), vecSRPb...)), "123456")
	if err != nil {
		t.Fatal(err)
	}
	salt, pubB, _ := consumeSetupM2(d.createM2())
	h, err := newSetupHost(bytes.NewReader(vecSRPa), "654321", salt, pubB)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.consumeM3(h.createM3()); !errors.Is(err, ErrAuthentication) {
		t.Errorf("device: got %v, want ErrAuthentication", err)
	}
	if err := h.consumeM4(errorTLV(stateM4, CodeAuthentication)); !errors.Is(err, ErrAuthentication) {
		t.Errorf("host on ERROR: got %v", err)
	}
	forged := append(errorTLV(stateM4, 0)[:3:3], 0x04, 0x40)
	forged = append(forged, make([]byte, 64)...)
	if err := h.consumeM4(forged); !errors.Is(err, ErrAuthentication) {
		t.Errorf("host on forged proof: got %v", err)
	}
}
