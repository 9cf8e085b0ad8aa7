package secrets

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseImport(t *testing.T) {
	tests := []struct {
		name, format, in string
		want             map[string]string
		wantErr          string
	}{
		{name: "env basics", in: "# comment\n\nA=1\nexport B = two words \nC=x # trailing comment\n",
			want: map[string]string{"A": "1", "B": "two words", "C": "x"}},
		{name: "env quotes", in: "S='single $x \\n'\nD=\"double\\nline \\\"q\\\"\"\nE=\"\"\n",
			want: map[string]string{"S": `single $x \n`, "D": "double\nline \"q\"", "E": ""}},
		{name: "env multi-line", in: "PEM=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT=1\r\n",
			want: map[string]string{"PEM": "-----BEGIN-----\nabc\n-----END-----", "NEXT": "1"}},
		{name: "env value with =", in: "URL=postgres://u:p@h/db?a=b\n", want: map[string]string{"URL": "postgres://u:p@h/db?a=b"}},
		{name: "env missing =", in: "A=1\nOOPS\n", wantErr: "line 2: expected KEY=VALUE"},
		{name: "env bad key", in: "MY KEY=1\n", wantErr: "line 1: key \"MY KEY\""},
		{name: "env duplicate", in: "A=1\nA=2\n", wantErr: "line 2: key A is set twice"},
		{name: "env open quote", in: "A=\"abc\nB=2\n", wantErr: "line 1: value of A has no closing double quote"},
		{name: "env junk after quote", in: "A='x' y\n", wantErr: "line 1: after the value of A"},
		{name: "env empty", in: "# nothing\n", wantErr: "has no KEY=VALUE lines"},
		{name: "env not utf8", in: "A=\xff\n", wantErr: "not UTF-8"},
		{name: "json", in: `{"A":"1","N":42,"B":true}`, want: map[string]string{"A": "1", "N": "42", "B": "true"}},
		{name: "json nested", in: `{"A":{"x":1}}`, wantErr: "key A: value must be a string"},
		{name: "json array", format: "json", in: `[1,2]`, wantErr: "not a JSON object"},
		{name: "json trailing", in: `{"A":"1"} {}`, wantErr: "data after its JSON object"},
		{name: "json bad key", in: `{"a b":"1"}`, wantErr: `key "a b"`},
		{name: "unknown format", format: "yaml", in: "a: b", wantErr: `unknown import format "yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseImport("app.env", tt.format, []byte(tt.in))
			if tt.wantErr != "" {
				var in *InputError
				if !errors.As(err, &in) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want an InputError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gotS := map[string]string{}
			for k, v := range got {
				gotS[k] = string(v)
			}
			if diff := cmp.Diff(tt.want, gotS); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseImport checks that the parser never panics and only returns valid keys and values.
func FuzzParseImport(f *testing.F) {
	for _, s := range []string{
		"A=1\nB='2'\nC=\"3\\n\"\n", "export A=1 # c\n", "A=\"x\ny\"\n", `{"A":"1","B":2}`,
		"=\n", "A\n", "A='\n", `{"A":[1]}`, "\xff", "",
	} {
		f.Add("", s)
		f.Add("json", s)
	}
	f.Fuzz(func(t *testing.T, format, data string) {
		got, err := ParseImport("fuzz", format, []byte(data))
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatal("no error and no keys")
		}
		for k, v := range got {
			if err := ValidateKey("fuzz", k); err != nil {
				t.Fatalf("accepted invalid key %q: %v", k, err)
			}
			if len(v) > MaxValueSize {
				t.Fatalf("accepted %d-byte value", len(v))
			}
		}
	})
}
