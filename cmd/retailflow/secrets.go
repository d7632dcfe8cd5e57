package main

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v3"
)

// masked is what `retailflow config` prints in place of a secret. Validate refuses it as a
// value, so a printed configuration fed back with --config cannot log in with "***".
const masked = "***"

// secret is one secret of the configuration: its key, where it is held, and the key of the
// file it may be read from instead (a mounted Kubernetes secret).
type secret struct {
	key, fileKey string
	value, file  *string
}

// env is the environment variable that sets the secret.
func (s secret) env() string {
	return "RETAILFLOW_" + strings.ToUpper(strings.ReplaceAll(s.key, ".", "_"))
}

func (c *Config) secrets() []secret {
	return []secret{
		{"kafka.sasl.password", "kafka.sasl.password_file", &c.Kafka.SASL.Password, &c.Kafka.SASL.PasswordFile},
		{"clickhouse.password", "clickhouse.password_file", &c.ClickHouse.Password, &c.ClickHouse.PasswordFile},
		{"registry.password", "registry.password_file", &c.Registry.Password, &c.Registry.PasswordFile},
		{"ui.clickhouse_password", "ui.clickhouse_password_file", &c.UI.ClickHousePassword, &c.UI.ClickHousePasswordFile},
	}
}

// readSecretFiles fills each secret from its *_file (one trailing newline dropped, as
// `kubectl create secret --from-file` and editors leave it). Setting both the secret and its
// file is an error: which one wins would be a guess.
func (c *Config) readSecretFiles() error {
	var errs []error
	for _, s := range c.secrets() {
		if *s.file == "" {
			continue
		}
		if *s.value != "" {
			errs = append(errs, &ConfigError{Key: s.fileKey, Problem: fmt.Sprintf("is set together with %s (%s): set only one", s.key, s.env())})
			continue
		}
		b, err := os.ReadFile(*s.file)
		if err != nil {
			errs = append(errs, &ConfigError{Key: s.fileKey, Problem: fmt.Sprintf("cannot read %s: %v", *s.file, unwrapPathError(err))})
			continue
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			errs = append(errs, &ConfigError{Key: s.fileKey, Problem: fmt.Sprintf("%s is empty", *s.file)})
			continue
		}
		*s.value = v
	}
	return joinOneLine(errs)
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// MaskedYAML renders the configuration as the YAML --config reads, every secret masked: a
// password read from its file is left out (the file key stays, so feeding the output back
// reads it again), any other password is "***", and so is the password of a URL's user info.
func (c Config) MaskedYAML() ([]byte, error) {
	m := c
	for _, s := range m.secrets() {
		switch {
		case *s.file != "":
			*s.value = ""
		case *s.value != "":
			*s.value = masked
		}
	}
	m.Registry.URL = maskURL(m.Registry.URL)
	var tree map[string]any
	if err := mapstructure.Decode(m, &tree); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(yamlValues(tree)); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b.Bytes(), nil
}

// maskURL replaces the password in a URL's user info with the mask.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), masked)
		return strings.Replace(u.String(), url.QueryEscape(masked), masked, 1)
	}
	return raw
}

// yamlValues makes the decoded tree print as a person writes it: durations as "10s".
func yamlValues(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = yamlValues(e)
		}
		return out
	case time.Duration:
		return x.String()
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Struct { // a section mapstructure left as a struct
		var m map[string]any
		if err := mapstructure.Decode(v, &m); err == nil {
			return yamlValues(m)
		}
	}
	return v
}
