package pairing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"reflect"
	"testing"
)

// The RPPairing transcript of testdata/rppairing_transcript.json: pymobiledevice3's
// host frames and the reference simulator's device frames for a first
// pairing (session 1) and a verify plus createListener (session 2). Each
// role of ours replays against the other side's recorded frames and must
// produce the recorded frames: identical JSON values, identical TLV bytes,
// and encrypted payloads whose plaintexts are the same JSON values
// (pymobiledevice3's JSON whitespace differs from Go's, so ciphertexts
// cannot match byte for byte).

type transcriptFrame struct {
	Session int    `json:"session"`
	From    string `json:"from"`
	Frame   string `json:"frame"`
}

func loadTranscript(t *testing.T) []transcriptFrame {
	var f struct {
		Frames []transcriptFrame `json:"frames"`
	}
	readJSONFile(t, "rppairing_transcript.json", &f)
	if len(f.Frames) != 24 {
		t.Fatalf("%d frames, want 24", len(f.Frames))
	}
	return f.Frames
}

// frameTree parses a recorded frame with our RPPairing decoder.
func frameTree(t *testing.T, hexFrame string) tree {
	t.Helper()
	body, rest, err := ParseFrame(unhex(t, hexFrame))
	if err != nil || len(rest) != 0 {
		t.Fatalf("ParseFrame: %v (%d trailing bytes)", err, len(rest))
	}
	env, err := decodeEnvelopeJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// scripted is a Transport that hands out recorded envelopes and keeps what
// is written.
type scripted struct {
	in  []tree
	out []tree
}

func (s *scripted) WriteEnvelope(_ context.Context, env map[string]any) error {
	// Through JSON, so both sides compare as RPPairing would carry them.
	b, err := encodeEnvelopeJSON(env)
	if err != nil {
		return err
	}
	t, err := decodeEnvelopeJSON(b)
	if err != nil {
		return err
	}
	s.out = append(s.out, t)
	return nil
}

func (s *scripted) ReadEnvelope(context.Context) (map[string]any, error) {
	if len(s.in) == 0 {
		return nil, io.EOF
	}
	t := s.in[0]
	s.in = s.in[1:]
	return t, nil
}

func (s *scripted) Close() error { return nil }

// decryptPayloads replaces each streamEncrypted payload by its decoded
// plaintext, opened with open (which advances its own counter).
func decryptPayloads(t *testing.T, env tree, open func([]byte) ([]byte, error)) tree {
	t.Helper()
	m, err := parseMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	if m.kind != kindEncrypted {
		return env
	}
	pt, err := open(m.ciphertext)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	var v any
	if err := json.Unmarshal(pt, &v); err != nil {
		t.Fatal(err)
	}
	out := tree{}
	for k, x := range env {
		out[k] = x
	}
	out["message"] = tree{"streamEncrypted(plaintext)": v}
	return out
}

func compareFrames(t *testing.T, role string, got, want []tree, secret []byte, openGot, openWant func(*channel) func([]byte) ([]byte, error)) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s wrote %d messages, want %d", role, len(got), len(want))
	}
	chGot, chWant := newChannel(secret), newChannel(secret)
	for i := 0; i < len(got) && i < len(want); i++ {
		g := decryptPayloads(t, got[i], openGot(chGot))
		w := decryptPayloads(t, want[i], openWant(chWant))
		// JSON numbers decode as float64 on both sides here.
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		var gv, wv any
		json.Unmarshal(gj, &gv)
		json.Unmarshal(wj, &wv)
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s message %d:\n got %s\nwant %s", role, i, gj, wj)
		}
	}
}

func splitSession(t *testing.T, frames []transcriptFrame, session int) (host, device []tree) {
	for _, f := range frames {
		if f.Session != session {
			continue
		}
		if f.From == "host" {
			host = append(host, frameTree(t, f.Frame))
		} else {
			device = append(device, frameTree(t, f.Frame))
		}
	}
	return host, device
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestTranscriptDeviceRole(t *testing.T) {
	frames := loadTranscript(t)
	setup := loadSetupFile(t)
	var vf verifyFile
	readJSONFile(t, "pair_verify.json", &vf)
	hosts := &MemoryHosts{}
	sessions := []struct {
		n      int
		rand   []byte
		secret []byte
	}{
		{1, cat(vecDeviceX1, vecSalt, vecSRPb), unhex(t, setup.Messages.K)},
		{2, vecDeviceX2, unhex(t, vf.S2.Shared)},
	}
	for _, s := range sessions {
		dev, err := NewServer(&ServerConfig{
			Rand:      bytes.NewReader(s.rand),
			Identity:  vecDevice,
			Handshake: vecHandshake,
			Mode:      ModeTrust,
			Hosts:     hosts,
			UnlockKey: func(string) ([]byte, error) { return vecEscrow, nil },
			CreateListener: func(_ context.Context, host string, req ListenerRequest) (*Listener, error) {
				if host != vecHostID || !bytes.Equal(req.Key, unhex(t, vf.PSK)) ||
					len(req.PeerConnections) != 1 || req.PeerConnections[0].OwningPID != vecPID {
					t.Errorf("createListener from %q: %+v", host, req)
				}
				return &Listener{Port: vecPort}, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		hostFrames, deviceFrames := splitSession(t, frames, s.n)
		tr := &scripted{in: hostFrames}
		if err := dev.Serve(context.Background(), tr); err != nil {
			t.Fatalf("session %d: Serve: %v", s.n, err)
		}
		compareFrames(t, "device", tr.out, deviceFrames, s.secret,
			func(c *channel) func([]byte) ([]byte, error) { return c.openResponse },
			func(c *channel) func([]byte) ([]byte, error) { return c.openResponse })
	}
	if hs := hosts.Hosts(); len(hs) != 1 || hs[0].Identifier != vecHostID {
		t.Errorf("paired hosts %+v", hs)
	}
}

func TestTranscriptHostRole(t *testing.T) {
	frames := loadTranscript(t)
	setup := loadSetupFile(t)
	var vf verifyFile
	readJSONFile(t, "pair_verify.json", &vf)
	ctx := context.Background()
	open := func(c *channel) func([]byte) ([]byte, error) {
		return func(ct []byte) ([]byte, error) {
			pt, err := c.openRequest(ct)
			c.c++
			return pt, err
		}
	}

	// Session 1: no record, so verify with the zero key, fall back to
	// setup, then createRemoteUnlockKey.
	hostFrames, deviceFrames := splitSession(t, frames, 1)
	tr := &scripted{in: deviceFrames}
	info := vecHostInfo
	h := NewClient(tr, &ClientConfig{Rand: bytes.NewReader(cat(vecHostX1, vecSRPa, vecHostSeed)), HostName: vecHostName, Info: &info})
	if _, err := h.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	zero := Identity{Identifier: vecHostID, PrivateKey: ed25519.NewKeyFromSeed(make([]byte, 32))}
	if err := h.Verify(ctx, zero); err == nil {
		t.Fatal("verify with the zero key succeeded")
	}
	res, err := h.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key, err := h.CreateRemoteUnlockKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	compareFrames(t, "host session 1", tr.out, hostFrames, unhex(t, setup.Messages.K), open, open)
	rec := NewRecord(res, key)
	if !bytes.Equal(rec.PrivateKey, vecHostSeed) || key != setup.Record.UnlockHostKey || rec.HostIdentifier != vecHostID {
		t.Errorf("record from session 1: %v, unlock key %q", rec, key)
	}

	// Session 2: verify with the new record, then createListener.
	hostFrames, deviceFrames = splitSession(t, frames, 2)
	tr = &scripted{in: deviceFrames}
	h = NewClient(tr, &ClientConfig{Rand: bytes.NewReader(vecHostX2), HostName: vecHostName})
	if _, err := h.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(ctx, rec.Identity(vecHostID)); err != nil {
		t.Fatal(err)
	}
	l, err := h.CreateListener(ctx, ListenerRequest{Transport: TransportTCP, Key: h.SharedSecret(),
		PeerConnections: []PeerConnection{{OwningPID: vecPID, OwningProcessName: "CoreDeviceService"}}})
	if err != nil || l.Port != vecPort {
		t.Fatalf("CreateListener: %+v, %v", l, err)
	}
	compareFrames(t, "host session 2", tr.out, hostFrames, unhex(t, vf.S2.Shared), open, open)
}
