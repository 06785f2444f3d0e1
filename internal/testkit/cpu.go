//go:build unix

package testkit

import (
	"testing"
	"time"
)

// CPUMeter measures CPU shares over an interval: CPU time per second of
// wall time (1 is one core busy) of this process and of other running
// processes (PIDCPU), which says which side of a benchmark was the limit
// (docs/perf.md quotes it next to every throughput ratio).
type CPUMeter struct {
	start time.Time
	self  time.Duration
	pids  []int
	procs []time.Duration
}

// StartCPUMeter starts an interval for this process and pids.
func StartCPUMeter(t testing.TB, pids ...int) *CPUMeter {
	t.Helper()
	m := &CPUMeter{pids: pids, procs: make([]time.Duration, len(pids))}
	for i, pid := range pids {
		m.procs[i] = PIDCPU(t, pid)
	}
	m.self, m.start = ProcessCPU(), time.Now()
	return m
}

// CPUShares are the shares of one interval.
type CPUShares struct {
	Wall time.Duration
	// Self is this process's share; Procs the other processes', in the
	// order given to StartCPUMeter.
	Self  float64
	Procs []float64
}

// Shares reads the shares since the start; the meter keeps running.
func (m *CPUMeter) Shares(t testing.TB) CPUShares {
	t.Helper()
	wall := time.Since(m.start)
	s := CPUShares{Wall: wall, Self: Share(ProcessCPU()-m.self, wall), Procs: make([]float64, len(m.pids))}
	for i, pid := range m.pids {
		s.Procs[i] = Share(PIDCPU(t, pid)-m.procs[i], wall)
	}
	return s
}

// Share is cpu per second of wall.
func Share(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return cpu.Seconds() / wall.Seconds()
}
