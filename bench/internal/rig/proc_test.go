package rig

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// a real line of /proc/<pid>/stat: utime 1234 and stime 566 ticks (fields 14 and 15)
	const rest = " S 1 2 3 0 -1 4194560 100 0 0 0 1234 566 0 0 20 0 9 0 100 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	for _, name := range []string{"(retailflow)", "(java)", "(a b) c)", "()"} {
		got, err := ParseStatCPU([]byte("4242 " + name + rest))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := 18 * time.Second; got != want { // (1234+566) ticks of 10 ms
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	for _, bad := range []string{"", "4242 retailflow S 1 2", "4242 (x) S 1 2 3", "4242 (x) S 1 2 3 0 -1 4194560 100 0 0 0 12x4 566 0"} {
		if d, err := ParseStatCPU([]byte(bad)); err == nil || !strings.Contains(err.Error(), "proc stat") {
			t.Errorf("%q: %s, %v; want an error", bad, d, err)
		}
	}
}

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tretailflow\nVmPeak:\t  900000 kB\nVmHWM:\t  612345 kB\nVmRSS:\t  500000 kB\n"
	if got, err := ParseVmHWM([]byte(status)); err != nil || got != 612345*1024 {
		t.Errorf("VmHWM: %d, %v; want %d", got, err, 612345*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmHWM:\t lots kB\n"} {
		if n, err := ParseVmHWM([]byte(bad)); err == nil {
			t.Errorf("%q: %d, want an error", bad, n)
		}
	}
}

// TestSelfFromProc: this process's /proc figures agree with its rusage.
func TestSelfFromProc(t *testing.T) {
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); { // burn some CPU
	}
	proc, err := CPUOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self, err := SelfCPU()
	if err != nil {
		t.Fatal(err)
	}
	if proc <= 0 || proc > self+20*time.Millisecond || self-proc > 50*time.Millisecond {
		t.Errorf("/proc says %s, rusage %s: they should agree to a few ticks", proc, self)
	}
	if rss, err := PeakRSSOf(os.Getpid()); err != nil || rss < 1<<20 {
		t.Errorf("peak RSS %d, %v", rss, err)
	}
}

func TestProcessAliveAndStop(t *testing.T) {
	p, err := Start(exec.Command("sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Alive(); err != nil {
		t.Fatalf("alive right after the start: %v", err)
	}
	if _, err := p.CPU(); err != nil {
		t.Error(err)
	}
	if err := p.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Alive(); err == nil || !strings.Contains(err.Error(), "sleep exited") {
		t.Errorf("after SIGTERM: %v, want it named as exited", err)
	}
	// a process that ignores the signal is killed, and Stop says so
	p, err = Start(exec.Command("sh", "-c", "trap '' TERM; sleep 30"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the trap is set
	if err := p.Stop(syscall.SIGTERM, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop of a process that ignores SIGTERM: %v", err)
	}
}

// TestStartRunReadsRestoredLines: the "restored state" lines of a run process's JSON log are
// parsed, every line is echoed, and a process that exits without one is reported.
func TestStartRunReadsRestoredLines(t *testing.T) {
	// the sleep, a grandchild started before the lines, holds the log open after its shell is
	// killed
	script := `sleep 10 &
echo '{"level":"INFO","msg":"joined"}' >&2
echo '{"level":"INFO","msg":"restored state","records":1200,"keys":1000,"took":1500000000,"full":[0,2],"tail":[1]}' >&2
wait`
	var mu sync.Mutex
	var echoed bytes.Buffer
	p, err := StartRun("sh", []string{"-c", script}, os.Environ(), func(line []byte) {
		mu.Lock()
		defer mu.Unlock()
		echoed.Write(line)
		echoed.WriteByte('\n')
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Restored(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Records != 1200 || r.Keys != 1000 || r.Took != 1500*time.Millisecond || len(r.Full) != 2 || len(r.Tail) != 1 {
		t.Errorf("restored line: %+v", r)
	}
	if err := p.Stop(syscall.SIGKILL, 5*time.Second); err != nil {
		t.Fatalf("the killed shell's exit must end the wait, however long its children hold the log: %v", err)
	}
	mu.Lock()
	if !strings.Contains(echoed.String(), `"msg":"joined"`) {
		t.Errorf("echoed: %q", echoed.String())
	}
	mu.Unlock()

	p, err = StartRun("sh", []string{"-c", "echo '{\"msg\":\"fatal\"}' >&2; exit 3"}, os.Environ(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Restored(10 * time.Second); err == nil || !strings.Contains(err.Error(), "exited before") {
		t.Errorf("a process that exits first: %v", err)
	}
}
