package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/rsd"
)

func TestRSDInfoDemoJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"rsd-info", "--demo", "--json"}, &out, &errb, func(string) string { return "" }); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	dec := json.NewDecoder(&out)
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	props := v["Properties"].(map[string]any)
	if props["RemoteXPCVersionFlags"].(json.Number).String() != "72057594037927942" || props["ProductType"] != "iPhone15,3" {
		t.Errorf("properties: %v", props)
	}
	if len(v["Services"].(map[string]any)) != 7 || v["UUID"] == "" || v["UUID"] == rsd.ExampleUUID {
		t.Errorf("services or uuid: %v %v", v["Services"], v["UUID"])
	}
}

func TestRSDInfoAgainstServer(t *testing.T) {
	srv, err := rsd.NewServer(rsd.ServerConfig{Properties: rsd.ExampleProperties(), Services: rsd.ExampleServices()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	state := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"rsd-info", "--rsd", "127.0.0.1", port, "--state-dir", state}, &out, &errb, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"iPhone15,3", "222222222", srv.UUID().String(), "52291  yes", "com.apple.mobile.lockdown.remote.untrusted"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := rsd.LoadOrCreateHostUUID(state); err != nil {
		t.Errorf("host uuid not persisted: %v", err)
	}
}

func TestRSDInfoUsage(t *testing.T) {
	for _, args := range [][]string{{"rsd-info"}, {"rsd-info", "--rsd", "h"}, {"rsd-info", "--rsd", "h", "x"}, {"rsd-info", "--demo", "--rsd", "h", "1"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb, func(string) string { return "" }); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"rsd-info", "--rsd", "127.0.0.1", "1", "--timeout", "2s", "--state-dir", t.TempDir()}, &out, &errb, func(string) string { return "" }); code != 1 || !strings.Contains(errb.String(), "127.0.0.1:1") {
		t.Errorf("refused port: exit %d, stderr %q", code, errb.String())
	}
}
