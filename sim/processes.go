package sim

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The simulated device's process table: what PidList lists, what app
// launches add, what signals end, and what crash reports are written for.
// CoreDevice's appservice and the debugserver (listprocesses, launch,
// sendsignaltoprocess, attach) are meant to act on the same table.

// Signal is a signal number as iOS numbers them (Darwin's numbering, which
// hosts send in sendsignaltoprocess; Linux numbers some differently).
type Signal int

// Darwin signals.
const (
	SIGHUP  Signal = 1
	SIGINT  Signal = 2
	SIGQUIT Signal = 3
	SIGILL  Signal = 4
	SIGTRAP Signal = 5
	SIGABRT Signal = 6
	SIGEMT  Signal = 7
	SIGFPE  Signal = 8
	SIGKILL Signal = 9
	SIGBUS  Signal = 10
	SIGSEGV Signal = 11
	SIGSYS  Signal = 12
	SIGPIPE Signal = 13
	SIGALRM Signal = 14
	SIGTERM Signal = 15
	SIGURG  Signal = 16
	SIGSTOP Signal = 17
	SIGTSTP Signal = 18
	SIGCONT Signal = 19
	SIGCHLD Signal = 20
	SIGUSR1 Signal = 30
	SIGUSR2 Signal = 31
)

var signalNames = map[Signal]string{
	SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
	SIGABRT: "SIGABRT", SIGEMT: "SIGEMT", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGBUS: "SIGBUS",
	SIGSEGV: "SIGSEGV", SIGSYS: "SIGSYS", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
	SIGURG: "SIGURG", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP", SIGCONT: "SIGCONT", SIGCHLD: "SIGCHLD",
	SIGUSR1: "SIGUSR1", SIGUSR2: "SIGUSR2",
}

func (s Signal) String() string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

// Crashes reports whether the signal's default action leaves a crash
// report (the signals ReportCrash handles).
func (s Signal) Crashes() bool {
	switch s {
	case SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGEMT, SIGFPE, SIGBUS, SIGSEGV, SIGSYS:
		return true
	}
	return false
}

// ProcessState is where a simulated process is in its life.
type ProcessState int

const (
	ProcessRunning ProcessState = iota
	ProcessStopped              // by SIGSTOP, or launched stopped for a debugger
	ProcessExited
)

func (s ProcessState) String() string {
	switch s {
	case ProcessRunning:
		return "running"
	case ProcessStopped:
		return "stopped"
	case ProcessExited:
		return "exited"
	}
	return fmt.Sprintf("ProcessState(%d)", int(s))
}

// Process is one entry of the table.
type Process struct {
	PID      int
	Name     string // the executable's name
	Path     string // the executable's path
	BundleID string // "" for system daemons
	State    ProcessState
	Started  time.Time
	// Signal is what ended an exited process (0: it exited by itself).
	Signal Signal
}

// ProcessEvent tells observers of the table what happened.
type ProcessEvent struct {
	Kind    ProcessEventKind
	Process Process // after the change
}

// ProcessEventKind names a change in the table.
type ProcessEventKind int

const (
	ProcessLaunched ProcessEventKind = iota
	ProcessStoppedEvent
	ProcessContinued
	ProcessExitedEvent
)

// Launch is what Processes.Launch starts.
type Launch struct {
	Name     string // defaults to the base of Path
	Path     string
	BundleID string
	// Stopped leaves the process stopped until SIGCONT (a debugger's
	// launch).
	Stopped bool
}

// ErrNoProcess is returned for a pid that is not in the table (ESRCH).
var ErrNoProcess = errors.New("sim: no such process")

// Processes is a device's process table: each boot starts it again with
// the system daemons only. Safe for concurrent use; observers are called
// in order, outside the table's lock, from the goroutine that made the
// change.
type Processes struct {
	mu      sync.Mutex
	next    int
	procs   map[int]*Process
	exited  []int // oldest first; beyond keepExited the oldest are forgotten
	now     func() time.Time
	observe []func(ProcessEvent)
}

// keepExited is how many exited processes the table remembers (for a
// debugger asking how one ended).
const keepExited = 256

// firstAppPID is where launched processes start numbering (daemons below).
const firstAppPID = 300

// systemDaemons run from boot, in pid order (SIM: a plausible few).
var systemDaemons = []string{
	"/sbin/launchd",
	"/usr/libexec/logd",
	"/usr/libexec/lockdownd",
	"/usr/libexec/remoted",
	"/System/Library/CoreServices/SpringBoard.app/SpringBoard",
	"/usr/libexec/backboardd",
	"/usr/sbin/mediaserverd",
	"/usr/libexec/locationd",
	"/System/Library/CoreServices/ReportCrash",
	"/usr/libexec/osanalyticshelper",
	"/usr/libexec/installd",
	"/usr/libexec/amfid",
	"/usr/libexec/mobile_storage_proxy",
}

func newProcesses(now func() time.Time) *Processes {
	t := &Processes{now: now}
	t.reset()
	return t
}

// reset is a boot: the system daemons only, pids numbered afresh. Nobody
// is told of the processes that vanish: the device went down.
func (t *Processes) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next, t.procs, t.exited = firstAppPID, map[int]*Process{}, nil
	started := t.now()
	for i, p := range systemDaemons {
		pid := 1
		if i > 0 {
			pid = 20 + 13*i // sparse, as on a device
		}
		t.procs[pid] = &Process{PID: pid, Name: path.Base(p), Path: p, State: ProcessRunning, Started: started}
	}
}

// exitedLocked records that p has exited and forgets the oldest exited
// process beyond keepExited.
func (t *Processes) exitedLocked(p *Process) {
	p.State = ProcessExited
	t.exited = append(t.exited, p.PID)
	if len(t.exited) > keepExited {
		delete(t.procs, t.exited[0])
		t.exited = t.exited[1:]
	}
}

// Observe registers f for every later change.
func (t *Processes) Observe(f func(ProcessEvent)) {
	t.mu.Lock()
	t.observe = append(t.observe, f)
	t.mu.Unlock()
}

func (t *Processes) notify(ev ProcessEvent) {
	t.mu.Lock()
	obs := slices.Clone(t.observe)
	t.mu.Unlock()
	for _, f := range obs {
		f(ev)
	}
}

// List returns the processes that have not exited, by pid.
func (t *Processes) List() []Process {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Process, 0, len(t.procs))
	for _, p := range t.procs {
		if p.State != ProcessExited {
			out = append(out, *p)
		}
	}
	slices.SortFunc(out, func(a, b Process) int { return a.PID - b.PID })
	return out
}

// Get returns the process with pid, exited ones included.
func (t *Processes) Get(pid int) (Process, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.procs[pid]
	if !ok {
		return Process{}, false
	}
	return *p, true
}

// Find returns the running or stopped processes named name (the
// executable's name) or with that bundle id.
func (t *Processes) Find(name string) []Process {
	var out []Process
	for _, p := range t.List() {
		if p.Name == name || p.BundleID == name && name != "" {
			out = append(out, p)
		}
	}
	return out
}

// Launch starts a process and returns it.
func (t *Processes) Launch(l Launch) (Process, error) {
	if l.Path == "" {
		return Process{}, errors.New("sim: launch without an executable path")
	}
	if l.Name == "" {
		l.Name = path.Base(l.Path)
	}
	t.mu.Lock()
	p := &Process{PID: t.next, Name: l.Name, Path: l.Path, BundleID: l.BundleID, State: ProcessRunning, Started: t.now()}
	if l.Stopped {
		p.State = ProcessStopped
	}
	t.next++
	t.procs[p.PID] = p
	out := *p
	t.mu.Unlock()
	t.notify(ProcessEvent{Kind: ProcessLaunched, Process: out})
	return out, nil
}

// Signal delivers sig to pid with the default actions: SIGSTOP and SIGTSTP
// stop it, SIGCONT continues it, SIGCHLD and SIGURG are ignored, every
// other signal ends it (those that Crash also leave a crash report, which
// the device writes on the exit event). launchd (pid 1) ignores them all.
func (t *Processes) Signal(pid int, sig Signal) error {
	t.mu.Lock()
	p, ok := t.procs[pid]
	if !ok || p.State == ProcessExited {
		t.mu.Unlock()
		return fmt.Errorf("%w: pid %d", ErrNoProcess, pid)
	}
	if sig <= 0 || sig > 31 {
		t.mu.Unlock()
		return fmt.Errorf("sim: invalid signal %d", int(sig))
	}
	var kind ProcessEventKind
	switch {
	case pid == 1, sig == SIGCHLD, sig == SIGURG:
		t.mu.Unlock()
		return nil
	case sig == SIGSTOP || sig == SIGTSTP:
		if p.State == ProcessStopped {
			t.mu.Unlock()
			return nil
		}
		p.State, kind = ProcessStopped, ProcessStoppedEvent
	case sig == SIGCONT:
		if p.State != ProcessStopped {
			t.mu.Unlock()
			return nil
		}
		p.State, kind = ProcessRunning, ProcessContinued
	default:
		p.Signal, kind = sig, ProcessExitedEvent
		t.exitedLocked(p)
	}
	out := *p
	t.mu.Unlock()
	t.notify(ProcessEvent{Kind: kind, Process: out})
	return nil
}

// Exit ends pid as if it returned from main.
func (t *Processes) Exit(pid int) error {
	t.mu.Lock()
	p, ok := t.procs[pid]
	if !ok || p.State == ProcessExited || pid == 1 {
		t.mu.Unlock()
		return fmt.Errorf("%w: pid %d", ErrNoProcess, pid)
	}
	t.exitedLocked(p)
	out := *p
	t.mu.Unlock()
	t.notify(ProcessEvent{Kind: ProcessExitedEvent, Process: out})
	return nil
}

// ParseSignal reads a signal by name ("SIGSEGV", "segv") or Darwin number.
func ParseSignal(s string) (Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n <= 31 {
		return Signal(n), nil
	}
	up := strings.ToUpper(s)
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	for sig, name := range signalNames {
		if name == up {
			return sig, nil
		}
	}
	return 0, fmt.Errorf("sim: unknown signal %q (a name such as SIGSEGV, or a number 1–31)", s)
}
