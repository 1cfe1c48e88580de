package store

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"snapvisor/config"
)

// Config holds the remotes and every backend's settings, from the environment
// (config.Load). Foreign variables (AWS_*, AZURE_*, GOOGLE_*, STORAGE_EMULATOR_HOST)
// keep the names their own tools use. Secret fields also accept NAME_FILE.
type Config struct {
	Remotes []string      `envconfig:"SNAPVISOR_REMOTES" desc:"comma-separated remote URLs each snapshot is pushed to: file:///path, s3://bucket/prefix?endpoint=host:port&region=R&tls=false, sftp://user@host:port/path, azure://container/prefix, gs://bucket/prefix, redis://[user@]host:port/DB?prefix=P (rediss:// for TLS), postgres://user@host:port/db?sslmode=require&table=snapvisor_objects, sqlite:///path/to/file.db"`
	Retries int           `envconfig:"SNAPVISOR_REMOTE_RETRIES" default:"5" desc:"retries of a failed remote operation (exponential backoff with jitter)"`
	Backoff time.Duration `envconfig:"SNAPVISOR_REMOTE_BACKOFF" default:"1s" desc:"first retry delay; doubled each retry, capped at 1m"`
	Timeout time.Duration `envconfig:"SNAPVISOR_REMOTE_TIMEOUT" default:"1h" desc:"time limit for one snapshot's upload to (or download from) one remote, retries and rotation included; a remote that hangs is abandoned after it and never delays the others or the next snapshot"`

	// One writer per snapshot name on each remote (remote/lease.go).
	LeaseTTL time.Duration `envconfig:"SNAPVISOR_LEASE_TTL" default:"10m" desc:"lifetime of this writer's lease on each remote (<NAME>.lease), renewed every third of it while the entrypoint runs and released at a clean exit; another writer with the same NAME and remote is refused until it expires (or entrypoint takeover)"`

	S3AccessKey    config.Secret `envconfig:"AWS_ACCESS_KEY_ID" desc:"S3 access key; empty: the IAM chain (~/.aws/credentials, web identity, ECS/EC2 roles)"`
	S3SecretKey    config.Secret `envconfig:"AWS_SECRET_ACCESS_KEY" desc:"S3 secret key"`
	S3SessionToken config.Secret `envconfig:"AWS_SESSION_TOKEN" desc:"S3 session token for temporary credentials"`
	S3CAFile       string        `envconfig:"SNAPVISOR_S3_CA_FILE" desc:"PEM file of extra CA certificates trusted for S3 endpoints"`
	S3StorageClass string        `envconfig:"SNAPVISOR_S3_STORAGE_CLASS" desc:"S3 storage class of uploads, e.g. STANDARD_IA (URL parameter storage_class overrides)"`

	SFTPKeyFile        string        `envconfig:"SNAPVISOR_SFTP_KEY_FILE" desc:"private key file for SFTP (default ~/.ssh/id_ed25519, id_ecdsa, id_rsa, the first that exists)"`
	SFTPKeyPassphrase  config.Secret `envconfig:"SNAPVISOR_SFTP_KEY_PASSPHRASE" desc:"passphrase of the SFTP key file"`
	SFTPPassword       config.Secret `envconfig:"SNAPVISOR_SFTP_PASSWORD" desc:"SFTP password (keys are preferred)"`
	SFTPKnownHosts     string        `envconfig:"SNAPVISOR_SFTP_KNOWN_HOSTS" desc:"known_hosts file checked for SFTP host keys (default ~/.ssh/known_hosts; required)"`
	SFTPInsecureNoHost bool          `envconfig:"SNAPVISOR_SFTP_INSECURE_IGNORE_HOST_KEY" default:"false" desc:"accept any SFTP host key (man-in-the-middle risk; logged as a warning on every connection)"`

	AzureConnectionString config.Secret `envconfig:"AZURE_STORAGE_CONNECTION_STRING" desc:"Azure Storage connection string"`
	AzureAccount          string        `envconfig:"AZURE_STORAGE_ACCOUNT" desc:"Azure Storage account name (with AZURE_STORAGE_KEY)"`
	AzureKey              config.Secret `envconfig:"AZURE_STORAGE_KEY" desc:"Azure Storage account key"`
	AzureEndpoint         string        `envconfig:"SNAPVISOR_AZURE_ENDPOINT" desc:"Azure blob service URL override, e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite (URL parameter endpoint overrides)"`

	GCSCredentialsFile string `envconfig:"GOOGLE_APPLICATION_CREDENTIALS" desc:"Google service-account JSON file (default: application default credentials)"`
	GCSEmulatorHost    string `envconfig:"STORAGE_EMULATOR_HOST" desc:"host:port of a GCS emulator such as fake-gcs-server (no authentication)"`

	RedisPassword config.Secret `envconfig:"SNAPVISOR_REDIS_PASSWORD" desc:"Redis password (AUTH): requirepass, or the password of the URL's ACL user (redis://user@host:port/DB); a password in the URL is refused"`
	RedisCAFile   string        `envconfig:"SNAPVISOR_REDIS_CA_FILE" desc:"PEM file of extra CA certificates trusted for rediss:// servers"`

	PostgresPassword config.Secret `envconfig:"SNAPVISOR_POSTGRES_PASSWORD" desc:"password of the role of postgres:// remotes (a password in the URL is refused); empty: the matching line of PGPASSFILE"`
	PostgresPassFile string        `envconfig:"PGPASSFILE" desc:"libpq password file (host:port:db:user:password lines) read for postgres:// remotes when SNAPVISOR_POSTGRES_PASSWORD is empty (default ~/.pgpass)"`
}

// URLs returns the configured remotes, trimmed, without empty entries.
func (c Config) URLs() []string {
	var out []string
	for _, r := range c.Remotes {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// Validate checks every remote URL (syntax and scheme), the retry settings
// and each backend's settings.
// It opens no connection. Errors are *config.Error naming the variable.
func (c Config) Validate() error {
	var errs []error
	used := map[string]bool{} // schemes of the valid remotes
	for _, r := range c.URLs() {
		u, err := parseRemote(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		used[u.Scheme] = true
	}
	if c.Retries < 0 || c.Retries > 100 {
		errs = append(errs, config.Invalid("REMOTE_RETRIES", strconv.Itoa(c.Retries), "a whole number from 0 to 100"))
	}
	if c.Backoff <= 0 {
		errs = append(errs, config.Invalid("REMOTE_BACKOFF", c.Backoff.String(), "a positive duration such as 500ms or 1s"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Invalid("REMOTE_TIMEOUT", c.Timeout.String(), "a positive duration such as 30m or 2h"))
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, config.Invalid("LEASE_TTL", c.LeaseTTL.String(), "a duration of at least 1s, such as 10m"))
	}
	for _, b := range registered() {
		if b.validate != nil {
			errs = append(errs, b.validate(c, used[b.scheme])...)
		}
	}
	return errors.Join(errs...)
}

// Policy returns the retry policy of the configuration.
func (c Config) Policy() Policy {
	return Policy{Retries: c.Retries, Backoff: c.Backoff, MaxBackoff: time.Minute}
}
