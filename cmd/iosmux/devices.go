package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// newUsbmuxClient resolves the usbmuxd address: the flag, then
// PYMOBILEDEVICE3_USBMUX, then USBMUXD_SOCKET_ADDRESS (as pymobiledevice3
// and libusbmuxd read them), then the platform default.
func newUsbmuxClient(a *app, flagValue string) (*usbmux.Client, error) {
	addr := usbmux.DefaultAddr()
	for _, src := range []struct{ name, value string }{
		{"--usbmux-address", flagValue},
		{"PYMOBILEDEVICE3_USBMUX", a.getenv("PYMOBILEDEVICE3_USBMUX")},
		{"USBMUXD_SOCKET_ADDRESS", a.getenv("USBMUXD_SOCKET_ADDRESS")},
	} {
		if src.value == "" {
			continue
		}
		parsed, err := usbmux.ParseAddr(src.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.name, err)
		}
		addr = parsed
		break
	}
	a.log.Debug("usbmuxd address", "addr", addr.String())
	return usbmux.NewClient(usbmux.ClientConfig{Addr: addr}), nil
}

// findDevice picks the device to talk to: the one matching udid (dashes
// and case ignored, USB preferred when it is listed twice, as pmd3 does),
// the only attached device when udid is empty, or, with several attached,
// the one the person at the terminal chooses (without a terminal it fails
// listing the UDIDs).
func (a *app) findDevice(ctx context.Context, mux *usbmux.Client, udid string) (usbmux.DeviceEntry, error) {
	devs, err := mux.ListDevices(ctx)
	if err != nil {
		return usbmux.DeviceEntry{}, fmt.Errorf("list devices: %w", err)
	}
	if udid != "" {
		d, ok := usbmux.FindDevice(devs, udid)
		if !ok {
			return usbmux.DeviceEntry{}, fmt.Errorf("device %s is not attached (usbmuxd at %s lists %d devices; 'iosmux list' shows them)", udid, mux.Addr(), len(devs))
		}
		return d, nil
	}
	one := usbmux.OnePerDevice(devs)
	switch len(one) {
	case 0:
		return usbmux.DeviceEntry{}, fmt.Errorf("no device attached to usbmuxd at %s: plug the iPhone in and unlock it, or start a simulated one with 'iosmux sim'", mux.Addr())
	case 1:
		return one[0], nil
	}
	choices := make([]choice, len(one))
	for i, d := range one {
		choices[i] = choice{ID: d.UDID(), Text: d.ConnectionType}
	}
	if a.terminal(a.stdin) && a.terminal(a.stderr) {
		// Only worth the lockdown round trips when someone reads them.
		for i, d := range one {
			choices[i].Text = deviceLine(ctx, mux, d)
		}
	}
	i, err := a.choose(fmt.Sprintf("%d devices attached", len(one)), "--udid", choices)
	if err != nil {
		return usbmux.DeviceEntry{}, err
	}
	return one[i], nil
}

// deviceLine is "name  model  iOS version  connection" for the picker.
func deviceLine(ctx context.Context, mux *usbmux.Client, d usbmux.DeviceEntry) string {
	vals, err := lockdown.ReadSummary(ctx, mux, d)
	name, _ := vals["DeviceName"].(string)
	model, _ := vals["ProductType"].(string)
	ver, _ := vals["ProductVersion"].(string)
	f := []string{dash(name), dash(model), "iOS " + dash(ver), d.ConnectionType}
	if err != nil {
		f = append(f, "("+err.Error()+")")
	}
	return strings.Join(f, "  ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
