package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Config configures the secret store component. Zero values are documented per field; only Dir
// and BackupDir are required (ConfigFor fills them from a paths.Layout).
type Config struct {
	// Dir holds store.db and the identity file (paths.Layout.SecretsDir()). Required.
	Dir string
	// BackupDir receives snapshot backups (paths.Layout.BackupsDir()). Required.
	BackupDir string
	// Passphrase, if set, seals the identity file with age's scrypt recipient; empty means the
	// identity file is plain text readable by root only (mode 0600).
	Passphrase string
	// ScryptWorkFactor is log2(N) for the passphrase's scrypt; 0 means age's default (18).
	ScryptWorkFactor int
	// KeepVersions is how many versions of each path are kept; 0 means 10.
	KeepVersions int
	// BackupInterval is the time between scheduled backups; 0 means 6h, negative disables the
	// schedule (on-demand backups still work).
	BackupInterval time.Duration
	// BackupKeep is how many backups are kept in BackupDir; 0 means 14.
	BackupKeep int
	// LockTimeout is how long to wait for another process to release store.db; 0 means 2s.
	LockTimeout time.Duration
}

// ConfigFor returns the default Config for an instance's layout.
func ConfigFor(l paths.Layout) Config {
	return Config{Dir: l.SecretsDir(), BackupDir: l.BackupsDir()}
}

// Validate reports the first problem with c, saying which field and how to fix it.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("secrets: Dir is empty: set it to the data dir's secrets dir (paths.Layout.SecretsDir())")
	case c.BackupDir == "":
		return errors.New("secrets: BackupDir is empty: set it to the data dir's backups dir (paths.Layout.BackupsDir())")
	case c.KeepVersions < 0:
		return fmt.Errorf("secrets: KeepVersions is %d: use 0 for the default (10) or a positive number", c.KeepVersions)
	case c.BackupKeep < 0:
		return fmt.Errorf("secrets: BackupKeep is %d: use 0 for the default (14) or a positive number", c.BackupKeep)
	case c.LockTimeout < 0:
		return fmt.Errorf("secrets: LockTimeout is %s: use 0 for the default (2s) or a positive duration", c.LockTimeout)
	case c.ScryptWorkFactor < 0 || c.ScryptWorkFactor > 30:
		return fmt.Errorf("secrets: ScryptWorkFactor is %d: use 0 for age's default (18) or 10..30", c.ScryptWorkFactor)
	case c.BackupInterval > 0 && c.BackupInterval < time.Minute:
		return fmt.Errorf("secrets: BackupInterval is %s: use at least 1m, 0 for the default (6h) or a negative value to disable", c.BackupInterval)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.BackupInterval == 0 {
		c.BackupInterval = 6 * time.Hour
	}
	if c.BackupKeep == 0 {
		c.BackupKeep = 14
	}
	return c
}

// Service is the secret store component: the store, its backup schedule, its API and status.
type Service struct {
	cfg   Config
	log   *slog.Logger
	store *Store

	ready     supervise.Readiness
	closeOnce sync.Once
	closeErr  error
	backupMu  sync.Mutex // one backup, verify or restore at a time

	mu           sync.Mutex
	copyTarget   CopyTarget
	lastBackup   time.Time
	lastError    string
	lastErrorAt  time.Time
	newestVerify time.Time // creation time of the newest verified backup
	nextBackup   time.Time
}

// New validates cfg and opens the store. A locked, corrupt or foreign store fails here.
func New(cfg Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "secrets")
	st, err := Open(StoreOptions{
		Dir: cfg.Dir, Passphrase: cfg.Passphrase, ScryptWorkFactor: cfg.ScryptWorkFactor,
		KeepVersions: cfg.KeepVersions, LockTimeout: cfg.LockTimeout,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("cannot start secret store: %w", err)
	}
	return &Service{cfg: cfg, log: logger, store: st}, nil
}

// Store is the open store, for kubesync and other in-process users.
func (s *Service) Store() *Store { return s.store }

// SetCopyTarget makes every new backup also be copied to t (for example an S3-compatible
// bucket). Call it before Run; nil disables copying.
func (s *Service) SetCopyTarget(t CopyTarget) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.copyTarget = t
}

// WaitReady returns once Run has loaded the backup state, or ctx's error; the store itself is
// usable from New on. After a Run has returned, it waits for the next one.
func (s *Service) WaitReady(ctx context.Context) error { return s.ready.Wait(ctx) }

// Run runs the backup schedule until ctx ends and returns nil then. The first scheduled backup
// is taken at once if the newest verified backup is older than BackupInterval.
func (s *Service) Run(ctx context.Context) error {
	defer s.ready.Clear()
	s.loadBackupState()
	s.ready.Set()
	if s.cfg.BackupInterval < 0 {
		<-ctx.Done()
		return nil
	}
	s.mu.Lock()
	wait := time.Until(s.newestVerify.Add(s.cfg.BackupInterval))
	s.mu.Unlock()
	if wait < 0 {
		wait = 0
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		s.nextBackup = time.Now().Add(wait)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if _, err := s.BackupNow(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduled backup failed", "err", err)
		}
		wait = s.cfg.BackupInterval
		timer.Reset(wait)
	}
}

// loadBackupState finds the newest verified backup from the manifests on disk.
func (s *Service) loadBackupState() {
	// Half-written backups from a crash; the store's lock makes us the only writer. atomicfile
	// names its temporary files "."+name+digits; ".tmp-" is what versions before it used.
	for _, pattern := range []string{"." + snapshotPrefix + "*", ".tmp-" + snapshotPrefix + "*"} {
		leftovers, _ := filepath.Glob(filepath.Join(s.cfg.BackupDir, pattern))
		for _, p := range leftovers {
			_ = os.Remove(p)
		}
	}
	list, err := ListBackups(s.cfg.BackupDir)
	if err != nil {
		s.log.Warn("cannot read backups", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range list {
		if !m.Verified.IsZero() && m.Created.After(s.newestVerify) {
			s.newestVerify = m.Created
		}
		if m.Created.After(s.lastBackup) {
			s.lastBackup = m.Created
		}
	}
}

// BackupNow takes a backup, verifies it, prunes old ones and copies it to the copy target. A
// backup that fails verification is removed and reported.
func (s *Service) BackupNow(ctx context.Context) (Manifest, error) {
	s.backupMu.Lock()
	defer s.backupMu.Unlock()
	start := time.Now()
	m, err := s.backup(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastError, s.lastErrorAt = err.Error(), time.Now().UTC()
		return m, err
	}
	s.lastError = ""
	s.lastBackup = m.Created
	s.newestVerify = m.Created
	s.log.Info("backup written and verified", "file", m.File, "size", m.Size, "secrets", m.Secrets, "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

func (s *Service) backup(ctx context.Context) (Manifest, error) {
	m, err := s.store.Backup(ctx, s.cfg.BackupDir)
	if err != nil {
		return m, err
	}
	file := filepath.Join(s.cfg.BackupDir, m.File)
	if _, err := s.store.Verify(ctx, file); err != nil {
		_ = os.Remove(file)
		_ = os.Remove(file + manifestSuffix)
		return m, fmt.Errorf("new backup failed verification and was removed: %w", err)
	}
	if m2, err := readManifest(file); err == nil {
		m = m2
	}
	if removed, err := pruneBackups(s.cfg.BackupDir, s.cfg.BackupKeep); err != nil {
		s.log.Warn("cannot prune old backups", "err", err)
	} else if len(removed) > 0 {
		s.log.Info("pruned old backups", "removed", removed)
	}
	s.mu.Lock()
	target := s.copyTarget
	s.mu.Unlock()
	if target != nil {
		f, err := os.Open(file)
		if err != nil {
			return m, fmt.Errorf("cannot copy backup off-host: %w", err)
		}
		defer f.Close()
		if err := target.Put(ctx, m.File, f, m.Size); err != nil {
			return m, fmt.Errorf("backup %s written and verified locally, but cannot copy it off-host: %w", m.File, err)
		}
	}
	return m, nil
}

// resolveBackup turns a name from the API into a file: a bare name is looked up in BackupDir,
// anything else must be an absolute path.
func (s *Service) resolveBackup(name string) (string, error) {
	switch {
	case name == "":
		return "", inputErrorf("no backup file given: name one from `gluebox backup list` or give an absolute path")
	case filepath.Base(name) == name:
		return filepath.Join(s.cfg.BackupDir, name), nil
	case filepath.IsAbs(name):
		return filepath.Clean(name), nil
	default:
		return "", inputErrorf("backup file %q is a relative path: give a name from `gluebox backup list` or an absolute path", name)
	}
}

// Verify checks a backup (a name in BackupDir or an absolute path) and records the result.
func (s *Service) Verify(ctx context.Context, name string) (VerifyReport, error) {
	file, err := s.resolveBackup(name)
	if err != nil {
		return VerifyReport{}, err
	}
	if _, err := os.Stat(file); err != nil {
		return VerifyReport{}, fmt.Errorf("backup %s: %w", file, ErrNotFound)
	}
	s.backupMu.Lock()
	defer s.backupMu.Unlock()
	rep, err := s.store.Verify(ctx, file)
	if err != nil {
		return rep, err
	}
	s.mu.Lock()
	if rep.Manifest && rep.Created.After(s.newestVerify) {
		s.newestVerify = rep.Created
	}
	s.mu.Unlock()
	return rep, nil
}

// Restore replaces the live store with a backup after verifying it.
func (s *Service) Restore(ctx context.Context, name, by string) (RestoreReport, error) {
	file, err := s.resolveBackup(name)
	if err != nil {
		return RestoreReport{}, err
	}
	if _, err := os.Stat(file); err != nil {
		return RestoreReport{}, fmt.Errorf("backup %s: %w", file, ErrNotFound)
	}
	s.backupMu.Lock()
	defer s.backupMu.Unlock()
	return s.store.Restore(ctx, file, by)
}

// Backups lists the backups in BackupDir, newest first.
func (s *Service) Backups() ([]Manifest, error) { return ListBackups(s.cfg.BackupDir) }

// Status is the secret store's part of `gluebox status`.
type Status struct {
	StorePath           string    `json:"store_path"`
	IdentityPath        string    `json:"identity_path"`
	Recipient           string    `json:"recipient"`
	PassphraseProtected bool      `json:"passphrase_protected"`
	Secrets             int       `json:"secrets"`
	BackupDir           string    `json:"backup_dir"`
	LastBackup          time.Time `json:"last_backup,omitzero"`
	NewestVerified      time.Time `json:"newest_verified_backup,omitzero"`
	// NewestVerifiedAge is the age of the newest verified backup, "" if there is none.
	NewestVerifiedAge string    `json:"newest_verified_backup_age,omitempty"`
	NextBackup        time.Time `json:"next_backup,omitzero"`
	LastBackupError   string    `json:"last_backup_error,omitempty"`
	LastBackupErrorAt time.Time `json:"last_backup_error_at,omitzero"`
}

// Status reports the store and backup state.
func (s *Service) Status() Status {
	n, _ := s.store.Count()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		StorePath: s.store.DBPath(), IdentityPath: s.store.IdentityPath(), Recipient: s.store.Recipient(),
		PassphraseProtected: s.cfg.Passphrase != "", Secrets: n, BackupDir: s.cfg.BackupDir,
		LastBackup: s.lastBackup, NewestVerified: s.newestVerify, NextBackup: s.nextBackup,
		LastBackupError: s.lastError, LastBackupErrorAt: s.lastErrorAt,
	}
	if !s.newestVerify.IsZero() {
		st.NewestVerifiedAge = time.Since(s.newestVerify).Round(time.Second).String()
	}
	return st
}

// Close closes the store; it may be called more than once.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.store.Close()
	})
	return s.closeErr
}
