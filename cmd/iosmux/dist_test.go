package main

import (
	"os"
	"strings"
	"testing"
)

// TestSystemdUnit keeps dist/iosmux-tunneld.service what tunneld relies on
// and what it promises: an unprivileged user with CAP_NET_ADMIN alone
// (tunneld checks the capability), Type=notify (tunneld sends READY=1,
// TestSystemdReady), and the sandboxing around it.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../dist/iosmux-tunneld.service")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			have[line] = true
		}
	}
	for _, want := range []string{
		"Type=notify", "DynamicUser=yes", "User=iosmux",
		"AmbientCapabilities=CAP_NET_ADMIN", "CapabilityBoundingSet=CAP_NET_ADMIN", "NoNewPrivileges=yes",
		"UMask=0077", "SystemCallFilter=@system-service", "ProtectKernelTunables=yes", "ProtectProc=invisible",
		"DeviceAllow=/dev/net/tun rw", "DevicePolicy=closed", "ProtectSystem=strict", "ProtectHome=yes",
		"StateDirectory=iosmux", "Environment=IOSMUX_STATE_DIR=/var/lib/iosmux",
	} {
		if !have[want] {
			t.Errorf("dist/iosmux-tunneld.service lacks %q", want)
		}
	}
	for line := range have {
		if strings.HasPrefix(line, "User=root") || strings.HasPrefix(line, "PrivateUsers=yes") || strings.HasPrefix(line, "PrivateDevices=yes") {
			t.Errorf("dist/iosmux-tunneld.service has %q, which breaks kernel TUNs or the point of the unit", line)
		}
	}
}
