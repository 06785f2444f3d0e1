package housearrest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/reach"
)

type apps map[string]App

func (a apps) LookupApp(id string) (App, bool) { x, ok := a[id]; return x, ok }

func container(t *testing.T) string {
	d := t.TempDir()
	for _, s := range []string{"Documents", "Library/Caches", "Library/Preferences", "tmp"} {
		os.MkdirAll(filepath.Join(d, s), 0o755)
	}
	os.WriteFile(filepath.Join(d, "Library", "Preferences", "p.plist"), []byte("prefs"), 0o644)
	return d
}

// opener serves house_arrest over in-memory connections with the real
// AFC device role behind it.
type opener struct {
	srv *Server
	wg  sync.WaitGroup
}

func (o *opener) UDID() string { return "00008120-0000000000000001" }
func (o *opener) Open(ctx context.Context, s reach.Names) (net.Conn, error) {
	if s != reach.HouseArrest {
		return nil, &reach.NotListedError{Service: s.String()}
	}
	a, b := testkit.Pipe()
	o.wg.Go(func() { defer b.Close(); o.srv.Serve(context.Background(), b) })
	return a, nil
}

func newOpener(t *testing.T, a apps) *opener {
	o := &opener{srv: &Server{Apps: a, AFC: func(ctx context.Context, conn net.Conn, root, only string) {
		srv, err := afc.NewServer(afc.ServerConfig{Root: root, Only: only})
		if err != nil {
			t.Error(err)
			return
		}
		srv.Serve(ctx, conn)
	}}}
	t.Cleanup(o.wg.Wait)
	return o
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestVend(t *testing.T) {
	dev, share, store := container(t), container(t), container(t)
	o := newOpener(t, apps{
		"com.example.dev":        {Container: dev, Developer: true, FileSharing: true},
		"com.example.share":      {Container: share, FileSharing: true},
		"com.example.store":      {Container: store},
		"com.apple.mobilesafari": {Container: store, System: true, FileSharing: true, Developer: true},
	})
	ctx := ctxT(t)

	// The whole container of a developer app.
	conn, err := Open(ctx, o, "com.example.dev", false)
	if err != nil {
		t.Fatal(err)
	}
	c := afc.NewClient(conn, nil)
	names, err := c.ReadDir(ctx, "/")
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"Documents", "Library", "tmp"}) {
		t.Errorf("container root = %q, %v", names, err)
	}
	if _, err := c.WriteFile(ctx, "/Documents/new.txt", strings.NewReader("hi"), nil); err != nil {
		t.Error(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dev, "Documents", "new.txt")); string(b) != "hi" {
		t.Errorf("Documents/new.txt = %q", b)
	}
	if _, err := c.Stat(ctx, "/../.."); !errors.Is(err, os.ErrPermission) {
		t.Errorf("climbing out of the container: %v", err)
	}
	c.Close()

	// Documents only, for a file-sharing app.
	conn, err = Open(ctx, o, "com.example.share", true)
	if err != nil {
		t.Fatal(err)
	}
	c = afc.NewClient(conn, nil)
	if names, err := c.ReadDir(ctx, "/"); err != nil || !slices.Equal(names, []string{"Documents"}) {
		t.Errorf("documents root = %q, %v", names, err)
	}
	if _, err := c.Stat(ctx, "/Library/Preferences/p.plist"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("Library through VendDocuments: %v", err)
	}
	c.Close()

	for _, tc := range []struct {
		id   string
		docs bool
		want error
		name string
	}{
		{"com.example.missing", false, ErrNotInstalled, ErrorApplicationLookupFailed},
		{"com.example.missing", true, ErrNotInstalled, ErrorApplicationLookupFailed},
		{"com.example.share", false, ErrNotVendable, ErrorInstallationLookupFailed},
		{"com.example.store", true, ErrNotVendable, ErrorInstallationLookupFailed},
		{"com.apple.mobilesafari", false, ErrNotVendable, ErrorInstallationLookupFailed},
	} {
		_, err := Open(ctx, o, tc.id, tc.docs)
		var he *Error
		if !errors.Is(err, tc.want) || !errors.As(err, &he) || he.Name != tc.name {
			t.Errorf("Open %s (documents %v): %v, want %s", tc.id, tc.docs, err, tc.name)
		}
	}

	// go-ios's fallback: the container is refused, Documents is not.
	conn, cmd, err := OpenAuto(ctx, o, "com.example.share")
	if err != nil || cmd != VendDocuments {
		t.Fatalf("OpenAuto = %v, %v", cmd, err)
	}
	conn.Close()
	if _, _, err := OpenAuto(ctx, o, "com.example.store"); !errors.Is(err, ErrNotVendable) || !strings.Contains(err.Error(), "UIFileSharingEnabled") {
		t.Errorf("OpenAuto of an app that shares nothing: %v", err)
	}
}

// TestServerBadRequests: the SIM answers to requests that are not a vend.
func TestServerBadRequests(t *testing.T) {
	o := newOpener(t, apps{})
	ctx := ctxT(t)
	for _, tc := range []struct {
		req  any
		want string
	}{
		{map[string]any{"Command": "Frobnicate", "Identifier": "x"}, "UnknownCommand"},
		{map[string]any{"Identifier": "x"}, "UnknownCommand"},
		{map[string]any{"Command": "VendContainer"}, "MissingIdentifier"},
		{map[string]any{"Command": "VendContainer", "Identifier": 5}, "MissingIdentifier"},
		{[]any{"not", "a", "dict"}, "UnknownCommand"},
	} {
		conn, _ := o.Open(ctx, reach.HouseArrest)
		pc := lockdown.NewPlistConn(conn, 0)
		pc.Send(ctx, tc.req)
		rep, err := pc.ReceiveMessage(ctx)
		if err != nil || rep["Error"] != tc.want {
			t.Errorf("%v: reply %v, %v; want Error %s", tc.req, rep, err, tc.want)
		}
		if _, err := pc.ReceiveMessage(ctx); !lockdown.IsClosed(err) {
			t.Errorf("%v: the device kept the connection open: %v", tc.req, err)
		}
		conn.Close()
	}
}
