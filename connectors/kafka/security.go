package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TLSFiles names the PEM files of a TLS client: all optional. CAFile replaces the system's
// roots (a private CA); CertFile and KeyFile are the client certificate a listener with
// ssl.client.auth=required asks for (both or neither). ServerName overrides the host name the
// broker's certificate must carry (default: the host of the address dialled).
type TLSFiles struct {
	CAFile, CertFile, KeyFile, ServerName string
}

// TLSFileError says which file of a TLSFiles is unusable and why; Field is "ca", "cert" or "key".
type TLSFileError struct {
	Field, Path, Problem string
}

func (e *TLSFileError) Error() string {
	return fmt.Sprintf("%s file %s: %s", e.Field, e.Path, e.Problem)
}

// TLSConfig reads the files once and returns the client configuration: TLS 1.2 or later,
// the brokers verified against CAFile (or the system roots), the client certificate when given.
// Certificate verification is never turned off.
func TLSConfig(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, &TLSFileError{"ca", f.CAFile, pathProblem(err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &TLSFileError{"ca", f.CAFile, "holds no PEM certificate"}
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.CertFile != "" && f.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			if _, serr := os.Stat(f.CertFile); serr != nil {
				return nil, &TLSFileError{"cert", f.CertFile, pathProblem(serr)}
			}
			if _, serr := os.Stat(f.KeyFile); serr != nil {
				return nil, &TLSFileError{"key", f.KeyFile, pathProblem(serr)}
			}
			return nil, &TLSFileError{"cert", f.CertFile, fmt.Sprintf("with key %s: %v", f.KeyFile, err)}
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.CertFile != "":
		return nil, &TLSFileError{"key", "", "a client certificate needs its key file too"}
	case f.KeyFile != "":
		return nil, &TLSFileError{"cert", "", "a client key needs its certificate file too"}
	}
	return cfg, nil
}

func pathProblem(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "does not exist"
	}
	if errors.Is(err, os.ErrPermission) {
		return "is not readable (permission denied)"
	}
	return err.Error()
}

// AuthProblem names the security failure err shows, in words an operator can act on, or
// returns "" when err is not one: the broker's certificate not trusted (wrong CA bundle or host
// name), the broker refusing the TLS handshake (a listener that requires a client
// certificate), a refused SASL login, or TLS spoken to a plaintext port and the reverse. None of
// these heal by retrying, so callers fail at once with this line instead of retrying.
func (c Conn) AuthProblem(err error) string {
	if err == nil {
		return ""
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var recHdr tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA):
		return "TLS: the broker's certificate is not signed by a trusted CA (kafka.tls_ca_file)"
	case errors.As(err, &hostname):
		return "TLS: the broker's certificate is not valid for the address dialled (kafka.brokers, kafka.tls_server_name)"
	case errors.As(err, &invalid):
		return "TLS: the broker's certificate is invalid (expired or not for server use)"
	case errors.As(err, &verify):
		return "TLS: the broker's certificate failed verification"
	case errors.As(err, &recHdr):
		return "TLS: the broker did not answer in TLS: is this a plaintext listener (kafka.tls)?"
	case strings.Contains(err.Error(), "remote error: tls:"): // crypto/tls's alert type is unexported
		return "TLS: the broker refused the handshake: does its listener require a client certificate (kafka.tls_cert_file, kafka.tls_key_file) from its CA?"
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Sprintf("SASL %s authentication failed for user %q: wrong username or password (kafka.sasl)", c.SASLMechanism, c.SASLUser)
	case errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.IllegalSaslState):
		return fmt.Sprintf("SASL: the listener does not accept %s (kafka.sasl.mechanism)", c.SASLMechanism)
	}
	if c.TLS == nil && strings.Contains(err.Error(), "tls alert record") {
		return "the broker answered in TLS: set kafka.tls: true (and kafka.tls_ca_file)"
	}
	if c.TLS != nil && (errors.Is(err, io.EOF) || strings.Contains(err.Error(), "first read")) {
		return "TLS: the broker closed the connection during the handshake: a listener requiring a client certificate (kafka.tls_cert_file), or not a TLS listener"
	}
	if c.TLS == nil && (errors.Is(err, io.EOF) || strings.Contains(err.Error(), "first read")) {
		return "the broker closed the connection at once: is this a TLS or SASL listener (kafka.tls, kafka.sasl)?"
	}
	return ""
}
