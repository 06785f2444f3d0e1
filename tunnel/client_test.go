package tunnel

import (
	"context"
	"errors"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"golang.zx2c4.com/wireguard/tun"
)

func TestStartHostClosesConnOnFailure(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := newTestDevice(t, Faults{})
	boom := errors.New("no TUN today")
	tests := []struct {
		name   string
		newTUN func(Params) (tun.Device, error)
		device bool
	}{
		{"no NewTUN", nil, false},
		{"NewTUN fails", func(Params) (tun.Device, error) { return nil, boom }, true},
		{"handshake fails", func(Params) (tun.Device, error) { return nil, boom }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := testkit.Pipe()
			defer b.Close()
			if tt.device {
				go dev.StartSession(context.Background(), b)
			} else if tt.newTUN != nil {
				b.Close() // the "device" hangs up at once
			}
			_, _, err := StartClient(context.Background(), a, ClientConfig{NewTUN: tt.newTUN})
			if err == nil {
				t.Fatal("StartHost succeeded")
			}
			if tt.device && !errors.Is(err, boom) {
				t.Fatalf("err = %v, want %v", err, boom)
			}
			if _, err := a.Write([]byte{0}); err == nil {
				t.Fatal("conn left open")
			}
		})
	}
}
