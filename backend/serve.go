package backend

import (
	"context"
	"net"
	"sync"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// boot is what the backend serves for one boot of the device: its UUID
// towards clients and a context that ends every client connection and
// tunnel of the boot when the device reboots, is replaced or detaches.
type boot struct {
	b      *Backend
	key    bootKey
	uuid   xpc.UUID
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	tunnels *clientTunnels // created by the first createListener
}

func newBoot(b *Backend, key bootKey, u xpc.UUID) *boot {
	ctx, cancel := context.WithCancel(b.ctx)
	return &boot{b: b, key: key, uuid: u, ctx: ctx, cancel: cancel}
}

// close ends the boot's connections and tunnels and waits for the
// tunnels' goroutines.
func (bt *boot) close() {
	bt.cancel()
	bt.mu.Lock()
	bt.closed = true
	ct := bt.tunnels
	bt.mu.Unlock()
	if ct != nil {
		ct.close()
	}
}

// serveRSD answers one connection to the RSD port.
func (b *Backend) serveRSD(c net.Conn) {
	v := b.current()
	if v == nil {
		b.log.Info("backend: RSD connection while no device is attached; closing it", "remote", addrString(c.RemoteAddr()))
		c.Close()
		return
	}
	v = b.freshView(v)
	b.serveHandshake(v.boot, v.server, c, "rsd")
}

// serveUntrustedRSD answers one connection to the untrusted RSD port.
func (b *Backend) serveUntrustedRSD(c net.Conn) {
	v := b.current()
	if v == nil || v.untrusted == nil {
		c.Close()
		return
	}
	b.serveHandshake(v.boot, v.untrusted, c, "untrusted rsd")
}

// serveHandshake runs one RSD connection for the rest of the boot: the
// RemoteXPC set-up answered frame by frame, the Handshake only after the
// client's INIT_HANDSHAKE on stream 3 (xpc.md §1.7, overview.md §5.3;
// rsd.Server and xpc.Server keep that order), then nothing until the
// client leaves.
func (b *Backend) serveHandshake(bt *boot, srv *rsd.Server, c net.Conn, what string) {
	remote := addrString(c.RemoteAddr())
	c = b.cfg.WireLog.Tap(c, what+" "+remote)
	defer c.Close()
	peer, err := srv.ServeConn(bt.ctx, c)
	if err != nil {
		b.log.Info("backend: RSD connection failed", "what", what, "remote", remote, "err", err)
		return
	}
	b.log.Debug("backend: RSD connection ended", "what", what, "remote", remote, "hostUUID", peer.UUID.String())
}

// pairingTarget returns what a pairing connection is served with now.
func (b *Backend) pairingTarget() (*pairState, *boot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.view == nil || b.pair == nil {
		return nil, nil
	}
	return b.pair, b.view.boot
}

// serveTunnelService runs the device role of the untrusted tunnel service
// (RemoteXPC transport, remotepairing.md §1.2) with the backend's own
// pairing identity.
func (b *Backend) serveTunnelService(c net.Conn) {
	ps, bt := b.pairingTarget()
	if ps == nil {
		c.Close()
		return
	}
	remote := addrString(c.RemoteAddr())
	srv, err := ps.server(b, c.LocalAddr())
	if err != nil {
		c.Close()
		b.log.Warn("backend: tunnel service", "remote", remote, "err", err)
		return
	}
	c = b.cfg.WireLog.Tap(c, "tunnel service "+remote)
	err = srv.ServeXPC(bt.ctx, c, &xpc.Config{Name: "tunnel service " + remote, Logger: b.log})
	if err != nil {
		b.log.Debug("backend: tunnel service connection ended", "remote", remote, "err", err)
	}
}

// serveNetworkPairing runs RemotePairing over RPPairing framing (the
// network path, remotepairing.md §1.3).
func (b *Backend) serveNetworkPairing(c net.Conn) {
	ps, bt := b.pairingTarget()
	if ps == nil {
		c.Close()
		return
	}
	remote := addrString(c.RemoteAddr())
	srv, err := ps.server(b, c.LocalAddr())
	if err != nil {
		c.Close()
		b.log.Warn("backend: network pairing", "remote", remote, "err", err)
		return
	}
	ctx := bt.ctx
	c = b.cfg.WireLog.Tap(c, "network pairing "+remote)
	t := pairing.NewRPPairing(c)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer t.Close()
	defer c.Close()
	if err := srv.Serve(ctx, t); err != nil {
		b.log.Debug("backend: network pairing connection ended", "remote", remote, "err", err)
	}
}
