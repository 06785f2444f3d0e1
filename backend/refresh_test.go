package backend

import (
	"io"
	"net"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/xpc"
)

// TestHandshakeFollowsMount: a DDI mounted through the device's own RSD
// (not through the backend) shows in the backend's Handshake at the next
// client connection, with a forwarder that reaches the new service, and
// leaves it after the unmount; nothing is restarted.
func TestHandshakeFollowsMount(t *testing.T) {
	testkit.CheckLeaks(t)
	b, d, h := attached(t, "18.2", nil)
	ctx := testCtx(t)
	if err := d.SetDeveloperMode(true); err != nil {
		t.Fatal(err)
	}
	listed := func() (uint16, bool) {
		c := readHandshake(t, netDial, b.Addr().String(), xpc.UUID{})
		defer c.Close()
		s, ok := c.Handshake.Service(reach.OpenStdioSocket.RSD)
		return s.Port, ok
	}
	if _, ok := listed(); ok {
		t.Fatal("DDI service listed before the mount")
	}

	o, err := reach.NewRSD(ctx, h.ns.DialContext, h.link().RSD, reach.RSDConfig{HostUUID: b.cfg.HostUUID})
	if err != nil {
		t.Fatal(err)
	}
	standIn := &tss.StandIn{Lookup: func(uint64) (tss.KnownDevice, bool) { return d.Signing(), true }}
	srv := httptest.NewServer(standIn)
	defer srv.Close()
	bundle, err := ddi.Open("../services/mounter/ddi/testdata/ddi_restore")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mounter.Mount(ctx, o, mounter.MountConfig{Bundle: bundle, TSS: &tss.Client{URL: srv.URL}}); err != nil {
		t.Fatal(err)
	}
	port, ok := listed()
	if !ok {
		t.Fatal("the backend's Handshake lacks the DDI service after the mount")
	}
	c, err := net.Dial("tcp", net.JoinHostPort(b.Addr().Addr().String(), strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	var u [16]byte
	if _, err := io.ReadFull(c, u[:]); err != nil {
		t.Errorf("through the forwarder: %v", err)
	}
	c.Close()

	if err := mounter.Unmount(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if h := b.Handshake(); h == nil {
		t.Fatal("no Handshake after Refresh")
	} else if _, ok := h.Service(reach.OpenStdioSocket.RSD); ok {
		t.Error("Refresh kept the unmounted DDI's service")
	}
	if _, ok := listed(); ok {
		t.Error("DDI service still listed after the unmount")
	}
}
