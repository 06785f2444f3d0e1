package backend

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/utun"
)

// Service forwarders: one listener per service name on the backend's host,
// created the first time the device lists the name and kept for the
// backend's life, so the ports clients learned stay valid when the device
// moves a service (iOS 27.2 re-attach) or reboots. Each accepted conn is
// relayed to wherever the device has that service now, through the tunnel:
// one copier per direction, half-close when one side ends, and no buffer
// beyond the copy buffer (a slow side stalls the other: tailscale's
// netstack forwardTCP is the model).

// forwardDialTimeout bounds one dial through the tunnel (go-ios uses 15 s
// for its dials through a tunnel, tunnel.md §8.2).
const forwardDialTimeout = 15 * time.Second

// forward is one service's listener.
type forward struct {
	name string
	ln   net.Listener
	port uint16
}

// ensureForwarders opens a listener for every name that has none yet.
func (b *Backend) ensureForwarders(names []string) error {
	var errs []error
	for _, name := range names {
		if name == pairing.TunnelServiceName {
			continue // served by the backend itself
		}
		b.mu.Lock()
		_, have := b.fwds[name]
		b.mu.Unlock()
		if have {
			continue
		}
		ln, err := b.listenHost(b.host)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f := &forward{name: name, ln: ln, port: portOf(ln.Addr())}
		b.mu.Lock()
		if _, dup := b.fwds[name]; dup || b.closed {
			b.mu.Unlock()
			ln.Close()
			continue
		}
		b.fwds[name] = f
		b.fwdPorts[f.port] = name
		b.mu.Unlock()
		if !b.goAccept(ln, func(c net.Conn) { b.relayService(name, c) }) {
			ln.Close()
		}
	}
	return errors.Join(errs...)
}

// relayService connects c to the device's service name.
func (b *Backend) relayService(name string, c net.Conn) {
	v := b.current()
	if v == nil {
		c.Close()
		return
	}
	d, v, err := b.dialService(v, name)
	if err != nil {
		b.log.Debug("backend: forward dial failed", "service", name, "err", err)
		c.Close()
		return
	}
	b.relay(v, c, d, "forward "+name)
}

// dialService dials the device's service name through v's tunnel. When
// that fails the Handshake is read again (the service may have moved) and
// the dial retried with what it says, up to maxRefreshes times: after
// another host took the device's RSD slot, the backend's own return makes
// an iOS 27.2 device move its ports once more, and only the next read is
// stable.
func (b *Backend) dialService(v *view, name string) (net.Conn, *view, error) {
	port, ok := v.ports[name]
	if !ok {
		return nil, v, errors.New("service not listed by the device")
	}
	d, err := b.dialDevice(v, port)
	for range maxRefreshes {
		if err == nil || v.boot.ctx.Err() != nil {
			break
		}
		ctx, cancel := context.WithTimeout(v.boot.ctx, b.cfg.DiscoveryTimeout)
		b.requestRefresh(ctx, v.link)
		cancel()
		nv := b.current()
		if nv == nil {
			break
		}
		if port, ok = nv.ports[name]; !ok {
			return nil, nv, errors.New("service no longer listed by the device")
		}
		v = nv
		d, err = b.dialDevice(v, port)
	}
	return d, v, err
}

// maxRefreshes bounds the Handshake re-reads one dial may cause.
const maxRefreshes = 2

// dialDevice opens a TCP connection to the device's port through v's
// tunnel.
func (b *Backend) dialDevice(v *view, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(v.boot.ctx, forwardDialTimeout)
	defer cancel()
	return v.link.Dial(ctx, "tcp", v.deviceAddr(port).String())
}

// relay copies between a client conn c and a device conn d until both
// directions end, or v's boot ends (a reboot closes every relay at once).
func (b *Backend) relay(v *view, c, d net.Conn, what string) {
	c = b.cfg.WireLog.Tap(c, what+" "+addrString(c.RemoteAddr()))
	stop := context.AfterFunc(v.boot.ctx, func() {
		c.Close()
		d.Close()
	})
	defer stop()
	if err := utun.Relay(c, d); err != nil {
		b.log.Debug("backend: relay ended", "what", what, "err", err)
	}
}
