// The Store type, its options, the records it keeps and their layout in bbolt. The rest of the
// store lives beside it, one concern a file: open.go (open, close, identity), batch.go (the single
// writer), write.go (new versions), read.go, audit.go and watch.go (subscriptions).

package secrets

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names. Paths and key names are plaintext; every value is an age file.
var (
	bMeta     = []byte("meta")     // format, recipient, canary
	bPaths    = []byte("paths")    // path -> pathMeta (JSON)
	bVersions = []byte("versions") // path -> bucket of version (uint64 BE) -> versionRec (JSON)
	bAudit    = []byte("audit")    // sequence (uint64 BE) -> AuditEntry (JSON)

	kFormat    = []byte("format")
	kRecipient = []byte("recipient")
	kCanary    = []byte("canary")
	kDEK       = []byte("dek")
)

const (
	storeFormat   = "1"
	canaryText    = "gluebox secret store canary"
	defaultAudits = 100_000
)

// errStaleKey means a value was sealed to a data key that rotate-key replaced meanwhile.
var errStaleKey = errors.New("identity rotated while writing")

// StoreOptions configure Open. The zero value is not usable: Dir is required.
type StoreOptions struct {
	// Dir is the secrets dir (paths.Layout.SecretsDir()); it holds store.db and the identity file.
	Dir string
	// Passphrase, when set, seals the identity file with age's scrypt recipient; empty leaves the
	// identity file as plain text protected only by its 0600 mode.
	Passphrase string
	// ScryptWorkFactor is log2 of scrypt's N for the passphrase; 0 means age's default (18).
	ScryptWorkFactor int
	// KeepVersions is how many versions of each path are kept; 0 means 10.
	KeepVersions int
	// LockTimeout is how long Open waits for another process to release store.db; 0 means 2s.
	LockTimeout time.Duration
	// KeepAudit is how many audit entries are kept; 0 means 100,000.
	KeepAudit int
}

func (o *StoreOptions) defaults() error {
	if o.Dir == "" {
		return inputErrorf("secret store dir is not set: pass the data dir's secrets dir (paths.Layout.SecretsDir())")
	}
	if o.KeepVersions < 0 || o.KeepAudit < 0 || o.LockTimeout < 0 || o.ScryptWorkFactor < 0 || o.ScryptWorkFactor > 30 {
		return inputErrorf("secret store options: KeepVersions, KeepAudit, LockTimeout must not be negative and ScryptWorkFactor must be 0..30")
	}
	if o.KeepVersions == 0 {
		o.KeepVersions = 10
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.KeepAudit == 0 {
		o.KeepAudit = defaultAudits
	}
	return nil
}

// Store is the encrypted secret store. Its methods are safe for concurrent use.
type Store struct {
	opts  StoreOptions
	log   *slog.Logger
	codec identityCodec

	mu   sync.RWMutex // writers: rotate-key, restore, Close; readers: everything else
	db   *bolt.DB
	keys *keyring

	writes    chan *writeReq
	closed    chan struct{}
	closeOnce sync.Once
	loopDone  chan struct{}

	subsMu sync.Mutex
	subs   map[*Subscription]struct{}

	// crashHook, set by tests only, is called at each step of rotate-key; an error stops the
	// rotation right there, as a crash would.
	crashHook func(step string) error
}

// Secret is one path at one version with its opened values.
type Secret struct {
	Path    string            `json:"path"`
	Version uint64            `json:"version"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	By      string            `json:"by"`
	Values  map[string][]byte `json:"-"`
}

// PathInfo describes a path without its values.
type PathInfo struct {
	Path    string    `json:"path"`
	Version uint64    `json:"version"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	By      string    `json:"by"`
	Keys    []string  `json:"keys"`
}

// VersionInfo describes one kept version of a path.
type VersionInfo struct {
	Version uint64    `json:"version"`
	Time    time.Time `json:"time"`
	By      string    `json:"by"`
	Op      string    `json:"op"`
	Keys    []string  `json:"keys"`
	Changed []string  `json:"changed,omitempty"`
}

type pathMeta struct {
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	By      string    `json:"by"`
	Version uint64    `json:"version"`
	Keys    []string  `json:"keys"`
}

type versionRec struct {
	VersionInfo
	Sealed map[string][]byte `json:"sealed"`
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
