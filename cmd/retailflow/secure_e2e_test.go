package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
)

// secureEnv is what `infra/local.sh secure` wrote to $RF_RUN_DIR/tls/secure.env: the TLS and
// SASL_SSL listeners of the local broker, ClickHouse's TLS port, the CA and client files.
type secureEnv map[string]string

var (
	secureOnce sync.Once
	secureVals secureEnv
	secureErr  error
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// needSecure brings up the local broker's TLS (client certificate required) and SASL_SSL/SCRAM
// listeners and ClickHouse's TLS port (infra/local.sh secure: idempotent; restarts a service
// only the first time, to add them), once per test binary.
func needSecure(t *testing.T) secureEnv {
	t.Helper()
	needServices(t)
	secureOnce.Do(func() {
		root := repoRoot(t)
		cmd := exec.Command(filepath.Join(root, "infra/local.sh"), "secure")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			secureErr = fmt.Errorf("infra/local.sh secure: %v\n%s", err, out)
			return
		}
		runDir := os.Getenv("RF_RUN_DIR")
		if runDir == "" {
			runDir = filepath.Join(root, ".run")
		}
		f, err := os.Open(filepath.Join(runDir, "tls", "secure.env"))
		if err != nil {
			secureErr = err
			return
		}
		defer f.Close()
		secureVals = secureEnv{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
				secureVals[k] = v
			}
		}
	})
	if secureErr != nil {
		t.Fatal(secureErr)
	}
	return secureVals
}

// chUser adds a ClickHouse user on loopback limited to db with profile (infra/local.sh ch-user)
// and returns the file holding its password, as a mounted Kubernetes secret would.
func chUser(t *testing.T, name, db, profile string) string {
	t.Helper()
	pw := fmt.Sprintf("pw-%d", time.Now().UnixNano())
	root := repoRoot(t)
	cmd := exec.Command(filepath.Join(root, "infra/local.sh"), "ch-user", name, pw, db, profile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ch-user %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command(filepath.Join(root, "infra/local.sh"), "ch-user-rm", name).Run() })
	f := filepath.Join(t.TempDir(), name+".password")
	if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPipelineOverTLSAndSCRAM runs produce → run → sink through the broker's TLS listener with a
// client certificate (mTLS) and through its SASL_SSL listener with SCRAM-SHA-512 and SCRAM-SHA-256,
// ClickHouse over TLS with password users: the sink as a `writer` (INSERT and SELECT, no DDL),
// the reconciliation report and the views queried as a read-only analyst limited to the
// database. Every password comes from a file.
func TestPipelineOverTLSAndSCRAM(t *testing.T) {
	env := needSecure(t)
	modes := []struct {
		name  string
		kafka string
	}{
		{"mtls", fmt.Sprintf("  tls: true\n  tls_ca_file: %s\n  tls_cert_file: %s\n  tls_key_file: %s\n",
			env["TLS_CA_FILE"], env["TLS_CLIENT_CERT_FILE"], env["TLS_CLIENT_KEY_FILE"])},
		{"scram-sha-512", fmt.Sprintf("  tls: true\n  tls_ca_file: %s\n  sasl:\n    mechanism: SCRAM-SHA-512\n    username: %s\n    password_file: %s\n",
			env["TLS_CA_FILE"], env["KAFKA_SCRAM_USER"], env["KAFKA_SCRAM_PASSWORD_FILE"])},
		{"scram-sha-256", fmt.Sprintf("  tls: true\n  tls_ca_file: %s\n  sasl:\n    mechanism: SCRAM-SHA-256\n    username: %s\n    password_file: %s\n",
			env["TLS_CA_FILE"], env["KAFKA_SCRAM_USER"], env["KAFKA_SCRAM_PASSWORD_FILE"])},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			brokers := env["KAFKA_TLS_BROKERS"]
			if m.name != "mtls" {
				brokers = env["KAFKA_SASL_BROKERS"]
			}
			// the environment of `make test` points at the plaintext ports; these tests must not
			t.Setenv("RETAILFLOW_KAFKA_BROKERS", brokers)
			t.Setenv("RETAILFLOW_CLICKHOUSE_ADDR", env["CH_TLS_ADDR"])
			base := testConfig(t, 2)
			body, err := os.ReadFile(base)
			if err != nil {
				t.Fatal(err)
			}
			db := ""
			for _, l := range strings.Split(string(body), "\n") {
				if v, ok := strings.CutPrefix(l, "  database: "); ok {
					db = v
				}
			}
			chTLS := fmt.Sprintf("  tls: true\n  tls_ca_file: %s\n", env["TLS_CA_FILE"])
			write := func(name, ch string) string {
				f := filepath.Join(t.TempDir(), name+".yaml")
				s := strings.Replace(string(body), "clickhouse:\n", "clickhouse:\n"+chTLS+ch, 1) + "kafka:\n" + m.kafka
				if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
					t.Fatal(err)
				}
				return f
			}
			admin := write("admin", "")
			for _, args := range [][]string{{"topics", "create"}, {"migrate"}} {
				if out, stderr, code := runCLI(t, "", append(args, "--config", admin)...); code != 0 {
					t.Fatalf("%v: %s %s", args, out, stderr)
				}
			}
			suffix := strings.ReplaceAll(m.name, "-", "_")
			sinkUser, analystUser := "rf_sink_"+suffix, "rf_analyst_"+suffix
			sinkCfg := write("sink", fmt.Sprintf("  username: %s\n  password_file: %s\n", sinkUser, chUser(t, sinkUser, db, "writer")))
			analystCfg := write("analyst", fmt.Sprintf("  username: %s\n  password_file: %s\n", analystUser, chUser(t, analystUser, db, "readonly")))

			const orders = 30
			if out, stderr, code := runCLI(t, "", "generate", "--config", admin, "--orders", fmt.Sprint(orders), "--seed", "18",
				"--produce", "--malformed-rate", "0", "--duplicate-rate", "0"); code != 0 {
				t.Fatalf("generate: %s %s", out, stderr)
			}
			startCLI(t, "run", "--config", admin, "--instance-id", "0")
			startCLI(t, "sink", "--config", sinkCfg)

			c, err := LoadConfig(analystCfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := chsink.Open(context.Background(), c.ClickHouseConn())
			if err != nil {
				t.Fatalf("analyst over TLS: %v", err)
			}
			defer conn.Close()
			ctx := context.Background()
			deadline := time.Now().Add(2 * time.Minute)
			for {
				var fOrders, commands uint64
				err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count() FROM %[1]s.f_orders), (SELECT count() FROM %[1]s.loyalty_commands FINAL)`, db)).Scan(&fOrders, &commands)
				if err != nil {
					t.Fatalf("analyst reads the views: %v", err)
				}
				if fOrders == orders && commands > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 2m: f_orders=%d (want %d), loyalty_commands=%d", fOrders, orders, commands)
				}
				time.Sleep(time.Second)
			}
			// every recon view answers the analyst (the report reads them all)
			out, stderr, code := runCLI(t, "", "reconcile", "--config", analystCfg, "--format", "json")
			if code != 0 || !strings.Contains(out, "recon_") {
				t.Fatalf("reconcile as the analyst: exit %d %s %.300s", code, stderr, out)
			}
			// what 18.16 can deny the analyst: writes, DDL, other databases
			for q, want := range map[string]string{
				fmt.Sprintf("INSERT INTO %s.recon_config (id) VALUES (9)", db): "readonly",
				fmt.Sprintf("CREATE TABLE %s.x (a UInt8) ENGINE = Memory", db): "readonly",
				"SELECT count() FROM system.one":                               "",
				"SELECT count() FROM default.no_such_table_for_analyst":        "Access denied",
			} {
				err := conn.Exec(ctx, q)
				switch {
				case want == "" && err != nil:
					t.Errorf("analyst %q: %v", q, err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Errorf("analyst %q: got %v, want an error containing %q", q, err, want)
				}
			}
			// the sink's user writes but cannot change the schema
			sc, err := LoadConfig(sinkCfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			sconn, err := chsink.Open(ctx, sc.ClickHouseConn())
			if err != nil {
				t.Fatal(err)
			}
			defer sconn.Close()
			if err := sconn.Exec(ctx, fmt.Sprintf("DROP TABLE %s.dead_letters", db)); err == nil || !strings.Contains(err.Error(), "DDL") {
				t.Errorf("sink user DROP TABLE: got %v, want DDL refused", err)
			}
		})
	}
}

// countingProxy forwards loopback TCP connections to target and counts them: how often a
// client dials is the measure of a retry storm.
func countingProxy(t *testing.T, target string) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), conns
}

// TestWrongCredentialsFailFastInOneLine: `retailflow run` and `retailflow sink` with a wrong
// SCRAM password, with a broker certificate the client does not trust, and without the client
// certificate the mTLS listener requires, exit 1 within kafka.timeout with one line that says
// which, having dialled the broker a handful of times at most (no retry storm).
func TestWrongCredentialsFailFastInOneLine(t *testing.T) {
	env := needSecure(t)
	pwFile := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(pwFile, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other-ca.pem") // a CA that did not sign the broker
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
		"-keyout", filepath.Join(t.TempDir(), "k"), "-out", other).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v %s", err, out)
	}
	const timeout = 8 * time.Second
	cases := []struct {
		name, target, kafka, want string
	}{
		{"wrong password", env["KAFKA_SASL_BROKERS"],
			fmt.Sprintf("  tls: true\n  tls_ca_file: %s\n  sasl:\n    mechanism: SCRAM-SHA-512\n    username: %s\n    password_file: %s\n", env["TLS_CA_FILE"], env["KAFKA_SCRAM_USER"], pwFile),
			`SASL SCRAM-SHA-512 authentication failed for user "retailflow": wrong username or password`},
		{"untrusted certificate", env["KAFKA_SASL_BROKERS"],
			fmt.Sprintf("  tls: true\n  tls_ca_file: %s\n  sasl:\n    mechanism: SCRAM-SHA-512\n    username: %s\n    password_file: %s\n", other, env["KAFKA_SCRAM_USER"], env["KAFKA_SCRAM_PASSWORD_FILE"]),
			"TLS: the broker's certificate is not signed by a trusted CA (kafka.tls_ca_file)"},
		{"no client certificate", env["KAFKA_TLS_BROKERS"],
			fmt.Sprintf("  tls: true\n  tls_ca_file: %s\n", env["TLS_CA_FILE"]),
			"TLS: the broker refused the handshake: does its listener require a client certificate"},
	}
	for _, tc := range cases {
		for _, command := range []string{"run", "sink"} {
			t.Run(tc.name+"/"+command, func(t *testing.T) {
				_, port, _ := net.SplitHostPort(tc.target)
				proxy, conns := countingProxy(t, "127.0.0.1:"+port)
				t.Setenv("RETAILFLOW_KAFKA_BROKERS", proxy)
				cfg := testConfig(t, 1)
				body, _ := os.ReadFile(cfg)
				full := string(body) + fmt.Sprintf("kafka:\n  timeout: %s\n", timeout) + tc.kafka
				if err := os.WriteFile(cfg, []byte(full), 0o600); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
				defer cancel()
				var stdout, stderr syncBuffer
				start := time.Now()
				code := runContext(ctx, []string{command, "--config", cfg}, strings.NewReader(""), &stdout, &stderr)
				took := time.Since(start)
				lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
				t.Logf("%s: exit %d after %s, %d connection(s): %s", command, code, took.Round(time.Millisecond), conns.Load(), lines[len(lines)-1])
				if code != 1 {
					t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
				}
				if took > timeout+2*time.Second {
					t.Errorf("took %s, want within kafka.timeout (%s)", took, timeout)
				}
				if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
					t.Errorf("stderr is %d line(s), want one saying %q:\n%s", len(lines), tc.want, stderr.String())
				}
				if n := conns.Load(); n > 3 {
					t.Errorf("%d connections to the broker, want at most 3 (no retry storm)", n)
				}
			})
		}
	}
}
