// Package appservice speaks com.apple.coredevice.appservice, the
// CoreDevice service that lists and launches apps and lists and signals
// processes (docs/protocols/coredevice.md §3), in both roles: Client over a
// coredevice.Client, and NewServer, the device role over a Device.
package appservice

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/xpc"
)

// Feature names, in the order a device lists them (coredevice.md §3).
const (
	FeatureLaunch         = "launchapplication"
	FeatureMonitor        = "monitorprocesstermination"
	FeatureUninstall      = "uninstallapp"
	FeatureSignal         = "sendsignaltoprocess"
	FeatureListProcesses  = "listprocesses"
	FeatureListApps       = "listapps"
	featureStreamAppList  = "streamapplist"
	featureStreamProcList = "streamprocesslist"
)

// App is one installed app as listapps reports it.
type App struct {
	BundleID       string `json:"bundleIdentifier"`
	Name           string `json:"name"`
	Version        string `json:"version,omitempty"`
	BundleVersion  string `json:"bundleVersion,omitempty"`
	Path           string `json:"path"`
	IsRemovable    bool   `json:"isRemovable"`
	IsFirstParty   bool   `json:"isFirstParty"`
	IsDeveloperApp bool   `json:"isDeveloperApp"`
	IsInternal     bool   `json:"isInternal"`
	IsHidden       bool   `json:"isHidden"`
	IsAppClip      bool   `json:"isAppClip"`
}

// value is the app's dictionary in the key order of vector cd11.
func (a App) value() *xpc.Dict {
	d := xpc.NewDict("bundleIdentifier", xpc.String(a.BundleID), "name", xpc.String(a.Name))
	if a.Version != "" {
		d.Set("version", xpc.String(a.Version))
	}
	if a.BundleVersion != "" {
		d.Set("bundleVersion", xpc.String(a.BundleVersion))
	}
	d.Set("path", xpc.String(a.Path))
	d.Set("isRemovable", xpc.Bool(a.IsRemovable))
	d.Set("isFirstParty", xpc.Bool(a.IsFirstParty))
	d.Set("isDeveloperApp", xpc.Bool(a.IsDeveloperApp))
	d.Set("isInternal", xpc.Bool(a.IsInternal))
	d.Set("isHidden", xpc.Bool(a.IsHidden))
	d.Set("isAppClip", xpc.Bool(a.IsAppClip))
	return d
}

func parseApp(v xpc.Value) (App, error) {
	d, ok := v.(*xpc.Dict)
	if !ok {
		return App{}, fmt.Errorf("an app entry is %T, not a dictionary", v)
	}
	a := App{BundleID: d.String("bundleIdentifier"), Name: d.String("name"), Version: d.String("version"),
		BundleVersion: d.String("bundleVersion"), Path: d.String("path"),
		IsRemovable: d.Bool("isRemovable"), IsFirstParty: d.Bool("isFirstParty"), IsDeveloperApp: d.Bool("isDeveloperApp"),
		IsInternal: d.Bool("isInternal"), IsHidden: d.Bool("isHidden"), IsAppClip: d.Bool("isAppClip")}
	if a.BundleID == "" {
		return App{}, fmt.Errorf("an app entry has no bundleIdentifier (keys %v)", d.Keys())
	}
	return a, nil
}

// ListAppsOptions chooses the kinds of app listapps returns.
type ListAppsOptions struct {
	AppClips, Removable, Hidden, Internal, Default bool
}

// AllApps includes every kind (what pymobiledevice3 and appium send by
// default).
var AllApps = ListAppsOptions{AppClips: true, Removable: true, Hidden: true, Internal: true, Default: true}

// input is the listapps input with the three keys iOS 26 requires, all
// false (vector cd01).
func (o ListAppsOptions) input() *xpc.Dict {
	return xpc.NewDict(
		"includeAppClips", xpc.Bool(o.AppClips),
		"includeRemovableApps", xpc.Bool(o.Removable),
		"includeHiddenApps", xpc.Bool(o.Hidden),
		"includeInternalApps", xpc.Bool(o.Internal),
		"includeDefaultApps", xpc.Bool(o.Default),
		"requireContainerAccess", xpc.Bool(false),
		"includeAppGroupIdentifiers", xpc.Bool(false),
		"includeContainerPaths", xpc.Bool(false),
	)
}

func parseListAppsOptions(in *xpc.Dict) ListAppsOptions {
	return ListAppsOptions{AppClips: in.Bool("includeAppClips"), Removable: in.Bool("includeRemovableApps"),
		Hidden: in.Bool("includeHiddenApps"), Internal: in.Bool("includeInternalApps"), Default: in.Bool("includeDefaultApps")}
}

// Includes reports whether an app of a's kind is asked for: every kind
// the app belongs to must be included; an app that is not removable is a
// default app (the simulator's reading, coredevice.md §6).
func (o ListAppsOptions) Includes(a App) bool {
	switch {
	case a.IsAppClip && !o.AppClips, a.IsHidden && !o.Hidden, a.IsInternal && !o.Internal,
		a.IsRemovable && !o.Removable, !a.IsRemovable && !o.Default:
		return false
	}
	return true
}

// Process is a process token: the pid, and what else the device says
// about the process. listprocesses gives pid and executable; a launch all
// four fields.
type Process struct {
	PID int64 `json:"processIdentifier"`
	// PIDVersion and AuditToken come with a launch's token; their wire
	// types are unconfirmed (uint64 in vector cd12, which is what the
	// device role sends).
	PIDVersion uint64 `json:"processIdentifierVersion,omitempty"`
	// ExecutableURL is the executable as a file:// URL.
	ExecutableURL string   `json:"executableURL,omitempty"`
	AuditToken    []uint64 `json:"auditToken,omitempty"`
}

// Executable is the executable's path, from ExecutableURL.
func (p Process) Executable() string {
	u, err := url.Parse(p.ExecutableURL)
	if err != nil || u.Scheme != "file" {
		return p.ExecutableURL
	}
	return u.Path
}

// Name is the executable's file name.
func (p Process) Name() string {
	e := p.Executable()
	return e[strings.LastIndexByte(e, '/')+1:]
}

// FileURL is the file:// URL of an absolute path.
func FileURL(path string) string {
	return (&url.URL{Scheme: "file", Path: path}).String()
}

func (p Process) value() *xpc.Dict {
	d := xpc.NewDict("processIdentifier", xpc.Int64(p.PID))
	if p.PIDVersion != 0 {
		d.Set("processIdentifierVersion", xpc.Uint64(p.PIDVersion))
	}
	if p.ExecutableURL != "" {
		d.Set("executableURL", xpc.NewDict("relative", xpc.String(p.ExecutableURL)))
	}
	if len(p.AuditToken) > 0 {
		at := make(xpc.Array, len(p.AuditToken))
		for i, v := range p.AuditToken {
			at[i] = xpc.Uint64(v)
		}
		d.Set("auditToken", at)
	}
	return d
}

func parseProcess(v xpc.Value) (Process, error) {
	d, ok := v.(*xpc.Dict)
	if !ok {
		return Process{}, fmt.Errorf("a process token is %T, not a dictionary", v)
	}
	pid, ok := d.Integer("processIdentifier")
	if !ok {
		return Process{}, fmt.Errorf("a process token has no integer processIdentifier (keys %v)", d.Keys())
	}
	p := Process{PID: pid, ExecutableURL: d.Dict("executableURL").String("relative")}
	if n, ok := d.Integer("processIdentifierVersion"); ok {
		p.PIDVersion = uint64(n)
	}
	for _, e := range d.Array("auditToken") {
		switch n := e.(type) {
		case xpc.Uint64:
			p.AuditToken = append(p.AuditToken, uint64(n))
		case xpc.Int64:
			p.AuditToken = append(p.AuditToken, uint64(n))
		}
	}
	return p, nil
}

// LaunchOptions are launchapplication's options.
type LaunchOptions struct {
	Arguments   []string
	Environment map[string]string
	// StartStopped creates the process suspended, for a debugger to
	// attach to and continue.
	StartStopped bool
	// TerminateExisting ends a running instance of the app first.
	TerminateExisting bool
	// Stdio is the UUID read from openstdiosocket: the process's
	// standard input, output and error go to that socket. Zero: none.
	Stdio xpc.UUID
	// PlatformSpecificOptions is a serialized plist; nil sends an XML
	// plist of an empty dictionary.
	PlatformSpecificOptions []byte
}

// emptyPlist is an XML plist of {} exactly as Python's plistlib (and so
// pymobiledevice3) writes it (vector cd02).
const emptyPlist = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict/>
</plist>
`

// launchInput is the launchapplication input in pymobiledevice3's form
// (vector cd02): user shortName "mobile", pseudo-terminals for stdio.
func launchInput(bundleID string, o LaunchOptions) *xpc.Dict {
	args := xpc.Array{}
	for _, a := range o.Arguments {
		args = append(args, xpc.String(a))
	}
	env := xpc.NewDict()
	keys := make([]string, 0, len(o.Environment))
	for k := range o.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env.Set(k, xpc.String(o.Environment[k]))
	}
	pso := o.PlatformSpecificOptions
	if pso == nil {
		pso = []byte(emptyPlist)
	}
	stdio := xpc.NewDict()
	if !o.Stdio.IsZero() {
		stdio = xpc.NewDict("standardInput", o.Stdio, "standardOutput", o.Stdio, "standardError", o.Stdio)
	}
	return xpc.NewDict(
		"applicationSpecifier", xpc.NewDict("bundleIdentifier", xpc.NewDict("_0", xpc.String(bundleID))),
		"options", xpc.NewDict(
			"arguments", args,
			"environmentVariables", env,
			"standardIOUsesPseudoterminals", xpc.Bool(true),
			"startStopped", xpc.Bool(o.StartStopped),
			"terminateExisting", xpc.Bool(o.TerminateExisting),
			"user", xpc.NewDict("shortName", xpc.String("mobile")),
			"platformSpecificOptions", xpc.Data(pso),
		),
		"standardIOIdentifiers", stdio,
	)
}

// LaunchRequest is a launchapplication input as the device reads it.
type LaunchRequest struct {
	BundleID string
	LaunchOptions
	// Stdin, Stdout and Stderr are the openstdiosocket UUIDs named for
	// each stream (usually the same one); zero when not given.
	Stdin, Stdout, Stderr xpc.UUID
}

// ParseLaunchRequest reads a launchapplication input: either user form
// (shortName or active), any platform options.
func ParseLaunchRequest(in *xpc.Dict) (LaunchRequest, error) {
	r := LaunchRequest{BundleID: in.Dict("applicationSpecifier").Dict("bundleIdentifier").String("_0")}
	if r.BundleID == "" {
		return r, coredevice.InvalidInput("launchapplication needs applicationSpecifier.bundleIdentifier._0")
	}
	opts := in.Dict("options")
	r.Arguments = opts.Array("arguments").Strings()
	for k, v := range opts.Dict("environmentVariables").All() {
		if s, ok := v.(xpc.String); ok {
			if r.Environment == nil {
				r.Environment = map[string]string{}
			}
			r.Environment[k] = string(s)
		}
	}
	r.StartStopped = opts.Bool("startStopped")
	r.TerminateExisting = opts.Bool("terminateExisting")
	r.PlatformSpecificOptions = opts.Data("platformSpecificOptions")
	ids := in.Dict("standardIOIdentifiers")
	r.Stdin, r.Stdout, r.Stderr = ids.UUID("standardInput"), ids.UUID("standardOutput"), ids.UUID("standardError")
	r.Stdio = r.Stdout
	if r.Stdio.IsZero() {
		r.Stdio = r.Stderr
	}
	return r, nil
}

// SignalResult is sendsignaltoprocess's output.
type SignalResult struct {
	Process         Process   `json:"process"`
	DeviceTimestamp time.Time `json:"deviceTimestamp"`
	Signal          int64     `json:"signal"`
}

func (r SignalResult) value() *xpc.Dict {
	return xpc.NewDict("process", r.Process.value(), "deviceTimestamp", xpc.DateOf(r.DeviceTimestamp), "signal", xpc.Int64(r.Signal))
}

// ExitStatus is monitorprocesstermination's output.
type ExitStatus struct {
	// ExitCode is the process's exit code; the simulator reports a death
	// by signal N as -N (coredevice.md §6).
	ExitCode           int64 `json:"exitCode"`
	WasCoreDumpCreated bool  `json:"wasCoreDumpCreated"`
}

func (s ExitStatus) value() *xpc.Dict {
	return xpc.NewDict("status", xpc.NewDict("exitCode", xpc.Int64(s.ExitCode), "wasCoreDumpCreated", xpc.Bool(s.WasCoreDumpCreated)))
}

// Darwin's signal numbers (they differ from Linux's for STOP, CONT, USR1,
// USR2, …), by name without the SIG prefix.
var Signals = map[string]int64{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "EMT": 7, "FPE": 8, "KILL": 9, "BUS": 10,
	"SEGV": 11, "SYS": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "URG": 16, "STOP": 17, "TSTP": 18, "CONT": 19,
	"CHLD": 20, "TTIN": 21, "TTOU": 22, "IO": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
	"INFO": 29, "USR1": 30, "USR2": 31,
}

// Darwin signals used by name in code.
const (
	SIGKILL int64 = 9
	SIGTERM int64 = 15
	SIGSTOP int64 = 17
	SIGCONT int64 = 19
)

// SignalName is the name of a Darwin signal number ("SIGTERM"), or its
// number in text.
func SignalName(n int64) string {
	for k, v := range Signals {
		if v == n {
			return "SIG" + k
		}
	}
	return fmt.Sprint(n)
}

// ParseSignal reads a signal as a Darwin name (TERM, SIGTERM, any case) or
// a number from 1 to 31.
func ParseSignal(s string) (int64, error) {
	u := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SIG")
	if n, ok := Signals[u]; ok {
		return n, nil
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == strings.TrimSpace(s) && n >= 1 && n <= 31 {
		return n, nil
	}
	return 0, fmt.Errorf("unknown signal %q: give a name (TERM, KILL, STOP, CONT, INT, HUP, USR1, …) or a number 1–31", s)
}
