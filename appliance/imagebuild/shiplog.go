package imagebuild

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gluebox/gluebox/appliance/logs"
)

// LogSink stores log lines in the logs store; appliance/logs.Client is one.
type LogSink interface {
	Ingest(ctx context.Context, lines []logs.Line, streamFields ...string) error
}

var _ LogSink = (*logs.Client)(nil)

// shipLogBatch is how many lines go to the logs store in one request.
const shipLogBatch = 1000

// shipLog stores a finished build's log lines in sink, one stream per app, with the build's
// id, branch, commit and status on every line.
func shipLog(ctx context.Context, sink LogSink, path string, r Record) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot open the log of build %s: %w", r.ID, err)
	}
	defer f.Close()
	fields := map[string]string{"source": "build", "app": r.App, "build": r.ID, "branch": r.Branch, "commit": r.Commit, "status": string(r.Status)}
	var batch []logs.Line
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	t := r.Started
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		t = t.Add(time.Microsecond) // keep the log's order
		batch = append(batch, logs.Line{Time: t, Msg: sc.Text(), Fields: fields})
		if len(batch) == shipLogBatch {
			if err := sink.Ingest(ctx, batch, "source", "app"); err != nil {
				return fmt.Errorf("cannot store the log of build %s: %w", r.ID, err)
			}
			batch = batch[:0]
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("cannot read the log of build %s: %w", r.ID, err)
	}
	if err := sink.Ingest(ctx, batch, "source", "app"); err != nil {
		return fmt.Errorf("cannot store the log of build %s: %w", r.ID, err)
	}
	return nil
}
