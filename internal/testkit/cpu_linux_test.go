package testkit

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestCPUMeter: this process's share times the wall time is the CPU it
// burnt, a sleeping child's share is near 0, and /proc agrees with
// getrusage.
func TestCPUMeter(t *testing.T) {
	child := exec.Command("sleep", "5")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		child.Process.Kill()
		child.Wait()
	}()
	m := StartCPUMeter(t, child.Process.Pid)
	// Burn 200 ms of CPU, however long a shared machine takes to give it.
	burn0 := ProcessCPU()
	for end := time.Now().Add(20 * time.Second); ProcessCPU()-burn0 < 200*time.Millisecond && time.Now().Before(end); {
	}
	s := m.Shares(t)
	if cpu := s.Self * s.Wall.Seconds(); cpu < 0.2 || cpu > 0.4 || s.Procs[0] > 0.05 {
		t.Errorf("self %.2f over %v (%.3f s of CPU, want 0.2), sleeping child %.2f", s.Self, s.Wall, cpu, s.Procs[0])
	}
	if d := ProcessCPU() - PIDCPU(t, os.Getpid()); d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("/proc and getrusage differ by %v", d)
	}
}
