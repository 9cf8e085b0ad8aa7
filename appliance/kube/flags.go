package kube

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
)

// Args turns upstream flag defaults plus user overrides into a sorted `--key=value` list.
// An override with an empty value removes the default; keys may be given with or without
// the leading dashes.
func Args(defaults, overrides map[string]string) []string {
	merged := maps.Clone(defaults)
	if merged == nil {
		merged = map[string]string{}
	}
	for k, v := range overrides {
		k = strings.TrimLeft(k, "-")
		if v == "" {
			delete(merged, k)
			continue
		}
		merged[k] = v
	}
	out := make([]string, 0, len(merged))
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		out = append(out, "--"+k+"="+merged[k])
	}
	return out
}

// ParseOverrides reads user overrides given as "key=value" strings (the form of the
// --kube-apiserver-arg style flags and config keys).
func ParseOverrides(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimLeft(k, "-") == "" {
			return nil, fmt.Errorf("component argument %q is not of the form key=value", kv)
		}
		out[strings.TrimLeft(k, "-")] = v
	}
	return out, nil
}

// parseInto parses args into a fresh flag set holding every named set of an upstream
// component, so gluebox validates its arguments exactly as the upstream command would.
func parseInto(component string, nfs cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	for _, name := range nfs.Order {
		fs.AddFlagSet(nfs.FlagSets[name])
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: invalid argument: %w", component, err)
	}
	return nil
}
