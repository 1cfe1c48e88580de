package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"go.uber.org/zap"
)

// Azure memory bound: a streaming upload holds azConcurrency blocks of
// azBlockSize (32 MiB). Blocks are invisible until the block list is
// committed at the end: a partial upload is never visible.
const (
	azBlockSize   = 8 << 20
	azConcurrency = 4
)

// azureStore is a container (and prefix) on Azure Blob Storage or Azurite:
// azure://container/prefix. Credentials: AZURE_STORAGE_CONNECTION_STRING, or
// AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY; a SAS token goes in the
// connection string (BlobEndpoint=URL;SharedAccessSignature=TOKEN), never in
// the remote URL or the endpoint (they are not secret and reach the service).
// The blob service URL is https://ACCOUNT.blob.core.windows.net/ unless
// SNAPVISOR_AZURE_ENDPOINT or the URL parameter endpoint overrides it.
type azureStore struct {
	client    *azblob.Client
	container string
	prefix    string
	name      string
	scrub     func(string) string
}

var _ Store = (*azureStore)(nil)

func openAzure(ctx context.Context, u *url.URL, cfg Config, log *zap.Logger) (*azureStore, error) {
	s := &azureStore{
		container: u.Host,
		prefix:    strings.Trim(u.Path, "/"),
		name:      Redact(u.String()),
	}
	cs := cfg.AzureConnectionString.Reveal()
	secrets := []string{cfg.AzureKey.Reveal(), cs}
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && (strings.EqualFold(k, "AccountKey") || strings.EqualFold(k, "SharedAccessSignature")) {
			secrets = append(secrets, v)
		}
	}
	s.scrub = scrubber(secrets...)

	endpoint := u.Query().Get("endpoint")
	if endpoint == "" {
		endpoint = cfg.AzureEndpoint
	}
	opts := &azblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		// A few quick request-level retries; WithRetry does the patient ones.
		Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 2 * time.Second,
			TryTimeout: 5 * time.Minute},
	}}
	var client *azblob.Client
	var err error
	switch {
	case cs != "":
		if endpoint != "" {
			cs = strings.TrimSuffix(cs, ";") + ";BlobEndpoint=" + endpoint
		}
		client, err = azblob.NewClientFromConnectionString(cs, opts)
	case cfg.AzureAccount != "" && cfg.AzureKey != "":
		if endpoint == "" {
			endpoint = "https://" + cfg.AzureAccount + ".blob.core.windows.net/"
		}
		var cred *azblob.SharedKeyCredential
		cred, err = azblob.NewSharedKeyCredential(cfg.AzureAccount, cfg.AzureKey.Reveal())
		if err == nil {
			client, err = azblob.NewClientWithSharedKeyCredential(endpoint, cred, opts)
		}
	default:
		err = errors.New("no credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY")
	}
	if err != nil {
		return nil, &Error{Store: s.name, Op: "open", Err: err, Permanent: true, scrub: s.scrub}
	}
	s.client = client
	log.Debug("azure store opened", zap.String("remote", s.name))
	return s, nil
}

func (s *azureStore) Name() string { return s.name }
func (s *azureStore) Close() error { return nil }

// streamBuffer: the blocks in flight of a streaming upload.
func (s *azureStore) streamBuffer() int64 { return azConcurrency * azBlockSize }

func (s *azureStore) key(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

func (s *azureStore) fail(op, key string, err error) error {
	e := &Error{Store: s.name, Op: op, Key: key, Err: err, scrub: s.scrub}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		e.Err = &azureError{re}
	}
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		e.Err = fmt.Errorf("%w (%s)", fs.ErrNotExist, bloberror.BlobNotFound)
	case errors.Is(err, errBadKey),
		bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.ContainerNotFound, bloberror.AuthorizationFailure,
			bloberror.AuthorizationPermissionMismatch, bloberror.InvalidAuthenticationInfo, bloberror.AccountIsDisabled):
		e.Permanent = true
	case errors.As(err, &re) && (re.StatusCode == 401 || re.StatusCode == 403):
		e.Permanent = true
	}
	return e
}

func (s *azureStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return s.fail("put", key, err)
	}
	_, err := s.client.UploadStream(ctx, s.container, s.key(key), exactly(r, size), &azblob.UploadStreamOptions{
		BlockSize:   azBlockSize,
		Concurrency: azConcurrency,
	})
	if err != nil {
		return s.fail("put", key, err)
	}
	return nil
}

func (s *azureStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, s.fail("get", key, err)
	}
	resp, err := s.client.DownloadStream(ctx, s.container, s.key(key), nil)
	if err != nil {
		return nil, s.fail("get", key, err)
	}
	return resp.Body, nil
}

func (s *azureStore) List(ctx context.Context, prefix string) ([]Object, error) {
	full := s.key(prefix)
	if prefix == "" && s.prefix != "" {
		full = s.prefix + "/"
	}
	var out []Object
	pager := s.client.NewListBlobsFlatPager(s.container, &azblob.ListBlobsFlatOptions{Prefix: &full})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, s.fail("list", prefix, err)
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name == nil {
				continue
			}
			o := Object{Key: *b.Name}
			if s.prefix != "" {
				o.Key = strings.TrimPrefix(o.Key, s.prefix+"/")
			}
			if p := b.Properties; p != nil {
				if p.ContentLength != nil {
					o.Size = *p.ContentLength
				}
				if p.LastModified != nil {
					o.Modified = *p.LastModified
				}
			}
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *azureStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return s.fail("delete", key, err)
	}
	if _, err := s.client.DeleteBlob(ctx, s.container, s.key(key), nil); err != nil {
		if bloberror.HasCode(err, bloberror.BlobNotFound) {
			return nil
		}
		return s.fail("delete", key, err)
	}
	return nil
}

// azureError shortens azcore's multi-line response errors to one line:
// method, URL without query, status and error code.
type azureError struct{ re *azcore.ResponseError }

func (e *azureError) Error() string {
	where := ""
	if r := e.re.RawResponse; r != nil && r.Request != nil && r.Request.URL != nil {
		u := *r.Request.URL
		u.RawQuery = ""
		where = r.Request.Method + " " + u.String() + ": "
	}
	return fmt.Sprintf("%s%d %s", where, e.re.StatusCode, e.re.ErrorCode)
}

func (e *azureError) Unwrap() error { return e.re }
