// Command pmd3client is an RSD client that is not iosmux's, pointed at what
// pymobiledevice3's tunneld API lists, as `pymobiledevice3 … --tunnel UDID`
// does with it: GET / of the API (plain HTTP and JSON), then, for every
// device's first entry, go-ios v1.3.2's RSD client (ios.NewWithAddrPort +
// Handshake) at the listed tunnel-address and tunnel-port, then go-ios's
// own dial (ios.ConnectTUNDevice) to the port the RSD lists for the trusted
// lockdown service and its RSDCheckin there (ios.RsdCheckin): another
// listed service reached at the listed address. It prints what it found as
// JSON and exits non-zero if any step failed for any device.
//
// Usage: pmd3client http://127.0.0.1:49151
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/danielpaulus/go-ios/ios"
)

type entry struct {
	Address string `json:"tunnel-address"`
	Port    int    `json:"tunnel-port"`
}

type device struct {
	Address  string
	Port     int
	RSDUDID  string
	Services int
	Lockdown int
	Checkin  bool
	Err      string
}

const lockdownService = "com.apple.mobile.lockdown.remote.trusted"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pmd3client API-URL")
		os.Exit(2)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(os.Args[1] + "/")
	if err != nil {
		fail(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		fail(fmt.Errorf("GET /: %d %v %s", resp.StatusCode, err, body))
	}
	var listing map[string][]entry
	if err := json.Unmarshal(body, &listing); err != nil {
		fail(err)
	}
	out := map[string]*device{}
	failed := false
	for udid, es := range listing {
		if len(es) == 0 {
			fail(fmt.Errorf("%s: no entries", udid))
		}
		d := &device{Address: es[0].Address, Port: es[0].Port}
		out[udid] = d
		if err := reach(d); err != nil {
			d.Err, failed = err.Error(), true
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if failed {
		os.Exit(1)
	}
}

// reach runs the RSD handshake at the listed address and port, then the
// lockdown RSDCheckin at the port the RSD lists for it.
func reach(d *device) error {
	s, err := ios.NewWithAddrPort(d.Address, d.Port)
	if err != nil {
		return fmt.Errorf("RSD connect: %w", err)
	}
	h, err := s.Handshake()
	s.Close()
	if err != nil {
		return fmt.Errorf("RSD handshake: %w", err)
	}
	d.RSDUDID, d.Services, d.Lockdown = h.Udid, len(h.Services), h.GetPort(lockdownService)
	if d.Lockdown == 0 {
		return fmt.Errorf("the RSD lists no %s", lockdownService)
	}
	conn, err := ios.ConnectTUNDevice(d.Address, d.Lockdown, ios.DeviceEntry{})
	if err != nil {
		return fmt.Errorf("lockdown port %d: %w", d.Lockdown, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := ios.RsdCheckin(conn); err != nil {
		return fmt.Errorf("lockdown port %d: %w", d.Lockdown, err)
	}
	d.Checkin = true
	return nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pmd3client: %v\n", err)
	os.Exit(1)
}
