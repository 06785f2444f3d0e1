package ostrace

import (
	"context"
	"fmt"

	"github.com/iosmux/iosmux/services/reach"
)

// Open opens a connection to os_trace_relay through o (a tunnel's RSD or
// usbmuxd lockdown) and returns a client for it.
func Open(ctx context.Context, o reach.Opener) (*Client, error) {
	conn, err := o.Open(ctx, reach.OSTraceRelay)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// ListProcesses lists the device's processes through os_trace_relay's
// PidList: pid and name only, but with no developer disk image needed, so
// it stands in for CoreDevice's listprocesses when appservice is absent.
func ListProcesses(ctx context.Context, o reach.Opener) ([]Process, error) {
	c, err := Open(ctx, o)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ps, err := c.PidList(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.UDID(), err)
	}
	return ps, nil
}
