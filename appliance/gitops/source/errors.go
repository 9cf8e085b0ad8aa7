package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/skeema/knownhosts"
)

// Kind classifies a failure for status display. Test with errors.Is, e.g.
// errors.Is(err, source.ErrAuth).
type Kind struct{ name, hint string }

func (k *Kind) Error() string { return k.name }

// Hint says how to fix this kind of failure, for status display.
func (k *Kind) Hint() string { return k.hint }

// KindOf returns the classification of err, or nil when err is nil or was
// not produced by a Source (e.g. context.Canceled).
func KindOf(err error) *Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return nil
}

// Kinds of failure. Each *Error matches exactly one with errors.Is.
var (
	ErrUnreachable     = &Kind{"remote unreachable", "check the URL, DNS, firewall and that the Git server is up"}
	ErrAuth            = &Kind{"authentication failed", "check the credentials for this repository (token/password or SSH deploy key) and that they grant read access"}
	ErrHostKey         = &Kind{"SSH host key not trusted", "add the server's current host key to auth.known_hosts (compare with `ssh-keyscan` output obtained over a trusted path)"}
	ErrRepoNotFound    = &Kind{"repository not found", "check the URL path; private repositories also report this when credentials are missing"}
	ErrEmptyRepository = &Kind{"repository is empty", "push a first commit to the repository"}
	ErrBranchNotFound  = &Kind{"branch not found", "push the branch or change the configured branch"}
	ErrCommitNotFound  = &Kind{"commit not found", "the commit is no longer advertised by any ref (force-push?); check the current head"}
	ErrTooLarge        = &Kind{"work tree too large", "shrink the repository (keep build inputs elsewhere) or raise max_tree_bytes"}
	ErrUnsafeTree      = &Kind{"unsafe work tree", "remove the offending path or symlink from the repository"}
	ErrGit             = &Kind{"git error", "see the underlying error"}
)

// Error is a classified failure. Its message names the repository URL (never
// a password) and how to fix the problem.
type Error struct {
	Kind     *Kind
	URL      string   // redacted repository URL
	Branch   string   // set for ErrBranchNotFound
	Branches []string // branches the remote has, for ErrBranchNotFound
	Err      error    // underlying error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "source %s: %s", e.URL, e.Kind.name)
	if e.Branch != "" {
		fmt.Fprintf(&b, " (%q)", e.Branch)
	}
	if e.Err != nil {
		// One line, for status tables: remote messages often end in newlines.
		fmt.Fprintf(&b, ": %s", strings.Join(strings.Fields(e.Err.Error()), " "))
	}
	fmt.Fprintf(&b, "; fix: %s", e.Kind.hint)
	if len(e.Branches) > 0 {
		fmt.Fprintf(&b, " (remote has: %s)", strings.Join(e.Branches, ", "))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAuth) and friends work.
func (e *Error) Is(target error) bool {
	k, ok := target.(*Kind)
	return ok && k == e.Kind
}

// classify wraps a go-git error with its Kind. Cancellation is passed through
// unchanged: it is not a failure of the remote.
func (s *Source) classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	wrapped := fmt.Errorf("%s: %w", op, err)
	msg := err.Error()
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	kind := ErrGit
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(msg, "unable to authenticate"), strings.Contains(msg, "permission denied"):
		kind = ErrAuth
	case knownhosts.IsHostKeyChanged(err), knownhosts.IsHostUnknown(err),
		strings.Contains(msg, "knownhosts:"), strings.Contains(msg, "host key mismatch"):
		kind = ErrHostKey
	case errors.Is(err, transport.ErrRepositoryNotFound):
		kind = ErrRepoNotFound
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		kind = ErrEmptyRepository
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &opErr), errors.As(err, &dnsErr), errors.As(err, &netErr),
		strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"), strings.Contains(msg, "i/o timeout"):
		kind = ErrUnreachable
	}
	return &Error{Kind: kind, URL: s.url, Err: wrapped}
}
