package registry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
)

// pushOrder numbers manifest pushes, so that GC's "newest KeepLast" follows the order in which
// the registry accepted them. File times cannot: the kernel stamps them from a coarse clock,
// and two pushes within one tick get the same mtime. The counter is <root>/seq; the number of
// a manifest's latest push is in <root>/<repo>/<alg>/<hex>. Manifests pushed before gluebox
// numbered pushes have none (0) and sort by their file time, older than every numbered one.
type pushOrder struct {
	root string

	mu     sync.Mutex
	last   uint64
	loaded bool
}

func (p *pushOrder) path(repo string, d digest.Digest) string {
	return filepath.Join(p.root, filepath.FromSlash(repo), d.Algorithm().String(), d.Encoded())
}

// record gives the push of repo@d the next number.
func (p *pushOrder) record(repo string, d digest.Digest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		n, err := readSeq(filepath.Join(p.root, "seq"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cannot read push counter: %w", err)
		}
		p.last, p.loaded = n, true
	}
	n := strconv.FormatUint(p.last+1, 10)
	if err := writeFileAtomic(filepath.Join(p.root, "seq"), []byte(n), 0o600); err != nil {
		return fmt.Errorf("cannot write push counter: %w", err)
	}
	p.last++
	if err := writeFileAtomic(p.path(repo, d), []byte(n), 0o600); err != nil {
		return fmt.Errorf("cannot record push of %s@%s: %w", repo, d, err)
	}
	return nil
}

// get returns the number of repo@d's latest push, 0 when it has none.
func (p *pushOrder) get(repo string, d digest.Digest) uint64 {
	n, _ := readSeq(p.path(repo, d))
	return n
}

// remove forgets repo@d, once it is deleted.
func (p *pushOrder) remove(repo string, d digest.Digest) error {
	if err := os.Remove(p.path(repo, d)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot forget push of %s@%s: %w", repo, d, err)
	}
	return nil
}

func readSeq(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
