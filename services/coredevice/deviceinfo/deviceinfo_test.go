package deviceinfo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/services/coredevice/coredevicetest"
	"github.com/iosmux/iosmux/xpc"
)

type fake struct{}

func (fake) DeviceInfo() *xpc.Dict {
	return xpc.NewDict("ProductType", xpc.String("iPhone15,2"), "UniqueChipID", xpc.Uint64(1<<60))
}

func (fake) Displays() []Display {
	return []Display{{ID: 1, Name: "Built-in Display", Primary: true, Width: 1290, Height: 2796}}
}

// capture serves the device role and records each request's body.
func capture(t *testing.T) (*Client, func() []*xpc.Dict) {
	srv := NewServer(fake{}, nil)
	var mu sync.Mutex
	var seen []*xpc.Dict
	open := coredevicetest.Device(t, func(ctx context.Context, m xpc.Message) *xpc.Dict {
		mu.Lock()
		seen = append(seen, m.Body)
		mu.Unlock()
		return srv.Answer(ctx, m.Body)
	})
	c := New(coredevice.NewClient(coredevice.ClientConfig{Open: open, UDID: "U", Features: srv.Features()}))
	t.Cleanup(func() { c.Close() })
	return c, func() []*xpc.Dict { mu.Lock(); defer mu.Unlock(); return seen }
}

func vectorBody(t *testing.T, name string) *xpc.Dict {
	_, m := coredevicetest.Vector(t, name)
	return m.Body
}

func TestBothRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, seen := capture(t)
	ds, err := c.Displays(ctx)
	if err != nil || len(ds) != 1 || ds[0] != (fake{}).Displays()[0] {
		t.Errorf("displays %+v %v", ds, err)
	}
	info, err := c.DeviceInfo(ctx)
	if err != nil || info.String("ProductType") != "iPhone15,2" || info.Uint64("UniqueChipID") != 1<<60 {
		t.Errorf("device info %v %v", info, err)
	}
	if _, err := c.LockState(ctx); !errors.Is(err, coredevice.ErrNotImplemented) ||
		!strings.Contains(err.Error(), "Action 'com.apple.coredevice.feature.getlockstate' is not implemented.") {
		t.Errorf("lock state: %v", err)
	}
	if _, err := c.MobileGestalt(ctx, "ProductType"); !errors.Is(err, coredevice.ErrNotPermitted) {
		t.Errorf("gestalt: %v", err)
	}
	// The requests are cd07 and cd06 but for the fresh UUIDs.
	got := seen()
	for i, name := range []string{"cd07_getdisplayinfo_request", "cd06_getdeviceinfo_request"} {
		want := vectorBody(t, name)
		for _, k := range []string{coredevice.KeyInvocation, coredevice.KeyDeviceIdentifier} {
			want.Set(k, got[i].Get(k))
		}
		a, _ := xpc.AppendValue(nil, got[i])
		b, _ := xpc.AppendValue(nil, want)
		if !bytes.Equal(a, b) {
			t.Errorf("request %d differs from %s", i, name)
		}
	}
}
