package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/tunnel"
)

// Device-side establishment glue (tunnel.md §1, Appendix B). Each path
// ends in tunnel.Device.StartSession; what differs is how the byte stream
// that carries CDTunnel comes to be:
//
//	P1  lockdown StartService CoreDeviceProxy → service TLS (lockdown) → serveTunnelStream
//	P2  untrusted RSD → tunnel service (RemoteXPC) → pairing device role →
//	    createListener tcp → pskListener → TLS-PSK → serveTunnelStream
//	P3  the same over RPPairing on TCP (network pairing)
//
// This file is deliberately thin and independent of the rest of sim so
// that it can move into package tunnel as the device side of each path.

// handshakeTimeout bounds the CDTunnel and TLS-PSK handshakes of a new
// tunnel transport.
const handshakeTimeout = 30 * time.Second

// listenerTimeout is how long a createListener port waits for the host's
// TLS-PSK connection (the real device's limit is UNCONFIRMED; SIM).
const listenerTimeout = 30 * time.Second

// serveTunnelStream runs the device end of a tunnel on an established byte
// stream (P1's service TLS, P2/P3's TLS-PSK): the CDTunnel server handshake,
// then the packet relay into the device's stack. It returns when the
// session ends or ctx does, having closed conn either way. watch, if not
// nil, is told of the session when it starts and returns what to call when
// it has ended.
func serveTunnelStream(ctx context.Context, dev *tunnel.Device, conn net.Conn, watch func(*tunnel.Session) func()) error {
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	s, err := dev.StartSession(hctx, conn)
	cancel()
	if err != nil {
		return fmt.Errorf("sim: CDTunnel: %w", err)
	}
	if watch != nil {
		defer watch(s)()
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		s.Close()
	}
	return nil
}

// pskListener is the device side of createListener with transport tcp
// (remotepairing.md §9.5): a TCP listener whose first connection that
// completes TLS-PSK with key psk carries the tunnel. It is closed after that
// connection, after listenerTimeout, or when ctx ends. run owns the
// listener; it is meant to be started on its own goroutine.
type pskListener struct {
	ln    net.Listener
	psk   []byte
	serve func(ctx context.Context, tc net.Conn) // the tunnel on the TLS conn
	// wrap turns each accepted conn into the device's tracked conn; false
	// drops it (the device is going down).
	wrap func(net.Conn) (net.Conn, bool)
}

func (l *pskListener) run(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, listenerTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	defer l.ln.Close()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("sim: tunnel listener: no TLS-PSK connection: %w", ctx.Err())
			}
			return fmt.Errorf("sim: tunnel listener: %w", err)
		}
		c, ok := l.wrap(nc)
		if !ok {
			return net.ErrClosed
		}
		tc := tlspsk.Server(c, &tlspsk.Config{PSK: l.psk, DisableExtendedMasterSecret: true})
		hctx, hcancel := context.WithTimeout(ctx, handshakeTimeout)
		err = tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			// A port scan or a host with the wrong key: keep waiting for
			// the right one while time is left.
			tc.Close()
			continue
		}
		l.ln.Close()
		stop()
		l.serve(parent, tc)
		return nil
	}
}

// createListener answers a createListener request (remotepairing.md §6.4,
// §9.5): tcp gets a pskListener on the surface's address; quic is refused
// on every profile for now (the QUIC device side is not simulated yet), and
// from iOS 18.2 it would be refused anyway (tunnel.md §1).
func createListener(req pairing.ListenerRequest, quic bool, listen func() (net.Listener, error), start func(*pskListener)) (*pairing.Listener, error) {
	switch req.Transport {
	case pairing.TransportTCP:
	case pairing.TransportQUIC:
		if !quic {
			return nil, errors.New("QUIC tunnels are not supported on this iOS version")
		}
		return nil, errors.New("QUIC tunnel listener not simulated")
	default:
		return nil, fmt.Errorf("unknown transport %q", req.Transport)
	}
	if len(req.Key) == 0 {
		return nil, errors.New("createListener without a key")
	}
	ln, err := listen()
	if err != nil {
		return nil, fmt.Errorf("tunnel listener: %w", err)
	}
	start(&pskListener{ln: ln, psk: append([]byte(nil), req.Key...)})
	return &pairing.Listener{Port: int(portOf(ln.Addr()))}, nil
}
