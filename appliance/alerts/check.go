package alerts

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// CheckTimeout bounds one `vmalert -dryRun` run.
const CheckTimeout = 30 * time.Second

var (
	quoted = `("(?:[^"\\]|\\.)*")`
	// vmalert's config.parse reports one line per bad group or file:
	//   invalid group "G" in file "F": invalid expression for rule "R": bad MetricsQL expr: ...
	//   invalid group "G" in file "F": interval shouldn't be lower than 0
	//   group name "G" duplicate in file "F"
	//   failed to parse file "F": yaml: ...
	invalidRuleRE  = regexp.MustCompile(`^invalid group ` + quoted + ` in file ` + quoted + `: invalid (?:rule|expression for rule|annotations for rule|labels for rule) ` + quoted + `: (.*)$`)
	invalidGroupRE = regexp.MustCompile(`^invalid group ` + quoted + ` in file ` + quoted + `: (.*)$`)
	duplicateRE    = regexp.MustCompile(`^group name ` + quoted + ` duplicate in file ` + quoted + `$`)
	badFileRE      = regexp.MustCompile(`^failed to parse file ` + quoted + `: (.*)$`)
	errorsCountRE  = regexp.MustCompile(`\s*errors\(\d+\):$`)
)

// Check runs `vmalert -dryRun` (binary is the bundled vmalert) on the rule files, which parses
// them and every MetricsQL and LogsQL expression in them exactly as the evaluator will. It
// returns one *RuleError per rule, group or file vmalert rejected (nil when it accepted them
// all), or an error when vmalert could not be run or said something Check does not
// understand.
func Check(ctx context.Context, binary string, files []string) ([]*RuleError, error) {
	if len(files) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	args := []string{"-dryRun", "-loggerFormat=json", "-loggerLevel=ERROR", "-loggerOutput=stderr"}
	for _, f := range files {
		args = append(args, "-rule="+f)
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	runErr := cmd.Run()
	if runErr == nil {
		return nil, nil
	}
	var exit *exec.ExitError
	if !errors.As(runErr, &exit) || ctx.Err() != nil {
		return nil, fmt.Errorf("alerts: cannot run %s -dryRun: %w", binary, errors.Join(runErr, ctx.Err()))
	}
	msgs := fatalMessages(stderr.Bytes())
	var found []*RuleError
	for _, msg := range msgs {
		var last *RuleError
		for _, line := range strings.Split(msg, "\n") {
			line = strings.TrimSpace(line)
			if e := parseCheckLine(line); e != nil {
				found = append(found, e)
				last = e
			} else if last != nil && line != "" {
				// Nested error groups continue on the next lines ("errors(1): \n<reason>").
				prev := errorsCountRE.ReplaceAllString(strings.TrimSpace(last.Err.Error()), "")
				if prev != "" {
					prev += "; "
				}
				last.Err = errors.New(prev + line)
			}
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("alerts: vmalert -dryRun failed (%v): %s", runErr, lastLines(stderr.String(), 5))
	}
	return found, nil
}

// fatalMessages returns the messages of vmalert's error and fatal log lines (JSON format).
func fatalMessages(out []byte) []string {
	var msgs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && (l.Level == "fatal" || l.Level == "error" || l.Level == "panic") {
			msgs = append(msgs, l.Msg)
		}
	}
	return msgs
}

func parseCheckLine(line string) *RuleError {
	uq := func(s string) string {
		u, err := strconv.Unquote(s)
		if err != nil {
			return s
		}
		return u
	}
	if m := invalidRuleRE.FindStringSubmatch(line); m != nil {
		return &RuleError{Group: uq(m[1]), File: uq(m[2]), Rule: uq(m[3]), Index: -1, Err: errors.New(m[4])}
	}
	if m := invalidGroupRE.FindStringSubmatch(line); m != nil {
		return &RuleError{Group: uq(m[1]), File: uq(m[2]), Index: -1, Err: errors.New(m[3])}
	}
	if m := duplicateRE.FindStringSubmatch(line); m != nil {
		return &RuleError{Group: uq(m[1]), File: uq(m[2]), Index: -1, Err: errors.New("group name is used twice in the file")}
	}
	if m := badFileRE.FindStringSubmatch(line); m != nil {
		return &RuleError{File: uq(m[1]), Index: -1, Err: errors.New(m[2])}
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
