// Package ops is retailflow's operations surface: the HTTP listener that serves /metrics,
// /healthz and /readyz, the Prometheus metrics of the processor (`retailflow run`) and the sink
// (`retailflow sink`), franz-go's client metrics (kprom), and a consumer-lag collector built on
// kadm.
//
// Nothing here knows about the domain: the runtime and the sink call typed methods
// (RuntimeMetrics.Consumed, SinkMetrics.BatchInserted, …) and never touch Prometheus types.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether the process is ready for work: nil means ready, an error says why not.
// /readyz serves the text of a Reason in the error's chain (a state the component declares:
// "restoring state of partitions [0 3]"); any other error is answered with a fixed line, since a
// driver's message can carry hosts, users, SQL or record values. It is called on every /readyz
// request with a context bounded by the server's probe timeout, possibly concurrently.
type Check func(ctx context.Context) error

// Reason is a not-ready state whose text is fit to serve on /readyz: written by the component,
// never a copy of an error's message.
type Reason string

func (r Reason) Error() string { return string(r) }

// Default timeouts of the listener. The probe timeout stays below Kubernetes' default probe
// timeout (1 s) so a slow check answers 503 instead of being cut off by the kubelet.
const (
	probeTimeout    = 800 * time.Millisecond
	shutdownTimeout = 5 * time.Second // in-flight scrapes are short; SIGTERM must not wait on them long
	readTimeout     = 10 * time.Second
)

// Server serves /metrics (Prometheus text format), /healthz (200 while the process runs) and
// /readyz (200 once the readiness Check passes, 503 with the reason until then).
//
// A Server is used once: Run or Serve blocks until its context is cancelled, then shuts the
// listener down gracefully and returns.
type Server struct {
	addr    string
	handler http.Handler
}

// NewServer builds the listener for addr (host:port). gatherer is what /metrics exposes (usually
// the *prometheus.Registry the metrics were registered in); ready gates /readyz, nil means always
// ready.
func NewServer(addr string, gatherer prometheus.Gatherer, ready Check) *Server {
	if ready == nil {
		ready = func(context.Context) error { return nil }
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		// A collector that fails (e.g. a lag poll) must not hide every other metric.
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: false,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", publicReason(err))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return &Server{addr: addr, handler: mux}
}

// publicReason is the text /readyz serves for err: its Reason, or a fixed line.
func publicReason(err error) string {
	var r Reason
	switch {
	case errors.As(err, &r):
		return string(r)
	case errors.Is(err, context.DeadlineExceeded):
		return "readiness check timed out"
	}
	return "a readiness check failed (the process log has the detail)"
}

// Handler returns the routes, for tests (httptest) and for mounting under another mux.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on the server's address and serves until ctx is cancelled; see Serve.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("ops: listen on %s (http.addr): %w", s.addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled, then stops accepting, waits up to 5 s for
// in-flight requests and returns nil. Any other return is a serving error. ln is closed on return.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readTimeout,
		ReadTimeout:       readTimeout,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("ops: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops: serve on %s: %w", ln.Addr(), err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("ops: shut down %s: %w", ln.Addr(), shutdownErr)
	}
	return nil
}

// Readiness is a readiness flag set by the component that knows the state: the processor marks
// itself not ready on every assignment until the group is joined and each assigned partition's
// state is restored; the sink until ClickHouse answers. Its Check method is a Check.
// The zero value is not ready with the reason "starting". Safe for concurrent use.
type Readiness struct {
	mu     sync.Mutex
	ready  bool
	reason string
}

// SetReady marks the process ready.
func (r *Readiness) SetReady() {
	r.mu.Lock()
	r.ready, r.reason = true, ""
	r.mu.Unlock()
}

// SetNotReady marks the process not ready with a reason that /readyz serves as is
// (e.g. "restoring partitions [0 3]"): a state, never an error's text.
func (r *Readiness) SetNotReady(reason string) {
	r.mu.Lock()
	r.ready, r.reason = false, reason
	r.mu.Unlock()
}

// Check returns nil when ready, else an error carrying the reason.
func (r *Readiness) Check(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ready {
		return nil
	}
	if r.reason == "" {
		return Reason("starting")
	}
	return Reason(r.reason)
}

// ProcessorCheck adapts the processor's status to a Check: ready once the consumer group is
// joined and no assigned partition is still restoring its state; never again after a fatal
// error. status is typically
//
//	func() (bool, []int32, error) { s := runner.Status(); return s.Joined, s.Restoring, s.Err }
func ProcessorCheck(status func() (joined bool, restoring []int32, fatal error)) Check {
	return func(context.Context) error {
		joined, restoring, fatal := status()
		switch {
		case fatal != nil:
			// the error itself is logged by the processor; /readyz says only that it stopped
			return fmt.Errorf("%w: %w", Reason("stopped after a fatal error (the process log has it)"), fatal)
		case !joined:
			return Reason("consumer group not joined yet")
		case len(restoring) > 0:
			return Reason(fmt.Sprintf("restoring state of partitions %v", restoring))
		}
		return nil
	}
}

// Cached wraps check so that it runs at most once per ttl; callers within the ttl get the last
// result. Use it for checks that cost a round trip (a ClickHouse ping), so probes and scrapes
// cannot multiply the load on a struggling server. The check runs under the caller's context.
func Cached(check Check, ttl time.Duration) Check {
	var (
		mu   sync.Mutex
		at   time.Time
		last error
	)
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if !at.IsZero() && time.Since(at) < ttl {
			return last
		}
		last, at = check(ctx), time.Now()
		return last
	}
}

// All combines checks: ready when every one is; otherwise the first failure.
func All(checks ...Check) Check {
	return func(ctx context.Context) error {
		for _, c := range checks {
			if err := c(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}
