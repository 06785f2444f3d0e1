package xpc

import (
	"bytes"
	"errors"
	"testing"
)

// A handle (tag + u64le id) decodes only with DecodeOptions.Handles; the
// RemoteXPC decoder keeps rejecting it.
func TestHandles(t *testing.T) {
	v := NewDict("endpoint", NewHandle(KindEndpoint, 7), "list", Array{NewHandle(KindFD, 1<<40), String("x")})
	b, err := AppendValue(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x00, 0x20, 0x01, 0x00, 7, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Contains(b, want) {
		t.Fatalf("encoding %x lacks endpoint handle %x", b, want)
	}
	if _, err := DecodeValue(b); err == nil {
		t.Fatal("RemoteXPC decoder accepted a handle")
	}
	if _, err := (DecodeOptions{KernelObjects: true}).DecodeValue(b); err == nil {
		t.Fatal("KernelObjects decoder accepted an endpoint handle")
	}
	got, err := DecodeOptions{Handles: true}.DecodeValue(b)
	if err != nil {
		t.Fatal(err)
	}
	d := got.(*Dict)
	o, ok := d.Get("endpoint").(Opaque)
	if !ok || o.Type != KindEndpoint {
		t.Fatalf("endpoint = %#v, want Opaque endpoint", d.Get("endpoint"))
	}
	if id, ok := o.Handle(); !ok || id != 7 {
		t.Fatalf("Handle() = %d, %v; want 7, true", id, ok)
	}
	fd, _ := d.Array("list")[0].(Opaque)
	if id, ok := fd.Handle(); !ok || fd.Type != KindFD || id != 1<<40 {
		t.Fatalf("fd handle = %#v", d.Array("list")[0])
	}
	b2, _ := AppendValue(nil, got)
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
	}
	// Truncated handle.
	_, err = DecodeOptions{Handles: true}.DecodeValue(want[:8])
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated handle: %v, want ErrTruncated", err)
	}
	// A value kind is never a handle.
	if IsHandleKind(KindString) || IsHandleKind(KindDict) || !IsHandleKind(KindMachRecv) {
		t.Fatal("IsHandleKind classification wrong")
	}
	if _, ok := (Opaque{Type: KindString, Body: make([]byte, 8)}).Handle(); ok {
		t.Fatal("a string kind reported a handle")
	}
}
