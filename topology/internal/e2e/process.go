package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Supervisor keeps `retailflow <command>` processes alive, one per slot, restarting each that
// dies until it is stopped on purpose — what Kubernetes does for the StatefulSet. Each
// incarnation runs in its own process group and logs to <LogDir>/<command>-<id>-<n>.log.
type Supervisor struct {
	Bin, LogDir string
	// Env is the environment of a slot's next incarnation.
	Env func(s *Slot) []string
	// RestartDelay is the pause before an incarnation that died is started again.
	RestartDelay func() time.Duration
	// Errorf reports a process that could not be started (t.Errorf).
	Errorf func(format string, args ...any)
	// OnStart and OnExit, if set, are called after an incarnation started, and after one ended
	// without being stopped on purpose (before it is restarted).
	OnStart func(s *Slot)
	OnExit  func(s *Slot, e Exit)

	mu    sync.Mutex
	slots map[string]*Slot // "<command>/<id>"
}

// Slot is one instance id of one command.
type Slot struct {
	ID, Command string
	sup         *Supervisor
	mu          sync.Mutex
	cmd         *exec.Cmd // the running incarnation, nil between incarnations
	logPath     string
	stopped     bool
	armed       []string  // extra environment of the next incarnation only
	killed      *exec.Cmd // the incarnation Kill last SIGKILLed
	exits       chan Exit // every exit, for a caller that waits on one
	done        chan struct{}
	exitErr     error // of the purposeful stop
}

// Exit is how one incarnation ended.
type Exit struct {
	Log    string
	Armed  []string       // the one-shot environment it ran with
	Err    error          // cmd.Wait's error: nil for status 0
	Signal syscall.Signal // 0 when it exited by itself
	Code   int
}

// Start starts a slot and its supervising loop.
func (sup *Supervisor) Start(command, id string) *Slot {
	s := &Slot{ID: id, Command: command, sup: sup, done: make(chan struct{}), exits: make(chan Exit, 64)}
	sup.mu.Lock()
	if sup.slots == nil {
		sup.slots = map[string]*Slot{}
	}
	sup.slots[command+"/"+id] = s
	sup.mu.Unlock()
	go sup.loop(s)
	return s
}

func (sup *Supervisor) loop(s *Slot) {
	defer close(s.done)
	for starts := 1; ; starts++ {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		// a slot started again after a Stop continues the numbering: an earlier incarnation's
		// log must not be truncated (a fault's checks read the logs since a mark)
		for {
			s.logPath = filepath.Join(sup.LogDir, fmt.Sprintf("%s-%s-%03d.log", s.Command, s.ID, starts))
			if _, err := os.Stat(s.logPath); err != nil {
				break
			}
			starts++
		}
		logf, err := os.Create(s.logPath)
		if err != nil {
			s.mu.Unlock()
			sup.Errorf("%v", err)
			return
		}
		cmd := exec.Command(sup.Bin, s.Command)
		cmd.Env = sup.Env(s)
		armed := s.armed
		cmd.Env = append(cmd.Env, armed...)
		s.armed = nil
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			s.mu.Unlock()
			logf.Close()
			sup.Errorf("start %s %s: %v", s.Command, s.ID, err)
			return
		}
		s.cmd = cmd
		s.mu.Unlock()
		if sup.OnStart != nil {
			sup.OnStart(s)
		}
		err = cmd.Wait()
		logf.Close()
		e := Exit{Log: logf.Name(), Armed: armed, Err: err}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
				e.Signal = ws.Signal()
			} else {
				e.Code = ws.ExitStatus()
			}
		}
		s.mu.Lock()
		s.cmd = nil
		stopped := s.stopped
		if stopped {
			s.exitErr = err
		}
		s.mu.Unlock()
		select {
		case s.exits <- e:
		default:
		}
		if stopped {
			return
		}
		if sup.OnExit != nil {
			sup.OnExit(s, e)
		}
		time.Sleep(sup.RestartDelay())
	}
}

// Slot is the slot of command and id, nil when none is running (stopped or never started).
func (sup *Supervisor) Slot(command, id string) *Slot {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	return sup.slots[command+"/"+id]
}

// Running lists the slots of command among ids, in the order of ids.
func (sup *Supervisor) Running(command string, ids ...string) []*Slot {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	var out []*Slot
	for _, id := range ids {
		if s := sup.slots[command+"/"+id]; s != nil {
			out = append(out, s)
		}
	}
	return out
}

// KillAll SIGKILLs every slot without judging how they exit (test teardown).
func (sup *Supervisor) KillAll() {
	sup.mu.Lock()
	var all []*Slot
	for _, s := range sup.slots {
		all = append(all, s)
	}
	sup.mu.Unlock()
	for _, s := range all {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.Signal(syscall.SIGKILL)
		<-s.done
	}
}

// Pid is the current incarnation's process id (0 if none is running).
func (s *Slot) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// LogPath is the log of the current (or last) incarnation.
func (s *Slot) LogPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logPath
}

// Signal sends sig to the current incarnation's process group; it reports whether one was
// running.
func (s *Slot) Signal(sig syscall.Signal) bool {
	pid := s.Pid()
	return pid != 0 && syscall.Kill(-pid, sig) == nil
}

// Kill SIGKILLs the current incarnation (the supervisor restarts it with the same id) and
// remembers it, so that a Stop soon after waits for the restart. It reports whether one was
// running.
func (s *Slot) Kill() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil || s.stopped {
		return false
	}
	if syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) != nil {
		return false
	}
	s.killed = s.cmd
	return true
}

// Arm adds environment (KEY=value) to the next incarnation only.
func (s *Slot) Arm(env ...string) {
	s.mu.Lock()
	s.armed = env
	s.mu.Unlock()
}

// ArmedStarted reports whether the incarnation Arm prepared is running, and its log.
func (s *Slot) ArmedStarted() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logPath, s.armed == nil && s.cmd != nil
}

// Exits delivers how each incarnation ended (buffered; DrainExits forgets the ones so far).
func (s *Slot) Exits() <-chan Exit { return s.exits }

// DrainExits forgets the exits seen so far.
func (s *Slot) DrainExits() {
	for {
		select {
		case <-s.exits:
		default:
			return
		}
	}
}

// Stop SIGTERMs the slot's process and expects a clean exit (status 0) within 40 s.
//
// A stop right after Kill must test the graceful exit of the restarted incarnation, not report
// the SIGKILL it raced with, so it first waits (up to 15 s) for the supervisor's restart. And
// it waits (up to 10 s) until the incarnation has written its first log line: a process
// SIGTERMed before the Go runtime reached main has no handler yet (main installs it before
// anything logs) and dies by the signal, which says nothing about how retailflow stops.
func (s *Slot) Stop() error {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s.mu.Lock()
		restarted := s.killed == nil || (s.cmd != nil && s.cmd != s.killed)
		s.mu.Unlock()
		if restarted {
			break
		}
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.waitStarted(10 * time.Second)
	s.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		s.Signal(syscall.SIGKILL)
		<-s.done
		return fmt.Errorf("%s %s did not stop within 40s of SIGTERM (log %s)", s.Command, s.ID, s.LogPath())
	}
	s.sup.mu.Lock()
	delete(s.sup.slots, s.Command+"/"+s.ID)
	s.sup.mu.Unlock()
	if s.exitErr != nil {
		return fmt.Errorf("%s %s exited with %v after SIGTERM, want status 0 (log %s)", s.Command, s.ID, s.exitErr, s.LogPath())
	}
	return nil
}

// waitStarted waits (up to d) until the current incarnation has written its first log line, or
// none is running.
func (s *Slot) waitStarted(d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s.mu.Lock()
		path, running := s.logPath, s.cmd != nil
		s.mu.Unlock()
		if !running {
			return
		}
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return
		}
	}
}
