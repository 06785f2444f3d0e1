package mounter

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
)

const ecid = 0x1234567890ABCDF0

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// device is a mounter Server with Developer Mode state and the TSS
// stand-in's ticket check, as the simulator composes it.
type device struct {
	srv     *Server
	devMode bool
	mu      sync.Mutex
	changes int
}

func newDevice(board, chip uint64) *device {
	d := &device{devMode: true}
	d.srv = NewServer(ServerConfig{
		Identifiers: func() map[string]any {
			return map[string]any{"BoardId": board, "ChipID": chip, "UniqueChipID": uint64(ecid), "SecurityDomain": uint64(1),
				"EffectiveProductionStatusAp": true, "EffectiveSecurityModeAp": true, "Ap,SikaFuse": uint64(0)}
		},
		DeveloperMode: func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.devMode },
		Verify: func(ticket, nonce, img, tc []byte) error {
			if !bytes.Equal(ticket, tss.SimTicket(ecid, nonce, img, tc)) {
				return ErrTicketMismatch
			}
			return nil
		},
		OnChange: func() { d.mu.Lock(); d.changes++; d.mu.Unlock() },
	})
	return d
}

func (d *device) tssDevice(board, chip uint64) func(uint64) (tss.KnownDevice, bool) {
	return func(e uint64) (tss.KnownDevice, bool) {
		return tss.KnownDevice{ECID: ecid, BoardID: board, ChipID: chip, Nonce: d.srv.Nonce()}, e == ecid
	}
}

// pipeOpener serves every Open with the device over an in-memory pipe.
type pipeOpener struct {
	d  *device
	wg sync.WaitGroup
}

func (p *pipeOpener) UDID() string { return "00008120-1234567890ABCDF0" }
func (p *pipeOpener) Open(ctx context.Context, s reach.Names) (net.Conn, error) {
	if s != reach.Mounter {
		return nil, &reach.NotListedError{Service: s.String()}
	}
	a, b := net.Pipe()
	p.wg.Go(func() {
		defer b.Close()
		p.d.srv.Serve(context.Background(), b)
	})
	return a, nil
}

func bundle(t *testing.T) *ddi.Bundle {
	b, err := ddi.Open("ddi/testdata/ddi_restore")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexFrame(t *testing.T, name string) lockdown.Message {
	t.Helper()
	payload, rest, err := lockdown.ParseFrame(testkit.ReadHex(t, name), 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("%s: %v (%d bytes left)", name, err, len(rest))
	}
	m, err := lockdown.ParseMessage(payload)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRequestVectors: our client's QueryPersonalizationIdentifiers and
// QueryNonce are the requests of lp04 (go-ios's form) and lp05; the lp06
// reply reads as Developer Mode off.
func TestRequestVectors(t *testing.T) {
	for _, tt := range []struct {
		vector string
		call   func(*Client)
	}{
		{"lp04_mim_query_personalization_identifiers_request.hex", func(c *Client) { c.Identifiers(context.Background()) }},
		{"lp05_mim_query_nonce_request.hex", func(c *Client) { c.Nonce(context.Background()) }},
	} {
		t.Run(tt.vector, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			go tt.call(NewClient(b))
			got, err := lockdown.NewPlistConn(a, 0).ReceiveMessage(ctxT(t))
			b.Close()
			if err != nil {
				t.Fatal(err)
			}
			want := hexFrame(t, tt.vector)
			if len(got) != len(want) {
				t.Fatalf("request %v, want %v", got, want)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
	err := checkReply(cmdMount, hexFrame(t, "lp06_mim_mount_not_enabled_reply.hex"))
	if !errors.Is(err, ErrDeveloperModeOff) || errors.Is(err, ErrAlreadyMounted) {
		t.Errorf("lp06 reads as %v", err)
	}
}

func TestCommands(t *testing.T) {
	d := newDevice(14, 0x8120)
	o := &pipeOpener{d: d}
	defer o.wg.Wait()
	ctx := ctxT(t)
	c, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if sigs, err := c.LookupImage(ctx, ImageTypePersonalized); err != nil || len(sigs) != 0 {
		t.Errorf("LookupImage = %v, %v", sigs, err)
	}
	if e, err := c.CopyDevices(ctx); err != nil || len(e) != 0 {
		t.Errorf("CopyDevices = %v, %v", e, err)
	}
	if on, err := c.DeveloperModeStatus(ctx); err != nil || !on {
		t.Errorf("DeveloperModeStatus = %v, %v", on, err)
	}
	ids, err := c.Identifiers(ctx)
	if err != nil || ids.BoardID != 14 || ids.ChipID != 0x8120 || ids.ECID != ecid || ids.All["Ap,SikaFuse"] != uint64(0) {
		t.Errorf("Identifiers = %+v, %v", ids, err)
	}
	n1, err := c.Nonce(ctx)
	if err != nil || len(n1) != NonceSize {
		t.Errorf("Nonce = %x, %v", n1, err)
	}
	if err := c.Unmount(ctx, MountPath); !errors.Is(err, ErrNotMounted) {
		t.Errorf("Unmount with nothing mounted: %v", err)
	}
	if err := c.Mount(ctx, []byte("x"), []byte("y"), nil); err == nil || !strings.Contains(err.Error(), "No image has been received") {
		t.Errorf("Mount without an upload: %v", err)
	}
	if _, err := c.request(ctx, map[string]any{"Command": "Frobnicate"}); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := c.request(ctx, map[string]any{"Command": cmdReceiveBytes, "ImageType": "Personalized", "ImageSize": uint64(3 << 30)}); err == nil {
		t.Error("an oversized upload was acknowledged")
	}
	if _, err := c.request(ctx, map[string]any{"Command": cmdUnmount, "MountPath": uint64(1)}); err == nil || !strings.Contains(err.Error(), "Invalid value for MountPath") {
		t.Errorf("ill-typed MountPath: %v", err)
	}
	// A refused manifest query ends the connection.
	if _, err := c.Manifest(ctx, make([]byte, 48)); !errors.Is(err, ErrNoManifest) {
		t.Errorf("Manifest of an unknown image: %v", err)
	}
	if _, err := c.LookupImage(ctx, ImageTypePersonalized); !lockdown.IsClosed(err) {
		t.Errorf("after the refused query the connection is open: %v", err)
	}
	// Rolling the nonce closes the connection too, and changes it.
	c2, _ := Open(ctx, o)
	defer c2.Close()
	if err := c2.RollNonce(ctx); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(d.srv.Nonce(), n1) {
		t.Error("RollPersonalizationNonce kept the nonce")
	}
}

func standIn(t *testing.T, d *device, board, chip uint64) (*tss.StandIn, *tss.Client) {
	s := &tss.StandIn{Lookup: d.tssDevice(board, chip)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, &tss.Client{URL: srv.URL + "/TSS/controller?action=2"}
}

// TestMount: the personalized flow against the device role and the TSS
// stand-in: TSS branch, already mounted, unmount, offline branch (no TSS
// request), Developer Mode off, the missing identity named, a TSS refusal
// with Apple's message, a stale manifest after a nonce roll.
func TestMount(t *testing.T) {
	d := newDevice(14, 0x8120)
	o := &pipeOpener{d: d}
	defer o.wg.Wait()
	ctx := ctxT(t)
	s, client := standIn(t, d, 14, 0x8120)
	var steps []Step
	var uploaded int64
	cfg := MountConfig{Bundle: bundle(t), TSS: client, Progress: func(p Progress) {
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
		if p.Step == StepUpload {
			uploaded = p.Done
		}
	}}
	res, err := Mount(ctx, o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyMounted || res.Manifest != FromTSS || s.Requests() != 1 || res.Bytes != 960 || uploaded != 960 {
		t.Errorf("first mount %+v, %d TSS requests, %d bytes reported", res, s.Requests(), uploaded)
	}
	want := []Step{StepCheck, StepIdentity, StepManifest, StepPersonalize, StepUpload, StepMount}
	if len(steps) != len(want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
	img, ok := d.srv.Mounted()
	dmg, _ := os.ReadFile("ddi/testdata/ddi_restore/Image.dmg")
	if h := sha512.Sum384(dmg); !ok || !bytes.Equal(img.Digest, h[:]) {
		t.Fatalf("device mounted %x, %v", img.Digest, ok)
	}
	st, err := List(ctx, o)
	if err != nil || !st.Mounted() || len(st.Entries) != 1 || st.Entries[0].MountPath != MountPath {
		t.Errorf("List = %+v, %v", st, err)
	}
	if res, err := Mount(ctx, o, cfg); err != nil || !res.AlreadyMounted {
		t.Errorf("second mount %+v, %v", res, err)
	}

	if err := Unmount(ctx, o); err != nil {
		t.Fatal(err)
	}
	res, err = Mount(ctx, o, cfg)
	if err != nil || res.Manifest != FromDevice || s.Requests() != 1 {
		t.Fatalf("re-mount %+v, %v, %d TSS requests (want the offline branch)", res, err, s.Requests())
	}
	Unmount(ctx, o)

	// A rolled nonce invalidates the kept manifest: TSS again.
	c, _ := Open(ctx, o)
	c.RollNonce(ctx)
	c.Close()
	if res, err = Mount(ctx, o, cfg); err != nil || res.Manifest != FromTSS || s.Requests() != 2 {
		t.Fatalf("mount after a nonce roll %+v, %v", res, err)
	}
	Unmount(ctx, o)

	d.mu.Lock()
	d.devMode = false
	d.mu.Unlock()
	if _, err := Mount(ctx, o, cfg); !errors.Is(err, ErrDeveloperModeOff) || !strings.Contains(err.Error(), "amfi enable") {
		t.Errorf("Developer Mode off: %v", err)
	}
}

func TestMountFailures(t *testing.T) {
	ctx := ctxT(t)
	// A device the DDI has no identity for.
	d := newDevice(0x1A, 0x8020)
	o := &pipeOpener{d: d}
	defer o.wg.Wait()
	_, err := Mount(ctx, o, MountConfig{Bundle: bundle(t), TSS: &tss.Client{URL: "http://127.0.0.1:1/unused"}})
	if !errors.Is(err, ddi.ErrNoIdentity) || !strings.Contains(err.Error(), "BoardId 0x1A, ChipID 0x8020") {
		t.Errorf("missing identity: %v", err)
	}
	// TSS refuses (its idea of the board differs): Apple's status and
	// message reach the caller, nothing is mounted.
	d2 := newDevice(14, 0x8120)
	o2 := &pipeOpener{d: d2}
	defer o2.wg.Wait()
	_, client := standIn(t, d2, 12, 0x8120)
	_, err = Mount(ctx, o2, MountConfig{Bundle: bundle(t), TSS: client})
	if !errors.Is(err, tss.ErrRefused) || !strings.Contains(err.Error(), "STATUS=94: "+tss.RefusedMessage) {
		t.Errorf("TSS refusal: %v", err)
	}
	if _, ok := d2.srv.Mounted(); ok {
		t.Error("mounted after a refusal")
	}
	// A manifest that is not the device's: MountImage refuses.
	c, _ := Open(ctx, o2)
	defer c.Close()
	dmg, _ := os.ReadFile("ddi/testdata/ddi_restore/Image.dmg")
	if err := c.Upload(ctx, ImageTypePersonalized, []byte("bogus"), bytes.NewReader(dmg), int64(len(dmg)), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Mount(ctx, []byte("bogus"), []byte("tc"), nil); err == nil || !strings.Contains(err.Error(), "Failed to mount") {
		t.Errorf("bogus manifest: %v", err)
	}
	// An image that is not the one its manifest names: uploaded (the
	// manifest's digest names it), caught by the upload's own hash, not
	// mounted.
	alt := t.TempDir()
	for _, n := range []string{"BuildManifest.plist", "Image.dmg", "Image.dmg.trustcache"} {
		b, _ := os.ReadFile(filepath.Join("ddi/testdata/ddi_restore", n))
		if n == "Image.dmg" {
			b[0] ^= 1
		}
		os.WriteFile(filepath.Join(alt, n), b, 0o644)
	}
	altBundle, err := ddi.Open(alt)
	if err != nil {
		t.Fatal(err)
	}
	d2.srv.StoreManifest(sha384(dmgBytes(t)), Manifest{Ticket: tss.SimTicket(ecid, d2.srv.Nonce(), sha384(dmgBytes(t)), sha384(tcBytes(t))), TrustCacheDigest: sha384(tcBytes(t))})
	if _, err := Mount(ctx, o2, MountConfig{Bundle: altBundle}); err == nil || !strings.Contains(err.Error(), "does not match the digest") {
		t.Errorf("altered image: %v", err)
	}
	if _, ok := d2.srv.Mounted(); ok {
		t.Error("an altered image was mounted")
	}
	// A short image: the upload fails rather than hang.
	c3, _ := Open(ctx, o2)
	defer c3.Close()
	if err := c3.Upload(ctx, ImageTypePersonalized, nil, io.LimitReader(bytes.NewReader(dmg), 10), 960, nil); err == nil {
		t.Error("short upload accepted")
	}
}

// FuzzReply: the host's reply parsers on any frame payload.
func FuzzReply(f *testing.F) {
	for _, n := range []string{"lp02_rsdcheckin_reply.hex", "lp06_mim_mount_not_enabled_reply.hex"} {
		f.Add(testkit.ReadHex(f, n)[4:])
	}
	f.Add([]byte(`<plist><dict><key>EntryList</key><array><dict><key>MountPath</key><string>/System/Developer</string><key>ImageSignature</key><data>AAAA</data></dict></array><key>ImageSignature</key><array><data>AA==</data></array><key>PersonalizationIdentifiers</key><dict><key>BoardId</key><integer>14</integer><key>ChipID</key><integer>33056</integer></dict></dict></plist>`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := lockdown.ParseMessage(payload)
		if err != nil {
			return
		}
		checkReply("X", m)
		parseLookup(m)
		parseEntries(m)
		parseIdentifiers(m)
	})
}

// FuzzServerRequest: the device role on any request dictionary: no panic,
// and a reply or a close.
func FuzzServerRequest(f *testing.F) {
	for _, n := range []string{"lp04_mim_query_personalization_identifiers_request.hex", "lp05_mim_query_nonce_request.hex"} {
		f.Add(testkit.ReadHex(f, n)[4:])
	}
	f.Add([]byte(`<plist><dict><key>Command</key><string>MountImage</string><key>ImageType</key><string>Personalized</string><key>ImageSignature</key><data>AA==</data><key>ImageTrustCache</key><data>AA==</data></dict></plist>`))
	f.Add([]byte(`<plist><dict><key>Command</key><string>UnmountImage</string><key>MountPath</key><integer>3</integer></dict></plist>`))
	d := newDevice(14, 0x8120)
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := lockdown.ParseMessage(payload)
		if err != nil {
			return
		}
		cmd, _ := m.String("Command")
		if cmd == cmdReceiveBytes {
			return // reads raw bytes from the connection
		}
		ss := &session{s: d.srv}
		ss.handle(context.Background(), nil, cmd, m)
	})
}

func dmgBytes(t *testing.T) []byte {
	b, err := os.ReadFile("ddi/testdata/ddi_restore/Image.dmg")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tcBytes(t *testing.T) []byte {
	b, err := os.ReadFile("ddi/testdata/ddi_restore/Image.dmg.trustcache")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
