package supervise

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/natefinch/lumberjack.v2"
)

// LogRotation caps the size of a log file: once a write would take it past MaxMiB, the file is
// renamed with a time stamp (compressed unless NoCompress) and a new one started; only the
// Backups newest rotated files are kept. The zero value means the defaults below.
type LogRotation struct {
	// MaxMiB is the size in MiB at which the file is rotated (default 50).
	MaxMiB int
	// Backups is how many rotated files are kept (default 3).
	Backups int
	// NoCompress keeps rotated files as they are; by default they are gzipped.
	NoCompress bool
}

// OpenLog returns a writer appending to path with the size caps of rot; an empty path discards
// what is written. The file and its directory are created now (modes 0640 and 0750, which the
// rotated files keep), so that a log that cannot be written fails here and not at the first
// write. Close it when done; a later write opens it again.
func OpenLog(path string, rot LogRotation) (io.WriteCloser, error) {
	if path == "" {
		return nopCloser{io.Discard}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("cannot create log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cannot open log %s: %w", path, err)
	}
	f.Close()
	if rot.MaxMiB <= 0 {
		rot.MaxMiB = 50
	}
	if rot.Backups <= 0 {
		rot.Backups = 3
	}
	return &lumberjack.Logger{Filename: path, MaxSize: rot.MaxMiB, MaxBackups: rot.Backups, Compress: !rot.NoCompress}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
