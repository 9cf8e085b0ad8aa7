// Package layering holds the test that keeps gluebox's import graph the shape
// docs/ARCHITECTURE.md draws: wiring (appliance/server) and commands (appliance/cli) on top,
// components in the middle, foundations at the bottom, test helpers out of production code.
// It has no code of its own; nothing imports it.
package layering
