package store

import (
	"crypto/x509"
	"fmt"
	"os"
)

// extraRoots returns the system's root certificates plus the PEM
// certificates of file, named by variable in errors (SNAPVISOR_S3_CA_FILE,
// SNAPVISOR_REDIS_CA_FILE).
func extraRoots(file, variable string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", variable, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate", variable, file)
	}
	return pool, nil
}
