// Package progress shows how long waits and transfers are going on a
// terminal, through github.com/schollz/progressbar: a spinner for a wait
// whose end is unknown, a bar for bytes or items. Every command reaches it
// through one switch (Out.On): nothing is drawn when the output is not a
// terminal or the command prints --json, so logs and scripts never see a
// carriage return.
//
// A transfer (mounter upload, app install, afc push/pull) wraps its
// reader or writer, or hands the library a callback:
//
//	bar := out.Bytes(size, "uploading DeveloperDiskImage.dmg")
//	defer bar.Done()
//	io.Copy(dst, bar.Reader(src))            // or: svc.Upload(ctx, f, bar.Set)
package progress

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Out is where progress is drawn and whether it is drawn at all.
type Out struct {
	W  io.Writer // standard error, normally
	On bool      // W is a terminal and the command's output is for a person
}

// Bar is a running spinner or bar. The zero value and a nil *Bar do
// nothing, so callers need not check Out.On. Its methods may be called
// from the goroutine doing the work only.
type Bar struct {
	pb *progressbar.ProgressBar
}

func (o Out) bar(max int64, desc string, opts ...progressbar.Option) *Bar {
	if !o.On || o.W == nil {
		return &Bar{}
	}
	base := []progressbar.Option{
		progressbar.OptionSetWriter(o.W),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(65 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	}
	return &Bar{pb: progressbar.NewOptions64(max, append(base, opts...)...)}
}

// Wait starts a spinner with the elapsed time for a wait of unknown
// length ("waiting for the device on the network").
func (o Out) Wait(desc string) *Bar {
	return o.bar(-1, desc, progressbar.OptionSpinnerType(14), progressbar.OptionSetElapsedTime(true))
}

// Bytes starts a bar for a transfer of total bytes (total < 0: unknown,
// a spinner with the bytes so far).
func (o Out) Bytes(total int64, desc string) *Bar {
	return o.bar(total, desc, progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))
}

// Count starts a bar for total items (apps, files).
func (o Out) Count(total int64, desc string) *Bar {
	return o.bar(total, desc, progressbar.OptionShowCount())
}

// Add records n more bytes or items.
func (b *Bar) Add(n int64) {
	if b != nil && b.pb != nil {
		b.pb.Add64(n)
	}
}

// Set records the amount done so far; its signature fits a library's
// progress callback (done, total bytes).
func (b *Bar) Set(done, total int64) {
	if b == nil || b.pb == nil {
		return
	}
	if total > 0 && total != b.pb.GetMax64() {
		b.pb.ChangeMax64(total)
	}
	b.pb.Set64(done)
}

// Describe changes the text (the step a wait is at).
func (b *Bar) Describe(desc string) {
	if b != nil && b.pb != nil {
		b.pb.Describe(desc)
	}
}

// Reader counts what is read through r.
func (b *Bar) Reader(r io.Reader) io.Reader {
	if b == nil || b.pb == nil {
		return r
	}
	return &countingReader{r: r, b: b}
}

// Writer counts what is written through w.
func (b *Bar) Writer(w io.Writer) io.Writer {
	if b == nil || b.pb == nil {
		return w
	}
	return io.MultiWriter(w, b.pb)
}

// Done removes the bar from the screen (and stops the spinner's ticker).
// It may be called more than once.
func (b *Bar) Done() {
	if b != nil && b.pb != nil {
		b.pb.Finish()
		b.pb.Exit()
	}
}

type countingReader struct {
	r io.Reader
	b *Bar
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.b.Add(int64(n))
	return n, err
}
