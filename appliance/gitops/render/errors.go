package render

import (
	"fmt"
	"strings"
)

// Error is bad input found while rendering: a file that is not valid YAML, a values key the
// chart does not accept, or a rendered object an app may not create. It says where, as
// precisely as it is known, so the CLI, the console and the log can show it as is.
type Error struct {
	// File is the path of the file inside the deployment-configurations repository, or of the
	// chart template, or empty.
	File string
	// Line is the 1-based line in File, or 0 when unknown.
	Line int
	// Key is the values key path ("deployment.replicas", "ingress.entries[0].name") or the
	// rendered object ("Deployment/web"), or empty.
	Key string
	// Reason says what is wrong and, where possible, what would be right.
	Reason string

	cause error // the caller's error behind Reason, for Unwrap
}

// Unwrap returns the error behind e when it came from the caller, as an error of
// Options.ResolveTag does, so that errors.Is and errors.As see it; nil otherwise.
func (e *Error) Unwrap() error { return e.cause }

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}
