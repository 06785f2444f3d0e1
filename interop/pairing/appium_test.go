package pairing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/pairing"
	"howett.net/plist"
)

// TestAppiumNetworkPairing: appium-ios-remotexpc's Apple TV pairing client
// pairs with our device role in PIN mode over RPPairing/TCP (reading the
// PIN our device "shows"), stores its record, then pair-verifies with it and
// asks for a tunnel listener.
func TestAppiumNetworkPairing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var ev events
	// The PIN the screen would show goes to appium's prompt on stdin.
	pins := make(chan string, 1)
	cfg := &pairing.ServerConfig{
		Identity:  simIdentity(),
		Handshake: simHandshake(),
		Mode:      pairing.ModePIN,
		ShowPIN:   func(pin string) { pins <- pin },
	}
	ev.hook(cfg)
	// A tunnel listener appium can connect to; it only checks the connect.
	tunnelLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server(t, tunnelLn, func(ctx context.Context, nc net.Conn) { io.Copy(io.Discard, nc) })
	cfg.CreateListener = func(_ context.Context, host string, req pairing.ListenerRequest) (*pairing.Listener, error) {
		ev.mu.Lock()
		ev.listeners = append(ev.listeners, req)
		ev.mu.Unlock()
		return &pairing.Listener{Port: tunnelLn.Addr().(*net.TCPAddr).Port}, nil
	}
	dev, err := pairing.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server(t, ln, func(ctx context.Context, nc net.Conn) {
		if err := dev.Serve(ctx, pairing.NewRPPairing(nc)); err != nil {
			t.Logf("device: %v", err)
		}
	})

	home := t.TempDir()
	cmd := exec.CommandContext(ctx, "node", "pairing/appium_pair.mjs", "127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	cmd.Dir = testenv.ModuleDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home+"/data", "XDG_CONFIG_HOME="+home+"/config")
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var runErr error
	select {
	case pin := <-pins:
		fmt.Fprintln(stdin, pin)
		runErr = <-waited
	case runErr = <-waited:
	}
	stdin.Close()
	if err := runErr; err != nil {
		t.Fatalf("appium: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var res struct {
		DeviceID    string `json:"deviceId"`
		PairingFile string `json:"pairingFile"`
		Verified    bool   `json:"verified"`
		PSK         string `json:"psk"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("appium output %q: %v", stdout.String(), err)
	}
	t.Logf("appium stored %s as %s", res.DeviceID, res.PairingFile)

	hostname, _ := os.Hostname()
	wantHost := pairing.HostIdentifier(hostname)
	paired, verified, listeners, _ := ev.snapshot()
	if len(paired) != 1 || paired[0].Identifier != wantHost {
		t.Fatalf("device paired %+v, want host %s", paired, wantHost)
	}
	if res.DeviceID != simUDID {
		t.Errorf("appium named the device %q, want %q (M6 remotepairing_udid)", res.DeviceID, simUDID)
	}

	// appium's record holds the key our device stored for it.
	raw, err := os.ReadFile(res.PairingFile)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		PrivateKey []byte `plist:"private_key"`
		PublicKey  []byte `plist:"public_key"`
		UDID       string `plist:"remote_pairing_udid"`
	}
	if _, err := plist.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("appium record: %v", err)
	}
	if !bytes.Equal(rec.PublicKey, paired[0].PublicKey) || rec.UDID != simUDID {
		t.Errorf("appium record public key %x / udid %q; device stored %x", rec.PublicKey, rec.UDID, paired[0].PublicKey)
	}
	if pub := ed25519.NewKeyFromSeed(rec.PrivateKey).Public().(ed25519.PublicKey); len(rec.PrivateKey) != 32 || !bytes.Equal(pub, rec.PublicKey) {
		t.Errorf("appium private_key does not match its public_key")
	}

	// The second connection verified and asked for a listener with the PSK.
	if !res.Verified || len(verified) != 1 || verified[0] != wantHost {
		t.Errorf("verified %v (appium says %v)", verified, res.Verified)
	}
	psk, _ := base64.StdEncoding.DecodeString(res.PSK)
	if len(listeners) != 1 || listeners[0].Transport != pairing.TransportTCP || !bytes.Equal(listeners[0].Key, psk) || len(psk) != 32 {
		t.Errorf("createListener %+v, appium PSK %x", listeners, psk)
	}
}
