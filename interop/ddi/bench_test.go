package ddi_test

import (
	"context"
	"io"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/danielpaulus/go-ios/ios/imagemounter"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
)

// BenchmarkDDIMount mounts a 256 MiB personalized DDI on one simulated
// iPhone through usbmuxd (lockdown, service TLS), in the same run:
//
//   - iosmux auto-mount, TSS branch (the nonce rolled first, so the device
//     keeps no valid manifest and the fleet's stand-in signs);
//   - iosmux auto-mount, offline branch (the manifest the device kept);
//   - go-ios v1.3.2's imagemounter.MountImage of the same folder (offline:
//     it signs at Apple, which tests never reach).
//
// Each mount hashes the image on the host, uploads it and mounts; the
// device hashes what it receives. Reported: each one's end-to-end time and
// MB/s (image bytes / mount time), iosmux's upload-only MB/s, and the
// ratio iosmux/go-ios of the offline mounts (medians over b.N).
//
//	cd interop && go test -run '^$' -bench BenchmarkDDIMount -benchtime 5x ./ddi/
func BenchmarkDDIMount(b *testing.B) {
	const size = 256 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	f := startFleet(b, sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), DeveloperMode: true})
	dev := f.Devices()[0]
	mux := muxClient(f)
	if _, err := lockdown.PairUsbmux(ctx, mux, usbDevice(b, ctx, mux, dev), lockdown.PairOptions{HostName: "ddi-bench"}); err != nil {
		b.Fatal(err)
	}
	b.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+f.UsbmuxSocket())
	image := io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
	dir := copyDDI(b, b.TempDir(), nil, image)
	src := mounter.Source{Dir: dir}
	cfg := mounter.MountConfig{TSS: &tss.Client{URL: f.TSSURL()}}
	entry := goiosEntry(b, dev.UDID())

	lo, err := reach.NewLockdown(ctx, mux, dev.UDID())
	if err != nil {
		b.Fatal(err)
	}
	unmount := func() {
		if err := mounter.Unmount(ctx, lo); err != nil {
			b.Fatal(err)
		}
	}
	var tssT, offT, upT, goT []time.Duration
	b.ResetTimer()
	for range b.N {
		c, err := mounter.Open(ctx, lo)
		if err != nil {
			b.Fatal(err)
		}
		c.RollNonce(ctx)
		c.Close()
		before := f.TSS().Requests()
		res, err := mounter.AutoMount(ctx, lo, src, cfg)
		if err != nil || res.Manifest != mounter.FromTSS || f.TSS().Requests() != before+1 {
			b.Fatalf("TSS branch: %+v, %v", res, err)
		}
		tssT = append(tssT, res.Took)
		unmount()

		res, err = mounter.AutoMount(ctx, lo, src, cfg)
		if err != nil || res.Manifest != mounter.FromDevice {
			b.Fatalf("offline branch: %+v, %v", res, err)
		}
		offT, upT = append(offT, res.Took), append(upT, res.Upload)
		unmount()

		start := time.Now()
		if err := imagemounter.MountImage(entry, dir); err != nil {
			b.Fatalf("go-ios MountImage: %v", err)
		}
		goT = append(goT, time.Since(start))
		if _, ok := dev.MountedDDI(); !ok {
			b.Fatal("go-ios did not mount")
		}
		unmount()
	}
	b.StopTimer()
	mbs := func(d time.Duration) float64 { return size / d.Seconds() / 1e6 }
	tm, om, um, gm := median(tssT), median(offT), median(upT), median(goT)
	b.ReportMetric(float64(tm.Milliseconds()), "tss-ms")
	b.ReportMetric(float64(om.Milliseconds()), "offline-ms")
	b.ReportMetric(float64(gm.Milliseconds()), "goios-ms")
	b.ReportMetric(mbs(om), "iosmux-MB/s")
	b.ReportMetric(mbs(um), "upload-MB/s")
	b.ReportMetric(mbs(gm), "goios-MB/s")
	b.ReportMetric(gm.Seconds()/om.Seconds(), "iosmux/goios")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
