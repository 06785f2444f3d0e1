package tunnel

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// ClientConfig configures StartClient.
type ClientConfig struct {
	// NewTUN builds the host's device from the handshake's parameters:
	// KernelTUN, or a closure around utun.NewNetstack for userspace mode.
	NewTUN func(Params) (tun.Device, error)
	// MTU is the MTU requested in the handshake; 0 means StreamMTU.
	MTU int
	// MaxSendPacket, Probe and Logger are passed to the pump (Config).
	MaxSendPacket int
	Probe         ProbeConfig
	Logger        *slog.Logger
}

// StartClient is the host side of every byte-stream path (P1, P2/P3 over
// TCP+TLS-PSK) once its transport is up: the CDTunnel client handshake on
// conn, the TUN from NewTUN, and a running Pump between them. conn is owned
// from the call on and closed on any failure. ctx bounds the handshake only.
func StartClient(ctx context.Context, conn io.ReadWriteCloser, cfg ClientConfig) (*Pump, Params, error) {
	if cfg.NewTUN == nil {
		conn.Close()
		return nil, Params{}, fmt.Errorf("tunnel: StartHost needs NewTUN")
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = StreamMTU
	}
	params, err := ClientHandshake(ctx, conn, mtu)
	if err != nil {
		conn.Close()
		return nil, Params{}, err
	}
	dev, err := cfg.NewTUN(params)
	if err != nil {
		conn.Close()
		return nil, params, fmt.Errorf("tunnel: host TUN for %v: %w", params.ClientPrefix(), err)
	}
	pump, err := NewPump(PumpConfig{
		TUN:           dev,
		Conn:          NewStreamConn(conn, params.MTU),
		MTU:           params.MTU,
		Local:         params.ClientAddress,
		Peer:          params.ServerAddress,
		MaxSendPacket: cfg.MaxSendPacket,
		Probe:         cfg.Probe,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, params, err
	}
	return pump, params, nil
}

// KernelTUN returns a NewTUN that creates a kernel interface named name (""
// lets the kernel choose) configured from the handshake.
func KernelTUN(name string) func(Params) (tun.Device, error) {
	return func(p Params) (tun.Device, error) {
		return utun.CreateKernel(utun.Config{Name: name, Address: p.ClientPrefix(), Peer: p.ServerAddress, MTU: p.MTU})
	}
}
