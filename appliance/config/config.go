// Package config is the server's configuration: one nested struct whose every field is a
// `gluebox server` flag and, under the same name, a key of /etc/gluebox/config.yaml. Flags win
// over the file, the file over defaults. Unknown keys, bad values and unusable combinations are
// errors that name the file, line and key. Only the CLI and the server import it.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// DefaultFile is the configuration file read when --config is not given (missing is fine).
const DefaultFile = "/etc/gluebox/config.yaml"

// Server is the configuration of `gluebox server`. Each field's doc gives its default.
type Server struct {
	// DataDir holds all state (default /var/lib/gluebox; GLUEBOX_DATA_DIR also sets it).
	DataDir string
	// Domain is the DNS suffix of app hostnames (default "gluebox.local").
	Domain string
	// HTTPAddr and HTTPSAddr are the front door's listeners (defaults :80 and :443).
	HTTPAddr  string
	HTTPSAddr string
	// RegistryAddr is the built-in registry's listener (default 127.0.0.1:5000).
	RegistryAddr string
	// ConsoleAddr is the web console's listener (default 127.0.0.1:8443).
	ConsoleAddr string
	// APIPort is the Kubernetes API's secure port (default 6443).
	APIPort int
	// DatastoreEndpoint is kine's backend: empty means SQLite in the data dir; postgres://,
	// mysql:// go through kine; http(s):// is a real etcd used directly.
	DatastoreEndpoint string
	// PollInterval is how often Git sources are checked (default 15s).
	PollInterval time.Duration
	// ResyncInterval is how often every environment is re-applied without a new commit,
	// putting back objects changed by hand (default 1m).
	ResyncInterval time.Duration
	// HealthTimeout bounds the wait for a deployed environment to become healthy before it is
	// reported Degraded (default 5m).
	HealthTimeout time.Duration
	// ConfigRepo is the deployment-configurations repository URL (default: none; then
	// `gluebox repo set-config` sets it at run time). ConfigRepoBranch is its branch (default:
	// the remote's default) and ConfigRepoCredentials a secret-store path (default: none).
	ConfigRepo            string
	ConfigRepoBranch      string
	ConfigRepoCredentials string
	// NodeName names this node (default: the host name, lowercased).
	NodeName string
	// NodeIP is the node's address (default: the address of the default-route interface).
	NodeIP string
	// ClusterCIDR and ServiceCIDR are the pod and service ranges (defaults 10.42.0.0/16 and
	// 10.43.0.0/16).
	ClusterCIDR string
	ServiceCIDR string
	// Upstream component flags as key=value, overriding gluebox's defaults (empty value
	// removes a default).
	APIServerArgs         []string
	ControllerManagerArgs []string
	SchedulerArgs         []string
	KubeletArgs           []string
	KubeProxyArgs         []string
	// Observability runs the metrics and logs stores and the log collector (default true).
	Observability bool
	// MetricsRetention and LogsRetention are how long samples and log lines are kept
	// (default 720h = 30 days each).
	MetricsRetention time.Duration
	LogsRetention    time.Duration
	// MetricsDiskBudget and LogsDiskBudget bound the bytes each store may use; 0 means no
	// budget beyond keeping 512 MiB of the disk free (default 0).
	MetricsDiskBudget int64
	LogsDiskBudget    int64
	// Hard memory limits (cgroup) of the observability programs, in bytes; above its limit a
	// program is OOM-killed and restarted. 0 means no limit. VictoriaMetrics and VictoriaLogs
	// (default 512 MiB each) size their caches at half their limit; vmalert and Alertmanager
	// get AlertingMemoryLimit each (default 256 MiB), vlagent LogCollectorMemoryLimit
	// (default 256 MiB).
	MetricsMemoryLimit      int64
	LogsMemoryLimit         int64
	AlertingMemoryLimit     int64
	LogCollectorMemoryLimit int64
	// ObservabilityCPULimit is how many cores the observability programs may use together
	// (default: half the host's, at least 1; 0: no limit beyond each program's own: one core
	// for each store, half a core for each helper).
	ObservabilityCPULimit float64
	// Alert notifications. AlertWebhookURL receives Alertmanager's JSON (receiver "webhook");
	// AlertSlackURL a Slack-compatible incoming webhook (receiver "slack", channel
	// AlertSlackChannel); AlertEmailTo/From through AlertSMTPHost (host:port) with username and
	// password from the secret-store path AlertSMTPCredentials (receiver "email"). All default
	// to none; alerts are then only listed by `gluebox alerts list`.
	AlertWebhookURL      string
	AlertSlackURL        string
	AlertSlackChannel    string
	AlertEmailTo         string
	AlertEmailFrom       string
	AlertSMTPHost        string
	AlertSMTPCredentials string
	// HeartbeatURL is called every HeartbeatInterval (default 1m) while alerting works (default
	// none).
	HeartbeatURL      string
	HeartbeatInterval time.Duration
	// AlertEvaluationInterval is how often rules are evaluated (default 30s); AlertGroupWait and
	// AlertGroupInterval are Alertmanager's grouping delays (defaults 30s and 5m).
	AlertEvaluationInterval time.Duration
	AlertGroupWait          time.Duration
	AlertGroupInterval      time.Duration
	// BuildConcurrency is how many image builds run at once (default 1); BuildTimeout bounds
	// one build (default 30m).
	BuildConcurrency int
	BuildTimeout     time.Duration
	// PreviewBranches is a branch pattern like "preview/*" whose "*" is a pull-request number:
	// such branches get preview environments like pull requests do (default none).
	// PreviewTTL removes previews whose head has not moved for that long (default 168h).
	PreviewBranches string
	PreviewTTL      time.Duration
	// ShutdownTimeout bounds a clean stop of all components (default 60s).
	ShutdownTimeout time.Duration
}

// Default hard memory limits of the observability programs: the stores, and the helpers
// (vmalert, Alertmanager, vlagent). Measured idle use is 6–80 MiB; VictoriaMetrics peaked at
// 284 MiB under the ingest benchmark.
const (
	DefaultStoreMemoryLimit  = 512 << 20
	DefaultHelperMemoryLimit = 256 << 20
	// MinMemoryLimit is the smallest limit accepted: below it the programs cannot start.
	MinMemoryLimit = 64 << 20
)

// DefaultObservabilityCPULimit is the default --observability-cpu-limit on a host with cpus
// cores: half of them, at least 1, so the rest of the node always keeps the other half.
func DefaultObservabilityCPULimit(cpus int) float64 { return max(1, float64(cpus)/2) }

func sizeVar(fs *pflag.FlagSet, p *int64, name string, value int64, usage string) {
	*p = value
	fs.Var(sizeValue{p}, name, usage)
}

// BindFlags registers every field as a flag on fs, with its default.
func (s *Server) BindFlags(fs *pflag.FlagSet) {
	dataDir := os.Getenv("GLUEBOX_DATA_DIR")
	if dataDir == "" {
		dataDir = "/var/lib/gluebox"
	}
	fs.StringVar(&s.DataDir, "data-dir", dataDir, "directory holding all of gluebox's state")
	fs.StringVar(&s.Domain, "domain", "gluebox.local", "DNS suffix of app hostnames (<app>-<env>.<domain>)")
	fs.StringVar(&s.HTTPAddr, "http-addr", ":80", "front door HTTP listener")
	fs.StringVar(&s.HTTPSAddr, "https-addr", ":443", "front door HTTPS listener")
	fs.StringVar(&s.RegistryAddr, "registry-addr", "127.0.0.1:5000", "built-in OCI registry listener")
	fs.StringVar(&s.ConsoleAddr, "console-addr", "127.0.0.1:8443", "web console listener")
	fs.IntVar(&s.APIPort, "api-port", 6443, "Kubernetes API secure port")
	fs.StringVar(&s.DatastoreEndpoint, "datastore-endpoint", "", "datastore: empty for SQLite, or postgres://, mysql://, https:// (etcd)")
	fs.DurationVar(&s.PollInterval, "poll-interval", 15*time.Second, "how often Git sources are polled")
	fs.DurationVar(&s.ResyncInterval, "resync-interval", time.Minute, "how often environments are re-applied to undo changes made by hand")
	fs.DurationVar(&s.HealthTimeout, "health-timeout", 5*time.Minute, "how long a deployed environment may take to become healthy")
	fs.StringVar(&s.ConfigRepo, "config-repo", "", "deployment-configurations repository URL (default: set with `gluebox repo set-config`)")
	fs.StringVar(&s.ConfigRepoBranch, "config-repo-branch", "", "branch of the deployment-configurations repository (default: the remote's default)")
	fs.StringVar(&s.ConfigRepoCredentials, "config-repo-credentials", "", "secret-store path with the repository's credentials, e.g. secret/git/acme")
	fs.StringVar(&s.NodeName, "node-name", "", "node name (default: host name)")
	fs.StringVar(&s.NodeIP, "node-ip", "", "node IPv4 address (default: address of the default-route interface)")
	fs.StringVar(&s.ClusterCIDR, "cluster-cidr", "10.42.0.0/16", "pod address range")
	fs.StringVar(&s.ServiceCIDR, "service-cidr", "10.43.0.0/16", "service address range")
	fs.StringArrayVar(&s.APIServerArgs, "kube-apiserver-arg", nil, "extra kube-apiserver flag as key=value (repeatable)")
	fs.StringArrayVar(&s.ControllerManagerArgs, "kube-controller-manager-arg", nil, "extra kube-controller-manager flag as key=value (repeatable)")
	fs.StringArrayVar(&s.SchedulerArgs, "kube-scheduler-arg", nil, "extra kube-scheduler flag as key=value (repeatable)")
	fs.StringArrayVar(&s.KubeletArgs, "kubelet-arg", nil, "extra kubelet flag as key=value (repeatable)")
	fs.StringArrayVar(&s.KubeProxyArgs, "kube-proxy-arg", nil, "extra kube-proxy flag as key=value (repeatable)")
	fs.BoolVar(&s.Observability, "observability", true, "run the metrics and logs stores and the container log collector")
	fs.DurationVar(&s.MetricsRetention, "metrics-retention", 30*24*time.Hour, "how long metrics are kept (at least 24h)")
	fs.DurationVar(&s.LogsRetention, "logs-retention", 30*24*time.Hour, "how long log lines are kept (at least 24h)")
	fs.IntVar(&s.BuildConcurrency, "build-concurrency", 1, "how many image builds run at once")
	fs.DurationVar(&s.BuildTimeout, "build-timeout", 30*time.Minute, "longest an image build may run before it is cancelled")
	fs.StringVar(&s.PreviewBranches, "preview-branches", "", `branch pattern whose "*" is a pull-request number, e.g. "preview/*": such branches get previews too`)
	fs.DurationVar(&s.PreviewTTL, "preview-ttl", 7*24*time.Hour, "remove a preview whose head has not moved for this long")
	sizeVar(fs, &s.MetricsDiskBudget, "metrics-disk-budget", 0, "disk the metrics store may use, e.g. 10Gi; the retention shrinks to fit (0: no budget beyond 512 MiB kept free)")
	sizeVar(fs, &s.LogsDiskBudget, "logs-disk-budget", 0, "disk the logs store may use, e.g. 10Gi; the oldest days are dropped first (0: no budget)")
	sizeVar(fs, &s.MetricsMemoryLimit, "metrics-memory-limit", DefaultStoreMemoryLimit, "hard memory limit of VictoriaMetrics, which sizes its caches at half of it (0: no limit)")
	sizeVar(fs, &s.LogsMemoryLimit, "logs-memory-limit", DefaultStoreMemoryLimit, "hard memory limit of VictoriaLogs, which sizes its caches at half of it (0: no limit)")
	sizeVar(fs, &s.AlertingMemoryLimit, "alerting-memory-limit", DefaultHelperMemoryLimit, "hard memory limit of vmalert and of Alertmanager, each (0: no limit)")
	sizeVar(fs, &s.LogCollectorMemoryLimit, "log-collector-memory-limit", DefaultHelperMemoryLimit, "hard memory limit of the container log collector, vlagent (0: no limit)")
	fs.Float64Var(&s.ObservabilityCPULimit, "observability-cpu-limit", DefaultObservabilityCPULimit(runtime.NumCPU()), "cores the metrics, logs and alerting programs may use together (default: half the host's, at least 1; 0: no limit)")
	fs.StringVar(&s.AlertWebhookURL, "alert-webhook-url", "", "URL that receives alert notifications as JSON (Alertmanager webhook format)")
	fs.StringVar(&s.AlertSlackURL, "alert-slack-url", "", "Slack-compatible incoming webhook URL for alert notifications")
	fs.StringVar(&s.AlertSlackChannel, "alert-slack-channel", "", "channel for --alert-slack-url (default: the webhook's)")
	fs.StringVar(&s.AlertEmailTo, "alert-email-to", "", "addresses (comma separated) that receive alert mails")
	fs.StringVar(&s.AlertEmailFrom, "alert-email-from", "", "sender address of alert mails")
	fs.StringVar(&s.AlertSMTPHost, "alert-smtp-host", "", "SMTP server host:port for alert mails")
	fs.StringVar(&s.AlertSMTPCredentials, "alert-smtp-credentials", "", "secret-store path with username and password for --alert-smtp-host")
	fs.StringVar(&s.HeartbeatURL, "heartbeat-url", "", "URL called every --heartbeat-interval while alerting works (dead man's switch)")
	fs.DurationVar(&s.HeartbeatInterval, "heartbeat-interval", time.Minute, "interval of --heartbeat-url calls")
	fs.DurationVar(&s.AlertEvaluationInterval, "alert-evaluation-interval", 30*time.Second, "how often alert rules are evaluated")
	fs.DurationVar(&s.AlertGroupWait, "alert-group-wait", 30*time.Second, "how long a new group of alerts waits before the first notification")
	fs.DurationVar(&s.AlertGroupInterval, "alert-group-interval", 5*time.Minute, "how long a group waits before notifying about changes (new or resolved alerts)")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", 60*time.Second, "bound on a clean stop of all components")
}

// LoadFile applies the keys of the YAML file at path to the flags of fs that were not set on
// the command line. A missing file is fine when required is false (the default file).
func LoadFile(fs *pflag.FlagSet, path string, required bool) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read config file %s: %w", path, err)
	}
	return Apply(fs, path, data)
}

// Apply applies YAML config data (named path in errors) to the unset flags of fs.
func Apply(fs *pflag.FlagSet, path string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: invalid YAML: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: the config file must be a mapping of flag names to values", path, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		f := fs.Lookup(k.Value)
		if f == nil || k.Value == "config" {
			return fmt.Errorf("%s:%d: unknown key %q (keys are the flags of `gluebox server --help`, e.g. data-dir, domain)", path, k.Line, k.Value)
		}
		if f.Changed {
			continue // the command line wins
		}
		var values []string
		switch v.Kind {
		case yaml.ScalarNode:
			values = []string{v.Value}
		case yaml.SequenceNode:
			if f.Value.Type() != "stringArray" {
				return fmt.Errorf("%s:%d: key %q takes a single value, not a list", path, v.Line, k.Value)
			}
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("%s:%d: key %q: list items must be plain values", path, item.Line, k.Value)
				}
				values = append(values, item.Value)
			}
		default:
			return fmt.Errorf("%s:%d: key %q must be a value or a list of values", path, v.Line, k.Value)
		}
		for _, val := range values {
			if err := fs.Set(k.Value, val); err != nil {
				return fmt.Errorf("%s:%d: key %q: %v", path, v.Line, k.Value, err)
			}
		}
	}
	return nil
}

// Validate checks values that flags alone cannot, naming the flag and the fix.
func (s *Server) Validate() error {
	var errs []error
	if s.NodeIP != "" {
		if ip := net.ParseIP(s.NodeIP); ip == nil || ip.To4() == nil {
			errs = append(errs, fmt.Errorf("--node-ip %q is not an IPv4 address", s.NodeIP))
		}
	}
	for name, c := range map[string]string{"--cluster-cidr": s.ClusterCIDR, "--service-cidr": s.ServiceCIDR} {
		ip, n, err := net.ParseCIDR(c)
		if err != nil || ip.To4() == nil {
			errs = append(errs, fmt.Errorf("%s %q is not an IPv4 CIDR such as 10.42.0.0/16", name, c))
			continue
		}
		if ones, _ := n.Mask.Size(); ones > 24 {
			errs = append(errs, fmt.Errorf("%s %q is too small: use a /24 or larger", name, c))
		}
	}
	if s.APIPort <= 0 || s.APIPort > 65535 {
		errs = append(errs, fmt.Errorf("--api-port %d is not a TCP port", s.APIPort))
	}
	for name, a := range map[string]string{"--http-addr": s.HTTPAddr, "--https-addr": s.HTTPSAddr, "--registry-addr": s.RegistryAddr, "--console-addr": s.ConsoleAddr} {
		if _, port, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port (e.g. 127.0.0.1:5000 or :80)", name, a))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %q has no valid port", name, a))
		}
	}
	if s.PollInterval < time.Second {
		errs = append(errs, fmt.Errorf("--poll-interval %s is below 1s", s.PollInterval))
	}
	if s.ResyncInterval < time.Second {
		errs = append(errs, fmt.Errorf("--resync-interval %s is below 1s", s.ResyncInterval))
	}
	if s.HealthTimeout < time.Second {
		errs = append(errs, fmt.Errorf("--health-timeout %s is below 1s", s.HealthTimeout))
	}
	if s.ConfigRepoCredentials != "" && !strings.HasPrefix(s.ConfigRepoCredentials, "secret/") {
		errs = append(errs, fmt.Errorf("--config-repo-credentials %q is not a secret-store path: use secret/<name>", s.ConfigRepoCredentials))
	}
	if s.ConfigRepo == "" && (s.ConfigRepoBranch != "" || s.ConfigRepoCredentials != "") {
		errs = append(errs, fmt.Errorf("--config-repo-branch and --config-repo-credentials need --config-repo"))
	}
	for name, d := range map[string]time.Duration{"--metrics-retention": s.MetricsRetention, "--logs-retention": s.LogsRetention} {
		if d < 24*time.Hour {
			errs = append(errs, fmt.Errorf("%s %s is shorter than 24h", name, d))
		}
	}
	if s.MetricsDiskBudget < 0 || s.LogsDiskBudget < 0 {
		errs = append(errs, fmt.Errorf("--metrics-disk-budget and --logs-disk-budget must not be negative"))
	}
	for _, l := range []struct {
		name  string
		value int64
	}{
		{"--metrics-memory-limit", s.MetricsMemoryLimit},
		{"--logs-memory-limit", s.LogsMemoryLimit},
		{"--alerting-memory-limit", s.AlertingMemoryLimit},
		{"--log-collector-memory-limit", s.LogCollectorMemoryLimit},
	} {
		if l.value < 0 || l.value > 0 && l.value < MinMemoryLimit {
			errs = append(errs, fmt.Errorf("%s %d is too small: give at least 64Mi, or 0 for no limit", l.name, l.value))
		}
	}
	if c := s.ObservabilityCPULimit; math.IsNaN(c) || math.IsInf(c, 0) || c < 0 || c > 0 && c < 0.1 {
		errs = append(errs, fmt.Errorf("--observability-cpu-limit %v is not a number of cores: give at least 0.1, or 0 for no limit", c))
	}
	if (s.AlertEmailTo == "") != (s.AlertSMTPHost == "") || (s.AlertEmailTo != "" && s.AlertEmailFrom == "") {
		errs = append(errs, fmt.Errorf("alert mails need --alert-email-to, --alert-email-from and --alert-smtp-host together"))
	}
	if s.AlertSMTPCredentials != "" && !strings.HasPrefix(s.AlertSMTPCredentials, "secret/") {
		errs = append(errs, fmt.Errorf("--alert-smtp-credentials %q is not a secret-store path: use secret/<name>", s.AlertSMTPCredentials))
	}
	for name, d := range map[string]time.Duration{"--heartbeat-interval": s.HeartbeatInterval, "--alert-evaluation-interval": s.AlertEvaluationInterval, "--alert-group-wait": s.AlertGroupWait, "--alert-group-interval": s.AlertGroupInterval} {
		if d < time.Second {
			errs = append(errs, fmt.Errorf("%s %s is below 1s", name, d))
		}
	}
	if s.BuildConcurrency < 1 || s.BuildConcurrency > 64 {
		errs = append(errs, fmt.Errorf("--build-concurrency %d must be between 1 and 64", s.BuildConcurrency))
	}
	if s.BuildTimeout < time.Minute {
		errs = append(errs, fmt.Errorf("--build-timeout %s is below 1m", s.BuildTimeout))
	}
	if p := s.PreviewBranches; p != "" {
		if prefix, ok := strings.CutSuffix(p, "*"); !ok || prefix == "" || strings.ContainsAny(prefix, "*?[\\ ") {
			errs = append(errs, fmt.Errorf("--preview-branches %q must be a branch prefix followed by one \"*\" for the pull-request number, e.g. \"preview/*\"", p))
		}
	}
	if s.PreviewTTL < time.Hour {
		errs = append(errs, fmt.Errorf("--preview-ttl %s is below 1h", s.PreviewTTL))
	}
	if s.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout must be positive"))
	}
	if strings.TrimSpace(s.DataDir) == "" {
		errs = append(errs, fmt.Errorf("--data-dir must not be empty"))
	}
	return errors.Join(errs...)
}
