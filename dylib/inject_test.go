package dylib

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// The dylib's sources (inject/, C and Objective-C for macOS) are checked
// here on Linux: every file compiles with clang in syntax-only mode against
// the macOS declarations in inject/test/sdk, and the converter is built for
// real against an in-memory libxpc stand-in (inject/test/xpcstub.c) and
// round-trips values with this package's codec in both directions. clang
// is installed by scripts/setup.sh; without it these tests fail.

const injectDir = "../inject"

func clang(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("clang")
	if err != nil {
		t.Fatalf("clang not found (scripts/setup.sh installs it): %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = injectDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clang %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// commonFlags are the flags of inject/Makefile that matter for the check,
// with the test SDK in place of macOS's.
var commonFlags = []string{"-Wall", "-Wextra", "-Werror", "-fblocks", "-DOS_OBJECT_USE_OBJC=0",
	"-isystem", "test/sdk", "-include", "test/sdk/iosmux_linux_compat.h", "-I", "."}

func TestInjectSyntax(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(injectDir, "*.[cm]"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sources in %s: %v", injectDir, err)
	}
	seen := 0
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			args := append([]string{"-fsyntax-only"}, commonFlags...)
			if strings.HasSuffix(name, ".m") {
				args = append(args, "-x", "objective-c", "-fobjc-runtime=macosx-10.15", "-fno-objc-arc")
			} else {
				args = append(args, "-std=c11")
			}
			clang(t, append(args, name)...)
		})
		seen++
	}
	for _, want := range []string{"iosmux_main.m", "iosmux_xpcconv.c", "iosmux_device.m", "iosmux_md_proxy.m", "iosmux_gambit.m"} {
		if _, err := os.Stat(filepath.Join(injectDir, want)); err != nil {
			t.Errorf("%s missing: %v", want, err)
		}
	}
}

// buildRoundtrip compiles the converter with the stand-in and the harness,
// under AddressSanitizer and UBSan.
func buildRoundtrip(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "roundtrip")
	clang(t, append([]string{"-std=c11", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
		"-o", bin, "iosmux_xpcconv.c", "test/xpcstub.c", "test/roundtrip.c"}, commonFlags...)...)
	return bin
}

func runRoundtrip(t *testing.T, bin string, in [][]byte, args ...string) [][]byte {
	t.Helper()
	var stdin bytes.Buffer
	for _, b := range in {
		stdin.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(b))))
		stdin.Write(b)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = &stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("roundtrip: %v\n%s", err, stderr.String())
	}
	var res [][]byte
	for len(out) >= 4 {
		n := binary.LittleEndian.Uint32(out)
		out = out[4:]
		if n == 0xffffffff {
			res = append(res, nil)
			continue
		}
		if int(n) > len(out) {
			t.Fatalf("roundtrip output truncated")
		}
		res = append(res, out[:n])
		out = out[n:]
	}
	return res
}

func enc(t *testing.T, v xpc.Value) []byte {
	t.Helper()
	b, err := xpc.AppendValue(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Go → C → Go: every kind, nesting, the vectors and the handles come back
// byte for byte; malformed input is refused without a crash.
func TestConverterRoundTrip(t *testing.T) {
	bin := buildRoundtrip(t)
	type tc struct {
		name string
		b    []byte
		ok   bool
	}
	var cases []tc
	for name, obj := range objectVectors(t) {
		switch {
		case strings.HasPrefix(name, "15_"):
			// go-ios's short array length: iosmux never sends it.
		case strings.HasPrefix(name, "12_"):
			// RemoteXPC's file_transfer: no libxpc object has that type.
			cases = append(cases, tc{name, obj, false})
		default:
			cases = append(cases, tc{name, obj, true})
		}
	}
	for _, f := range sampleFrames() {
		if f.Payload != nil {
			cases = append(cases, tc{"frame " + f.Kind.String(), enc(t, f.Payload), true})
		}
	}
	deep := xpc.Value(xpc.String("leaf"))
	for range 30 { // 60 containers
		deep = xpc.Array{xpc.NewDict("k", deep)}
	}
	cases = append(cases,
		tc{"deep", enc(t, deep), true},
		tc{"handles", enc(t, xpc.NewDict("ep", xpc.NewHandle(xpc.KindEndpoint, 1), "c", xpc.NewHandle(xpc.KindConnection, 2),
			"fd", xpc.NewHandle(xpc.KindFD, 3))), true},
		tc{"unknown handle", enc(t, xpc.NewHandle(xpc.KindEndpoint, 99)), false},
		tc{"handle of another type", enc(t, xpc.NewHandle(xpc.KindConnection, 1)), false},
		tc{"too deep", enc(t, xpc.Array{xpc.Array{deep}}), true},
		tc{"utf8", enc(t, xpc.String("iPhone ✓ 𝄞")), true},
	)
	// 64 nested arrays decode; 65 do not (the Go side's bound too). The
	// Go encoder refuses to write 65, so these are built by hand.
	nested := func(n int) []byte {
		b := enc(t, xpc.Null{})
		for range n {
			w := binary.LittleEndian.AppendUint32(nil, uint32(xpc.KindArray))
			w = binary.LittleEndian.AppendUint32(w, uint32(4+len(b)))
			w = binary.LittleEndian.AppendUint32(w, 1)
			b = append(w, b...)
		}
		return b
	}
	cases = append(cases, tc{"nesting 64", nested(64), true}, tc{"nesting 65", nested(65), false})
	if _, err := (xpc.DecodeOptions{Handles: true, MaxDepth: maxDepth}).DecodeValue(nested(65)); err == nil {
		t.Error("the Go decoder accepts 65 nested containers")
	}
	// Malformed: bad UTF-8, missing NUL, wrong lengths, trailing bytes,
	// and every prefix of a rich value.
	bad := enc(t, xpc.String("abc"))
	bad[8] = 0xff
	cases = append(cases, tc{"bad utf8", bad, false})
	noNul := enc(t, xpc.String("abc"))
	noNul[11] = 'd'
	cases = append(cases, tc{"no NUL", noNul, false})
	cases = append(cases, tc{"trailing", append(enc(t, xpc.Null{}), 0, 0, 0, 0), false})
	rich := enc(t, sampleFrames()[5].Payload)
	for i := range len(rich) {
		cases = append(cases, tc{fmt.Sprintf("prefix %d", i), rich[:i], false})
	}
	in := make([][]byte, len(cases))
	for i, c := range cases {
		in[i] = c.b
	}
	out := runRoundtrip(t, bin, in)
	if len(out) != len(cases) {
		t.Fatalf("%d answers for %d values", len(out), len(cases))
	}
	for i, c := range cases {
		switch {
		case c.ok && out[i] == nil:
			t.Errorf("%s: refused by the C converter", c.name)
		case c.ok && !bytes.Equal(out[i], c.b):
			t.Errorf("%s: C re-encoding differs:\n got %x\nwant %x", c.name, out[i], c.b)
		case !c.ok && out[i] != nil:
			t.Errorf("%s: accepted by the C converter: %x", c.name, out[i])
		}
	}
}

// C → Go: objects built with the libxpc API decode in Go to the values
// they are.
func TestConverterNative(t *testing.T) {
	out := runRoundtrip(t, buildRoundtrip(t), nil, "native")
	u, _ := xpc.ParseUUID("6f1d0e8a-3b2c-4d5e-8f90-a1b2c3d4e5f6")
	want := []xpc.Value{
		xpc.Null{}, xpc.Bool(true), xpc.Bool(false), xpc.Int64(-1), xpc.Uint64(1<<64 - 1), xpc.Double(0.5),
		xpc.Date(1700000000123456789), xpc.Data{1, 2, 3}, xpc.String("iPhone ✓"), u, xpc.Array{}, xpc.NewDict(),
		xpc.NewHandle(xpc.KindEndpoint, 1),
		xpc.NewDict("CoreDevice.actionIdentifier", xpc.String("x"),
			"list", xpc.Array{xpc.Int64(7), xpc.String("x"), xpc.NewDict()}, "ep", xpc.NewHandle(xpc.KindEndpoint, 1)),
	}
	if len(out) != len(want) {
		t.Fatalf("%d values from C, want %d", len(out), len(want))
	}
	for i, w := range want {
		v, err := xpc.DecodeOptions{Handles: true}.DecodeValue(out[i])
		if err != nil {
			t.Errorf("value %d: %v (%x)", i, err, out[i])
			continue
		}
		if !bytes.Equal(enc(t, v), enc(t, w)) || v.Kind() != w.Kind() {
			t.Errorf("value %d: got %#v, want %#v", i, v, w)
		}
	}
}
