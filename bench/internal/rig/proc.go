package rig

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/retailflow/retailflow/schemas"
)

// userHZ is the kernel's clock tick of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const userHZ = 100

// ParseStatCPU is the user+system CPU time in the contents of a /proc/<pid>/stat file. The
// command name (field 2) is in parentheses and may hold spaces and parentheses itself, so the
// fields are counted from the last ')'.
func ParseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no ')' after the command name in %q", head(stat))
	}
	f := strings.Fields(string(stat[i+1:]))
	// after the name: state(3) … utime(14) stime(15), i.e. f[11] and f[12]
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least 13", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || ut < 0 || st < 0 {
		return 0, fmt.Errorf("proc stat: utime %q and stime %q are not tick counts", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// ParseVmHWM is the peak resident set size in bytes in the contents of a /proc/<pid>/status
// file (its VmHWM line, in kB).
func ParseVmHWM(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("proc status: VmHWM %q is not a number of kB", strings.TrimSpace(v))
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("proc status: no VmHWM line")
}

// CPUOf is the user+system CPU time a live process has used.
func CPUOf(pid int) (time.Duration, error) { return readProc(pid, "stat", ParseStatCPU) }

// PeakRSSOf is the peak resident set size of a live process in bytes.
func PeakRSSOf(pid int) (int64, error) { return readProc(pid, "status", ParseVmHWM) }

// readProc parses /proc/<pid>/<file>.
func readProc[T any](pid int, file string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return zero, err
	}
	v, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("pid %d: %w", pid, err)
	}
	return v, nil
}

// SelfCPU is the user+system CPU time this process has used.
func SelfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

func head(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// Process is a child process whose exit is watched, so that a benchmark can stop waiting for
// it the moment it dies.
type Process struct {
	Cmd   *exec.Cmd
	Began time.Time // just before the start
	done  chan struct{}
	err   error // Wait's, once done is closed
}

// Start starts cmd and watches its exit.
func Start(cmd *exec.Cmd) (*Process, error) { return start(cmd, nil) }

// start starts cmd; after, when set, runs once the process has exited (before Done closes).
func start(cmd *exec.Cmd, after func()) (*Process, error) {
	p := &Process{Cmd: cmd, done: make(chan struct{}), Began: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(cmd.Path), err)
	}
	go func() {
		p.err = cmd.Wait()
		if after != nil {
			after()
		}
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Alive is nil while the process runs, and an error naming it and its exit once it has exited.
func (p *Process) Alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v", filepath.Base(p.Cmd.Path), p.err)
	default:
		return nil
	}
}

// Stop sends sig and waits up to limit for the exit; a process still running then is killed,
// and Stop reports that it did not stop.
func (p *Process) Stop(sig syscall.Signal, limit time.Duration) error {
	if err := p.Cmd.Process.Signal(sig); err != nil && p.Alive() == nil {
		return fmt.Errorf("signalling %s: %w", filepath.Base(p.Cmd.Path), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(limit):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s of %s: killed", filepath.Base(p.Cmd.Path), limit, sig)
	}
}

// CPU is the CPU time the live process has used.
func (p *Process) CPU() (time.Duration, error) { return CPUOf(p.Pid()) }

// PeakRSS is the live process's peak resident set size in bytes.
func (p *Process) PeakRSS() (int64, error) { return PeakRSSOf(p.Pid()) }

// RunEnv is the environment of a `retailflow run` child: this process's, then the physical
// topic names, the partition count, the group, the log level (JSON lines) and no HTTP
// listener; more (KEY=value) comes last and wins over any of those (exec keeps the last value
// of a key).
func RunEnv(names map[schemas.Topic]string, partitions int, group, level string, more ...string) []string {
	env := append(os.Environ(),
		"RETAILFLOW_TOPICS_ORDERS="+names[schemas.TopicOrders], "RETAILFLOW_TOPICS_SHIPMENTS="+names[schemas.TopicShipments],
		"RETAILFLOW_TOPICS_RETURNS="+names[schemas.TopicReturns], "RETAILFLOW_TOPICS_LOYALTY="+names[schemas.TopicLoyalty],
		"RETAILFLOW_TOPICS_ERP="+names[schemas.TopicERP], "RETAILFLOW_TOPICS_COMMANDS="+names[schemas.TopicCommands],
		"RETAILFLOW_TOPICS_CHANGELOG="+names[schemas.TopicChangelog], "RETAILFLOW_TOPICS_DLQ="+names[schemas.TopicDLQ],
		"RETAILFLOW_TOPICS_PARTITIONS="+strconv.Itoa(partitions), "RETAILFLOW_RUNTIME_GROUP="+group,
		"RETAILFLOW_LOG_LEVEL="+level, "RETAILFLOW_LOG_FORMAT=json", "RETAILFLOW_HTTP_ADDR=")
	return append(env, more...)
}

// Restored is a `retailflow run` process's "restored state" log line.
type Restored struct {
	Records int64         `json:"records"`
	Keys    int64         `json:"keys"`
	Took    time.Duration `json:"took"` // slog's JSON handler writes a Duration in nanoseconds
	Full    []int32       `json:"full"` // partitions restored in full
	Tail    []int32       `json:"tail"` // partitions whose persistent store was completed from its checkpoint
}

// RunProcess is a `retailflow run` child whose JSON log is read line by line.
type RunProcess struct {
	*Process
	restored chan Restored
}

// StartRun starts `bin args…` with env (see RunEnv) and reads its log (stderr): each
// "restored state" line is kept for Restored, and every line goes to echo when it is set (the
// slice is valid only during the call). The log is always read to its end, so the child never
// blocks on a full pipe.
func StartRun(bin string, args, env []string, echo func(line []byte)) (*RunProcess, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	// Wait also waits for the copy of the log into pw, which a child's own children (a shell's)
	// can hold open after the child died; bound that, so Done follows the child's exit
	cmd.WaitDelay = 2 * time.Second
	// a process restores once per assignment; more lines than this would be a rebalance storm,
	// and the newest are dropped rather than block the log
	p := &RunProcess{restored: make(chan Restored, 16)}
	var err error
	if p.Process, err = start(cmd, func() { pw.Close() }); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if bytes.Contains(line, []byte(`"restored state"`)) {
				var r Restored
				if json.Unmarshal(line, &r) == nil {
					select {
					case p.restored <- r:
					default:
					}
				}
			}
			if echo != nil {
				echo(line)
			}
		}
		_, _ = io.Copy(io.Discard, pr) // a line over 1 MiB ends the scan, not the reading
	}()
	return p, nil
}

// Restored waits up to limit for the process's next "restored state" line.
func (p *RunProcess) Restored(limit time.Duration) (Restored, error) {
	select {
	case r := <-p.restored:
		return r, nil
	case <-p.done:
		select {
		case r := <-p.restored:
			return r, nil
		default:
		}
		return Restored{}, fmt.Errorf("the run process exited before it restored its state: %v", p.err)
	case <-time.After(limit):
		return Restored{}, fmt.Errorf("the run process logged no restored state within %s", limit)
	}
}
