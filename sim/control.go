package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// The control endpoint drives faults from outside the process (a test
// harness, curl). It speaks JSON over HTTP on loopback TCP or a UNIX
// socket:
//
//	GET  /devices                      every device's Endpoints, Stats, faults
//	GET  /devices/{udid}               one device
//	GET  /devices/{udid}/logs?process=locationd   the log's counters (and lines per process)
//	POST /devices/{udid}/unplug
//	POST /devices/{udid}/replug
//	POST /devices/{udid}/reboot?down=5s
//	POST /devices/{udid}/stall?on=true|false
//	POST /devices/{udid}/reset?after=N      (bytes; 0 = now)
//	POST /devices/{udid}/garbage?on=true|false
//	POST /devices/{udid}/trust?answer=accept|deny|pending|locked
//	POST /devices/{udid}/devmode?on=true|false    (Developer Mode, as in Settings)
//	POST /devices/{udid}/passcode?on=true|false
//	POST /devices/{udid}/lograte?rate=20000      (log chatter, lines/s)
//	POST /devices/{udid}/launch?path=/…/Demo.app/Demo&bundle=com.example.demo
//	POST /devices/{udid}/signal?pid=N&signal=SIGSEGV|11
//	POST /devices/{udid}/post?name=com.example.note   (a Darwin notification)
//
// {udid} may be "all". Every POST answers the device's state afterwards;
// errors are {"error": "..."} with a 4xx/5xx status.

// DeviceStatus is the control endpoint's view of one device.
type DeviceStatus struct {
	Endpoints
	Stats  Stats      `json:"stats"`
	Faults FaultState `json:"faults"`
}

func status(d *Device) DeviceStatus {
	return DeviceStatus{Endpoints: d.Endpoints(), Stats: d.Stats(), Faults: d.Faults()}
}

// Handler returns the control API over the fleet.
func (f *Fleet) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /devices", func(w http.ResponseWriter, r *http.Request) {
		out := make([]DeviceStatus, 0, len(f.devices))
		for _, d := range f.devices {
			out = append(out, status(d))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /devices/{udid}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := f.Device(r.PathValue("udid"))
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Errorf("no device %q", r.PathValue("udid")))
			return
		}
		writeJSON(w, http.StatusOK, status(d))
	})
	mux.HandleFunc("GET /devices/{udid}/logs", func(w http.ResponseWriter, r *http.Request) {
		d, ok := f.Device(r.PathValue("udid"))
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Errorf("no device %q", r.PathValue("udid")))
			return
		}
		writeJSON(w, http.StatusOK, logStatus(d, r.URL.Query()["process"]))
	})
	mux.HandleFunc("POST /devices/{udid}/{fault}", func(w http.ResponseWriter, r *http.Request) {
		var targets []*Device
		if udid := r.PathValue("udid"); udid == "all" {
			targets = f.devices
		} else if d, ok := f.Device(udid); ok {
			targets = []*Device{d}
		} else {
			writeError(w, http.StatusNotFound, fmt.Errorf("no device %q", udid))
			return
		}
		apply, err := parseFault(r.PathValue("fault"), r.URL.Query())
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		out := make([]DeviceStatus, 0, len(targets))
		for _, d := range targets {
			if err := apply(d); err != nil {
				writeError(w, http.StatusConflict, fmt.Errorf("%s: %w", d.id.UDID, err))
				return
			}
			out = append(out, status(d))
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

// parseFault turns a control request into the call it makes.
func parseFault(name string, q map[string][]string) (func(*Device) error, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	on := func() (bool, error) {
		v := get("on")
		if v == "" {
			return true, nil
		}
		return strconv.ParseBool(v)
	}
	switch name {
	case "unplug":
		return (*Device).Unplug, nil
	case "replug":
		return (*Device).Replug, nil
	case "reboot":
		down := 5 * time.Second
		if v := get("down"); v != "" {
			var err error
			if down, err = time.ParseDuration(v); err != nil || down < 0 {
				return nil, fmt.Errorf("reboot: bad down %q", v)
			}
		}
		return func(d *Device) error { return d.Reboot(down) }, nil
	case "stall", "garbage":
		b, err := on()
		if err != nil {
			return nil, fmt.Errorf("%s: bad on %q", name, get("on"))
		}
		if name == "stall" {
			return func(d *Device) error { d.Stall(b); return nil }, nil
		}
		return func(d *Device) error { d.Garbage(b); return nil }, nil
	case "reset":
		var n int64
		if v := get("after"); v != "" {
			var err error
			if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
				return nil, fmt.Errorf("reset: bad after %q", v)
			}
		}
		return func(d *Device) error { d.Reset(n); return nil }, nil
	case "devmode", "passcode":
		b, err := on()
		if err != nil {
			return nil, fmt.Errorf("%s: bad on %q", name, get("on"))
		}
		if name == "devmode" {
			return func(d *Device) error { return d.SetDeveloperMode(b) }, nil
		}
		return func(d *Device) error { d.SetPasscode(b); return nil }, nil
	case "trust":
		t, err := ParseTrust(get("answer"))
		if err != nil {
			return nil, err
		}
		return func(d *Device) error { d.SetTrust(t); return nil }, nil
	}
	if apply, ok, err := parseDiagnosticsControl(name, get); ok {
		return apply, err
	}
	return nil, fmt.Errorf("unknown fault %q (unplug, replug, reboot, stall, reset, garbage, trust, devmode, passcode, lograte, launch, signal, post)", name)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": "sim: " + err.Error()})
}

// Control is a running control endpoint.
type Control struct {
	srv  *http.Server
	ln   net.Listener
	addr string
	done chan error
}

// ServeControl serves f.Handler on addr: "host:port" (loopback TCP) or
// "unix:/path".
func (f *Fleet) ServeControl(addr string) (*Control, error) {
	var ln net.Listener
	var err error
	shown := addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		os.Remove(path)
		ln, err = net.Listen("unix", path)
	} else {
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			shown = "http://" + ln.Addr().String()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sim: control endpoint: %w", err)
	}
	c := &Control{ln: ln, addr: shown, done: make(chan error, 1),
		srv: &http.Server{Handler: f.Handler(), ReadHeaderTimeout: 10 * time.Second}}
	go func() { c.done <- c.srv.Serve(ln) }()
	return c, nil
}

// Addr is the endpoint's URL ("http://127.0.0.1:port") or "unix:/path".
func (c *Control) Addr() string { return c.addr }

// Close stops the endpoint and waits for its handlers.
func (c *Control) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if serr := <-c.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if path, ok := strings.CutPrefix(c.addr, "unix:"); ok {
		os.Remove(path)
	}
	return err
}
