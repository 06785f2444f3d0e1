package progress

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestOff: with On false nothing is written, and the wrappers pass data
// through unchanged.
func TestOff(t *testing.T) {
	var screen bytes.Buffer
	o := Out{W: &screen}
	b := o.Bytes(11, "copying")
	var dst bytes.Buffer
	if _, err := io.Copy(b.Writer(&dst), b.Reader(strings.NewReader("hello world"))); err != nil {
		t.Fatal(err)
	}
	b.Set(5, 11)
	b.Describe("x")
	b.Done()
	o.Wait("waiting").Done()
	var nilBar *Bar
	nilBar.Add(1)
	nilBar.Done()
	if dst.String() != "hello world" || screen.Len() != 0 {
		t.Errorf("copied %q, drew %q; want the data and nothing drawn", dst.String(), screen.String())
	}
}

// TestOn: on a terminal the bar draws the description and the bytes, and
// Done clears it.
func TestOn(t *testing.T) {
	var screen bytes.Buffer
	o := Out{W: &screen, On: true}
	b := o.Bytes(4<<20, "uploading image.dmg")
	var dst bytes.Buffer
	if _, err := io.Copy(&dst, b.Reader(bytes.NewReader(make([]byte, 4<<20)))); err != nil {
		t.Fatal(err)
	}
	b.Done()
	b.Done()
	if dst.Len() != 4<<20 {
		t.Fatalf("copied %d bytes", dst.Len())
	}
	s := screen.String()
	if !strings.Contains(s, "uploading image.dmg") || !strings.Contains(s, "MB") {
		t.Errorf("screen %q lacks the description or the byte count", s)
	}
	w := o.Wait("waiting for the device")
	w.Done()
	if !strings.Contains(screen.String(), "waiting for the device") {
		t.Errorf("spinner not drawn: %q", screen.String())
	}
}
