// Package e2e holds gluebox's end-to-end tests: they boot real nodes from the built binary
// (bin/gluebox, or $GLUEBOX_BIN), each in its own network namespace, and drive them with the
// embedded kubectl and curl. They need root; `go test -short` skips them. Helpers in
// helpers_test.go make a new scenario a few lines long.
package e2e
