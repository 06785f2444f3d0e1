package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

func init() {
	register(&command{name: "rsd-info", summary: "print a device's RSD Handshake: properties and services", run: runRSDInfo})
}

const rsdInfoHelp = `
Connects to a RemoteServiceDiscovery port (RemoteXPC over h2c), reads the
device's Handshake and prints its properties and service table, like
'pymobiledevice3 remote rsd-info'. --json prints the Handshake as pymobiledevice3
does (UUIDs as text, data as base64, 64-bit integers exact).

The host announces itself with a stable UUID kept in the state directory
(--state-dir, env IOSMUX_STATE_DIR, default ~/.local/state/iosmux).

--demo starts an RSD server on loopback serving the published example iPhone
(docs/protocols/rsd.md §5, with a fresh random device UUID) and queries it
with the same client over TCP.`

func runRSDInfo(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "rsd-info", "(--rsd HOST PORT | --demo) [--json]", rsdInfoHelp)
	asJSON := fs.Bool("json", false, "print the Handshake as JSON")
	demo := fs.Bool("demo", false, "serve the published example device on loopback and query it")
	timeout := fs.Duration("timeout", 10*time.Second, "time allowed to connect and read the Handshake")
	stateDir := fs.String("state-dir", "", "directory holding the host's RSD UUID (env IOSMUX_STATE_DIR)")
	fs.Bool("rsd", false, "HOST PORT: the RSD endpoint to query (two arguments)")
	// --rsd takes two values, which package flag cannot express: pull them
	// out before parsing.
	var host, port string
	var rest []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--rsd" || args[i] == "-rsd" {
			if i+2 >= len(args) {
				fmt.Fprintln(a.stderr, "iosmux rsd-info: --rsd needs HOST and PORT")
				return errUsage
			}
			host, port = args[i+1], args[i+2]
			i += 2
			continue
		}
		rest = append(rest, args[i])
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if fs.NArg() != 0 || (host == "") == !*demo {
		fs.Usage()
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var hostID xpc.UUID
	if *demo {
		stop, addr, err := startDemoRSD(ctx, a)
		if err != nil {
			return err
		}
		defer stop()
		host, port = addr.IP.String(), strconv.Itoa(addr.Port)
		hostID, err = xpc.NewRandomUUID(nil) // the demo leaves no state behind
		if err != nil {
			return err
		}
	} else {
		dir, err := rsdStateDir(a, *stateDir)
		if err != nil {
			return err
		}
		if hostID, err = rsd.LoadOrCreateHostUUID(dir); err != nil {
			return err
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		fmt.Fprintf(a.stderr, "iosmux rsd-info: bad port %q\n", port)
		return errUsage
	}
	addr := net.JoinHostPort(host, port)
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("rsd %s: connect: %w", addr, err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: hostID, XPC: &xpc.Config{Name: "rsd " + addr, Logger: a.log}})
	if err != nil {
		return err
	}
	defer c.Close()
	if *asJSON {
		return writeJSON(a.stdout, xpcJSON(c.Handshake.Body()))
	}
	return printHandshake(a, c.Handshake)
}

func rsdStateDir(a *app, flagDir string) (string, error) {
	if flagDir != "" {
		return flagDir, nil
	}
	if d := a.getenv("IOSMUX_STATE_DIR"); d != "" {
		return d, nil
	}
	if d := a.getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "iosmux"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no state directory: set --state-dir or IOSMUX_STATE_DIR: %w", err)
	}
	return filepath.Join(home, ".local", "state", "iosmux"), nil
}

// startDemoRSD serves the published example device (rsd.md §5) on a
// loopback port until stop is called.
func startDemoRSD(ctx context.Context, a *app) (stop func(), addr *net.TCPAddr, err error) {
	srv, err := rsd.NewServer(rsd.ServerConfig{
		Properties: rsd.ExampleProperties(),
		Services:   rsd.ExampleServices(),
		// The example is an iOS 17.0 device, which spoke version 3.
		MessagingProtocolVersion: 3,
		Logger:                   a.log,
	})
	if err != nil {
		return nil, nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("demo rsd server: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(sctx, ln); err != nil {
			a.log.Error("demo rsd server", "err", err)
		}
	}()
	a.log.Info("demo: serving the published example iPhone", "rsd", ln.Addr().String(), "device_uuid", srv.UUID())
	return func() { cancel(); <-done }, ln.Addr().(*net.TCPAddr), nil
}

func printHandshake(a *app, h *rsd.Handshake) error {
	d := h.Device()
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Device\t%s (%s %s, build %s)\n", d.ProductType, d.ProductName, d.OSVersion, d.BuildVersion)
	fmt.Fprintf(w, "UDID\t%s\n", d.UDID)
	if d.UniqueChipID != 0 {
		fmt.Fprintf(w, "ECID\t%d\n", d.UniqueChipID)
	}
	if d.HardwareModel != "" {
		fmt.Fprintf(w, "Hardware\t%s %s %s\n", d.HardwareModel, d.HardwarePlatform, d.CPUArchitecture)
	}
	fmt.Fprintf(w, "RSD UUID\t%s\n", h.UUID)
	fmt.Fprintf(w, "Protocol\tMessagingProtocolVersion %d\n", h.MessagingProtocolVersion)
	fmt.Fprintf(w, "Properties\t%d\n", h.Properties.Len())
	fmt.Fprintf(w, "\nServices (%d)\n", len(h.Services))
	fmt.Fprintf(w, "PORT\tREMOTEXPC\tNAME\tENTITLEMENT\n")
	for _, s := range h.Services {
		xpcMark := "no"
		if s.UsesRemoteXPC() {
			xpcMark = "yes"
		}
		if s.IsShim() {
			xpcMark = "shim"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", s.Port, xpcMark, s.Name, s.Entitlement)
	}
	for _, name := range h.Skipped {
		fmt.Fprintf(w, "-\t-\t%s\t(skipped: bad Port)\n", name)
	}
	return w.Flush()
}

// xpcJSON converts an XPC value to what pymobiledevice3 prints: UUIDs as
// lower-case dashed text, data as base64, dates as RFC 3339, 64-bit
// integers as exact JSON numbers.
func xpcJSON(v xpc.Value) any {
	switch v := v.(type) {
	case *xpc.Dict:
		m := jsonObject{}
		for k, e := range v.All() {
			m.keys = append(m.keys, k)
			m.vals = append(m.vals, xpcJSON(e))
		}
		return m
	case xpc.Array:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = xpcJSON(e)
		}
		return out
	case xpc.String:
		return string(v)
	case xpc.Bool:
		return bool(v)
	case xpc.Int64:
		return jsonNumber(strconv.FormatInt(int64(v), 10))
	case xpc.Uint64:
		return jsonNumber(strconv.FormatUint(uint64(v), 10))
	case xpc.Double:
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil
		}
		return float64(v)
	case xpc.Date:
		return v.Time().Format(time.RFC3339Nano)
	case xpc.UUID:
		return v.String()
	case xpc.Data:
		return base64.StdEncoding.EncodeToString(v)
	case xpc.FileTransfer:
		size, _ := v.Size()
		return map[string]any{"file_transfer": v.ID, "size": size}
	case xpc.Null:
		return nil
	}
	return fmt.Sprint(v)
}

var jsonMarshal = json.Marshal

type jsonNumber string

func (n jsonNumber) MarshalJSON() ([]byte, error) { return []byte(n), nil }

// jsonObject keeps the dictionary's order in JSON output.
type jsonObject struct {
	keys []string
	vals []any
}

func (o jsonObject) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := jsonMarshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := jsonMarshal(o.vals[i])
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}
