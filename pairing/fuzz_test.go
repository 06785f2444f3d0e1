package pairing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// transcriptSeeds returns the recorded RPPairing frames.
func transcriptSeeds(f *testing.F) [][]byte {
	raw, err := os.ReadFile("testdata/rppairing_transcript.json")
	if err != nil {
		f.Fatal(err)
	}
	var tf struct {
		Frames []transcriptFrame `json:"frames"`
	}
	if err := json.Unmarshal(raw, &tf); err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, fr := range tf.Frames {
		out = append(out, unhex(f, fr.Frame))
	}
	return out
}

// FuzzRPPairingFrame decodes one frame down to the typed messages.
func FuzzRPPairingFrame(f *testing.F) {
	for _, s := range transcriptSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		body, _, err := ParseFrame(b)
		if err != nil {
			return
		}
		env, err := decodeEnvelopeJSON(body)
		if err != nil {
			return
		}
		m, err := parseMessage(env)
		if err != nil {
			return
		}
		switch {
		case m.kind == kindEvent && m.name == evPairingData:
			parsePairingData(m.value)
		case m.kind == kindResponse:
			parseHandshakeResponse(m)
		case m.kind == kindRequest:
			parseHandshakeRequest(m)
		case m.kind == kindEvent:
			rejectionDescription(m.value)
		}
		// Re-encoding what was understood must decode to the same message.
		again, err := encodeEnvelopeJSON(m.tree())
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		env2, err := decodeEnvelopeJSON(again)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		m2, err := parseMessage(env2)
		if err != nil || m2.kind != m.kind || m2.name != m.name || m2.seq != m.seq || !bytes.Equal(m2.ciphertext, m.ciphertext) {
			t.Fatalf("round trip: %v -> %v, %v", m, m2, err)
		}
	})
}

// FuzzPairingMessages feeds arbitrary TLV to every consume function, with
// the states of the vectors' sessions.
func FuzzPairingMessages(f *testing.F) {
	hostKey := ed25519.NewKeyFromSeed(vecHostSeed)
	devKey := ed25519.NewKeyFromSeed(vecDeviceSeed)
	vh, _ := newVerifyHost(bytes.NewReader(vecHostX2))
	m1 := vh.createM1()
	vd, _ := newVerifyDevice(bytes.NewReader(vecDeviceX2), vh.hostEph)
	m2 := vd.createM2(vecDeviceID, devKey)
	vh.consumeM2(m2)
	m3 := vh.createM3(vecHostID, hostKey)

	sd, _ := newSetupDevice(bytes.NewReader(cat(vecSalt, vecSRPb)), trustPassword)
	sm2 := sd.createM2()
	salt, pubB, _ := consumeSetupM2(sm2)
	sh, _ := newSetupHost(bytes.NewReader(vecSRPa), trustPassword, salt, pubB)
	sm3 := sh.createM3()
	sd.consumeM3(sm3)
	sm4 := sd.createM4()
	info, _ := vecHostInfo.encode()
	sm5 := sh.createM5(vecHostID, hostKey, info)
	sm6 := sd.createM6(vecDeviceID, devKey, info)

	for i, s := range [][]byte{m1, m2, m3, createVerifyM4(0), createVerifyM4(2), createSetupM1(), sm2, sm3, sm4, sm5, sm6} {
		f.Add(byte(i), s)
	}
	lookup := func(id string) (ed25519.PublicKey, bool) {
		return hostKey.Public().(ed25519.PublicKey), id == vecHostID
	}
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		// Copies, so a consume that succeeds does not change the seeds'
		// states for later inputs.
		vh2, vd2, sh2, sd2 := *vh, *vd, *sh, *sd
		switch which % 11 {
		case 0:
			consumeVerifyM1(b)
		case 1:
			vh2.consumeM2(b)
		case 2:
			vd2.consumeM3(b, lookup)
		case 3, 4:
			consumeVerifyM4(b)
		case 5:
			consumeSetupM1(b)
		case 6:
			if s, pb, err := consumeSetupM2(b); err == nil {
				newSetupHost(bytes.NewReader(vecSRPa), trustPassword, s, pb)
			}
		case 7:
			sd2.consumeM3(b)
		case 8:
			sh2.consumeM4(b)
		case 9:
			if p, err := sd2.consumeM5(b); err == nil {
				hostInfoFrom(p.info)
			}
		case 10:
			if p, err := sh2.consumeM6(b); err == nil {
				peerInfoFrom(p)
			}
		}
	})
}

// FuzzEncryptedPayload decodes decrypted request and response plaintexts.
func FuzzEncryptedPayload(f *testing.F) {
	for _, s := range []string{
		`{"request": {"_0": {"createListener": {"key": "4ljGt3ofLryiJQGAg33X+KnCTKTjHDxAiOIKV7GPnHE=", "peerConnectionsInfo": [{"owningPID": 4242, "owningProcessName": "CoreDeviceService"}], "transportProtocolType": "tcp"}}}}`,
		`{"request": {"_0": {"createRemoteUnlockKey": {}}}}`,
		`{"response": {"_1": {"createListener": {"port": 60105}}}}`,
		`{"response": {"_1": {"createRemoteUnlockKey": {"hostKey": "AAEC"}}}}`,
		`{"response": {"_1": {"errorExtended": {"_0": {"userInfo": {"NSLocalizedDescription": "no"}}}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if name, args, err := parseRequest(b); err == nil && name == reqCreateListener {
			parseListenerRequest(args)
		}
		if res, err := parseResponse(b, reqCreateListener); err == nil {
			parseListener(res)
		}
		if res, err := parseResponse(b, reqRemoteUnlockKey); err == nil {
			parseUnlockKey(res)
		}
	})
}

// FuzzDeviceSession runs the device role over an arbitrary sequence of
// frames: it must return, never panic.
func FuzzDeviceSession(f *testing.F) {
	seeds := transcriptSeeds(f)
	var hostSession1 []byte
	for i, s := range seeds {
		// The host frames of session 1 (even indexes up to the setup).
		if i < 17 && (i%2 == 0 || i == 7) {
			hostSession1 = append(hostSession1, s...)
		}
	}
	f.Add(hostSession1)
	f.Add(seeds[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		var in []tree
		for len(b) > 0 && len(in) < 16 {
			body, rest, err := ParseFrame(b)
			if err != nil {
				break
			}
			env, err := decodeEnvelopeJSON(body)
			if err != nil {
				break
			}
			in, b = append(in, env), rest
		}
		dev, err := NewServer(&ServerConfig{
			Rand:      bytes.NewReader(bytes.Repeat([]byte{0x5a}, 1<<12)),
			Identity:  vecDevice,
			Handshake: vecHandshake,
			CreateListener: func(context.Context, string, ListenerRequest) (*Listener, error) {
				return &Listener{Port: 1}, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		dev.Serve(context.Background(), &scripted{in: in})
	})
}

// FuzzXPCEnvelope decodes RemoteXPC messages as the XPC transport does.
func FuzzXPCEnvelope(f *testing.F) {
	raw, err := os.ReadFile("testdata/xpc_envelope.json")
	if err != nil {
		f.Fatal(err)
	}
	var vf struct {
		Vectors []struct {
			Wrapper string `json:"xpc_wrapper"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &vf); err != nil {
		f.Fatal(err)
	}
	for _, v := range vf.Vectors {
		f.Add(unhex(f, v.Wrapper))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := xpc.Decode(b)
		if err != nil {
			return
		}
		d := m.Body.Dict("value")
		if d == nil {
			return
		}
		tr, err := fromXPC(d, 0)
		if err != nil {
			return
		}
		msg, err := parseMessage(tr.(tree))
		if err != nil {
			return
		}
		if _, err := toXPC(msg.tree()); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
	})
}
