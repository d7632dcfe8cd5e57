package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// clearServiceEnv unsets the variables an end-to-end run exports, so that a test sees only what
// it sets (t.Setenv restores them afterwards).
func clearServiceEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"RETAILFLOW_KAFKA_BROKERS", "RETAILFLOW_CLICKHOUSE_ADDR"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// TestConfigPrintsYAMLThatLoadsBack: `retailflow config` prints YAML that --config reads back to
// the same effective configuration; no secret appears in it (a password set in the environment
// is "***", one read from a file is left out with its file key kept, the password inside the
// registry URL is "***"), and the printed mask is refused if it is fed back as a password.
func TestConfigPrintsYAMLThatLoadsBack(t *testing.T) {
	clearServiceEnv(t)
	dir := t.TempDir()
	chSecret := filepath.Join(dir, "ch-password")
	if err := os.WriteFile(chSecret, []byte("ch-s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.yaml")
	if err := os.WriteFile(in, []byte(`kafka:
  brokers: [kafka-0:9093, kafka-1:9093]
  tls: true
  sasl:
    mechanism: SCRAM-SHA-512
    username: retailflow
clickhouse:
  addr: ch:9440
  username: rf_sink
  password_file: `+chSecret+`
registry:
  url: https://reg-user:url-s3cret@registry.example:8081/
runtime:
  transaction_timeout: 20s
policy:
  earn_rates: {EUR: "2"}
http:
  addr: 0.0.0.0:8080
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RETAILFLOW_KAFKA_SASL_PASSWORD", "kafka-s3cret-from-env")
	out, stderr, code := runCLI(t, "", "config", "--config", in)
	if code != 0 {
		t.Fatalf("config: exit %d: %s", code, stderr)
	}
	for _, secret := range []string{"kafka-s3cret-from-env", "ch-s3cret-from-file", "url-s3cret"} {
		if strings.Contains(out, secret) {
			t.Errorf("printed configuration contains the secret %q:\n%s", secret, out)
		}
	}
	var tree map[string]any
	if err := yaml.Unmarshal([]byte(out), &tree); err != nil {
		t.Fatalf("output is not YAML: %v\n%s", err, out)
	}
	for _, want := range []string{"password: '***'", "password_file: " + chSecret, "url: https://reg-user:***@registry.example:8081/", "transaction_timeout: 20s"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// fed back, with the secrets given again the way they were (env, file): the same config
	printed := filepath.Join(dir, "printed.yaml")
	if err := os.WriteFile(printed, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := LoadConfig(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	// the masked values are refused, each naming its key and where the secret should come from
	_, err = LoadConfig(printed, nil)
	for _, key := range []string{"config registry.url: carries the masked password"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Fatalf("loading the printed config: %v, want %q", err, key)
		}
	}
	noURLCreds := filepath.Join(dir, "printed-fixed.yaml")
	fixed := strings.Replace(out, "reg-user:***@", "", 1)
	if err := os.WriteFile(noURLCreds, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RETAILFLOW_KAFKA_SASL_PASSWORD", "")
	os.Unsetenv("RETAILFLOW_KAFKA_SASL_PASSWORD")
	_, err = LoadConfig(noURLCreds, nil)
	if err == nil || !strings.Contains(err.Error(), `config kafka.sasl.password: is "***", the mask`) ||
		!strings.Contains(err.Error(), "RETAILFLOW_KAFKA_SASL_PASSWORD") {
		t.Fatalf("loading the printed config without the env secret: %v", err)
	}
	t.Setenv("RETAILFLOW_KAFKA_SASL_PASSWORD", "kafka-s3cret-from-env")
	got, err := LoadConfig(noURLCreds, nil)
	if err != nil {
		t.Fatalf("loading the printed config with the env secret: %v", err)
	}
	want.Registry.URL = "https://registry.example:8081/"
	gotY, _ := got.MaskedYAML()
	wantY, _ := want.MaskedYAML()
	if string(gotY) != string(wantY) {
		t.Errorf("round trip changed the configuration:\n got %s\nwant %s", gotY, wantY)
	}
	if got.Kafka.SASL.Password != want.Kafka.SASL.Password || got.ClickHouse.Password != "ch-s3cret-from-file" {
		t.Errorf("round trip lost a secret: kafka %v, clickhouse %v", got.Kafka.SASL.Password == want.Kafka.SASL.Password, got.ClickHouse.Password == "ch-s3cret-from-file")
	}
	if !reflect.DeepEqual(got.KafkaConn().Brokers, want.KafkaConn().Brokers) || (got.KafkaTLS() == nil) != (want.KafkaTLS() == nil) {
		t.Errorf("round trip changed the Kafka connection")
	}
}

// TestSecurityConfigErrorsNameTheKey: PLAIN without TLS, a missing CA file, half a client
// certificate, a secret set twice, an unreadable secret file and a mechanism without a password
// are refused in one line that names the key.
func TestSecurityConfigErrorsNameTheKey(t *testing.T) {
	clearServiceEnv(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("x\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"plain without tls", map[string]string{"RETAILFLOW_KAFKA_SASL_MECHANISM": "PLAIN", "RETAILFLOW_KAFKA_SASL_USERNAME": "u", "RETAILFLOW_KAFKA_SASL_PASSWORD": "p"},
			"config kafka.sasl.mechanism: PLAIN sends the password in clear text"},
		{"scram without password", map[string]string{"RETAILFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "RETAILFLOW_KAFKA_SASL_USERNAME": "u"},
			"config kafka.sasl.password: is required"},
		{"missing ca file", map[string]string{"RETAILFLOW_KAFKA_TLS": "true", "RETAILFLOW_KAFKA_TLS_CA_FILE": filepath.Join(dir, "nope.pem")},
			"config kafka.tls_ca_file: ca file " + filepath.Join(dir, "nope.pem") + ": does not exist"},
		{"ca file without a certificate", map[string]string{"RETAILFLOW_CLICKHOUSE_TLS": "true", "RETAILFLOW_CLICKHOUSE_TLS_CA_FILE": notPEM},
			"config clickhouse.tls_ca_file: ca file " + notPEM + ": holds no PEM certificate"},
		{"cert without key", map[string]string{"RETAILFLOW_KAFKA_TLS": "true", "RETAILFLOW_KAFKA_TLS_CERT_FILE": notPEM},
			"config kafka.tls_key_file"},
		{"ca file without tls", map[string]string{"RETAILFLOW_KAFKA_TLS_CA_FILE": notPEM},
			"config kafka.tls_ca_file: is set but kafka.tls is false"},
		{"secret twice", map[string]string{"RETAILFLOW_CLICKHOUSE_PASSWORD": "p", "RETAILFLOW_CLICKHOUSE_PASSWORD_FILE": pw},
			"config clickhouse.password_file: is set together with clickhouse.password"},
		{"unreadable secret file", map[string]string{"RETAILFLOW_REGISTRY_PASSWORD_FILE": filepath.Join(dir, "gone")},
			"config registry.password_file: cannot read " + filepath.Join(dir, "gone") + ": no such file or directory"},
		{"http addr", map[string]string{"RETAILFLOW_HTTP_ADDR": "8080"}, `config http.addr: "8080" is not host:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, stderr, code := runCLI(t, "", "config")
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 naming %q", code, stderr, tc.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
}
