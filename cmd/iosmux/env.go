package main

import "fmt"

// envVar is one environment variable the program reads.
type envVar struct {
	Name, Help string
}

// envVars lists every variable iosmux reads; docs/cli.md prints it. Under
// test, reading one not listed here panics (strictEnv).
var envVars = []envVar{
	{"IOSMUX_LOG_LEVEL", "default of --log-level"},
	{"IOSMUX_LOG_FORMAT", "default of --log-format"},
	{"IOSMUX_STATE_DIR", "default of --state-dir: the host's RSD UUID, the backend's identities, simulated devices (default $XDG_STATE_HOME/iosmux or ~/.local/state/iosmux)"},
	{"XDG_STATE_HOME", "the base of the default state folder"},
	{"IOSMUX_PAIR_RECORDS", "default of --pair-records: RemotePairing records (default ~/.pymobiledevice3, shared with pymobiledevice3)"},
	{"HOME", "the home folder, for the defaults above"},
	{"SUDO_USER", "under sudo: pair records and the state folder are this user's (~/.pymobiledevice3, ~/.local/state/iosmux)"},
	{"SUDO_UID", "under sudo: what iosmux writes in those folders is chowned to this user"},
	{"SUDO_GID", "under sudo: what iosmux writes in those folders is chowned to this group"},
	{"XDG_RUNTIME_DIR", "tunneld -d keeps its pid and log files in $XDG_RUNTIME_DIR/iosmux (else /run/iosmux for root, or a private folder in the temporary folder)"},
	{"NOTIFY_SOCKET", "set by systemd for a Type=notify service: tunneld reports READY=1 there once it serves"},
	{daemonChildEnv, "internal: set by tunneld -d for its background copy (the pid file it holds)"},
	{"PYMOBILEDEVICE3_USBMUX", "usbmuxd address when --usbmux-address is not given (pymobiledevice3's variable)"},
	{"USBMUXD_SOCKET_ADDRESS", "usbmuxd address when neither of the above is set (libimobiledevice's variable): /path, UNIX:/path, HOST:PORT"},
	{"IOSMUX_TUNNELD", "default of --tunneld: the tunneld API that --tunnel UDID asks (default 127.0.0.1:49151)"},
	{"IOSMUX_TSS_URL", "default of --tss-url: the DDI signing server (default Apple's, http://gs.apple.com/TSS/controller?action=2)"},
	{"IOSMUX_DDI_URL", "default of --download-url: where mounter auto-mount --download fetches the personalized DDI"},
	{"XDG_CACHE_HOME", "the base of the default DDI cache ($XDG_CACHE_HOME/iosmux/ddi)"},
	{"IOSMUX_TUNNELD_GOIOS", "tunneld's go-ios API, asked whether a device's tunnel is a userspace one (default: --tunneld's host, port 60105)"},
	{"NO_COLOR", "set: start-tunnel prints no colours on a terminal"},
}

// strictEnv makes reading an undeclared variable panic; the tests set it.
var strictEnv = false

// declaredEnv wraps getenv so that only declared variables are read.
func declaredEnv(getenv func(string) string) func(string) string {
	known := make(map[string]bool, len(envVars))
	for _, v := range envVars {
		known[v.Name] = true
	}
	return func(k string) string {
		if !known[k] && strictEnv {
			panic(fmt.Sprintf("iosmux: environment variable %s read but not declared in env.go", k))
		}
		return getenv(k)
	}
}
