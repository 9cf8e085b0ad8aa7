package secrets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxImportSize bounds an import file; 64 values of 1 MiB is already more than an app needs.
const MaxImportSize = 64 << 20

// ParseImport reads key/value pairs from a .env file (format "env") or a JSON object (format
// "json"); format "" guesses from the first non-space byte. Errors name the line (env) or key
// (JSON) and what to change. name is used in messages only.
func ParseImport(name, format string, data []byte) (map[string][]byte, error) {
	if len(data) > MaxImportSize {
		return nil, inputErrorf("%s is %d bytes, the import limit is %d", name, len(data), MaxImportSize)
	}
	if format == "" {
		format = "env"
		if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
			format = "json"
		}
	}
	switch format {
	case "env", "dotenv":
		return parseEnv(name, data)
	case "json":
		return parseJSON(name, data)
	default:
		return nil, inputErrorf("unknown import format %q for %s: use \"env\" or \"json\"", format, name)
	}
}

// parseEnv reads KEY=VALUE lines. It accepts "export " prefixes, blank lines and # comments;
// values may be bare (trailing " #comment" removed), 'single-quoted' (literal) or
// "double-quoted" (with \n \t \r \" \\ escapes, and may span lines).
func parseEnv(name string, data []byte) (map[string][]byte, error) {
	if !utf8.Valid(data) {
		return nil, inputErrorf("%s is not UTF-8 text: save it as UTF-8 or import it as JSON", name)
	}
	out := map[string][]byte{}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			return nil, inputErrorf("%s line %d: expected KEY=VALUE, found %.40q: add '=' after the key or remove the line", name, lineNo, line)
		}
		key := strings.TrimSpace(line[:eq])
		if err := ValidateKey(name, key); err != nil {
			return nil, inputErrorf("%s line %d: %v", name, lineNo, err)
		}
		if _, dup := out[key]; dup {
			return nil, inputErrorf("%s line %d: key %s is set twice: keep one of them", name, lineNo, key)
		}
		rest := strings.TrimLeft(line[eq+1:], " \t")
		var val string
		switch {
		case strings.HasPrefix(rest, "'"):
			end := strings.IndexByte(rest[1:], '\'')
			if end < 0 {
				return nil, inputErrorf("%s line %d: value of %s has no closing single quote", name, lineNo, key)
			}
			val = rest[1 : 1+end]
			if err := trailingOK(rest[2+end:]); err != nil {
				return nil, inputErrorf("%s line %d: after the value of %s: %v", name, lineNo, key, err)
			}
		case strings.HasPrefix(rest, `"`):
			var b strings.Builder
			s := rest[1:]
			startLine := lineNo
			for {
				j := 0
				closed := false
				for j < len(s) {
					c := s[j]
					if c == '\\' && j+1 < len(s) {
						switch s[j+1] {
						case 'n':
							b.WriteByte('\n')
						case 't':
							b.WriteByte('\t')
						case 'r':
							b.WriteByte('\r')
						case '"', '\\', '$':
							b.WriteByte(s[j+1])
						default:
							b.WriteByte('\\')
							b.WriteByte(s[j+1])
						}
						j += 2
						continue
					}
					if c == '"' {
						closed = true
						break
					}
					b.WriteByte(c)
					j++
				}
				if closed {
					if err := trailingOK(s[j+1:]); err != nil {
						return nil, inputErrorf("%s line %d: after the value of %s: %v", name, lineNo, key, err)
					}
					break
				}
				i++
				if i >= len(lines) {
					return nil, inputErrorf("%s line %d: value of %s has no closing double quote", name, startLine, key)
				}
				lineNo = i + 1
				b.WriteByte('\n')
				s = lines[i]
			}
			val = b.String()
		default:
			val = rest
			if k := strings.Index(val, " #"); k >= 0 {
				val = val[:k]
			}
			val = strings.TrimSpace(val)
		}
		if err := validateValue(name, key, []byte(val)); err != nil {
			return nil, inputErrorf("%s line %d: %v", name, lineNo, err)
		}
		out[key] = []byte(val)
	}
	if len(out) == 0 {
		return nil, inputErrorf("%s has no KEY=VALUE lines", name)
	}
	return out, nil
}

func trailingOK(s string) error {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasPrefix(s, "#") {
		return nil
	}
	return fmt.Errorf("unexpected %.20q after the closing quote: remove it or start a # comment", s)
}

// parseJSON reads one JSON object of string (or number/bool, kept as written) values.
func parseJSON(name string, data []byte) (map[string][]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, inputErrorf("%s is not a JSON object of key/value pairs: %v", name, err)
	}
	if dec.More() {
		return nil, inputErrorf("%s has data after its JSON object: keep one object", name)
	}
	if len(obj) == 0 {
		return nil, inputErrorf("%s has no keys", name)
	}
	out := make(map[string][]byte, len(obj))
	for k, v := range obj {
		if err := ValidateKey(name, k); err != nil {
			return nil, err
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case json.Number:
			s = v.String()
		case bool:
			s = strconv.FormatBool(v)
		default:
			return nil, inputErrorf("%s key %s: value must be a string, number or boolean, not %T: flatten nested objects into separate keys", name, k, v)
		}
		if err := validateValue(name, k, []byte(s)); err != nil {
			return nil, err
		}
		out[k] = []byte(s)
	}
	return out, nil
}
