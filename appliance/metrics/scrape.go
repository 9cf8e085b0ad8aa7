package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/url"

	"sigs.k8s.io/yaml"
)

// Targets says what VictoriaMetrics scrapes. An empty field leaves its job out, so a store with
// zero Targets scrapes only itself.
type Targets struct {
	// Kubelet is the kubelet's host:port (normally <node-ip>:10250); it gives the jobs "kubelet"
	// (/metrics) and "cadvisor" (/metrics/cadvisor, per-container CPU, memory and network).
	Kubelet string
	// NodeName labels the kubelet and cAdvisor series with node="<NodeName>".
	NodeName string
	// APIServer is the apiserver's host:port (normally 127.0.0.1:6443); job "apiserver".
	APIServer string
	// CAFile verifies the kubelet's and apiserver's serving certificates; CertFile and KeyFile
	// are the client certificate gluebox presents to them (it must be allowed to GET /metrics
	// and nodes/metrics). Required with Kubelet or APIServer.
	CAFile, CertFile, KeyFile string
	// Gluebox is the URL of gluebox's own metrics endpoint, e.g.
	// http://127.0.0.1:8444/metrics; job "gluebox".
	Gluebox string
	// Kubeconfig is the kubeconfig VictoriaMetrics discovers pods with (it needs list/watch on
	// pods); job "kubernetes-pods" scrapes every pod annotated prometheus.io/scrape: "true".
	Kubeconfig string
	// Extra are more plain-HTTP(S) targets, e.g. VictoriaLogs' /metrics.
	Extra []Target
}

// Target is one extra scrape target.
type Target struct {
	// Job names the job (the job label); URL is the full metrics URL.
	Job string
	URL string
}

func (t Targets) validate() error {
	if (t.Kubelet != "" || t.APIServer != "") && (t.CAFile == "" || t.CertFile == "" || t.KeyFile == "") {
		return errors.New("metrics: scraping the kubelet or apiserver needs Targets.CAFile, CertFile and KeyFile")
	}
	for _, hp := range []struct{ name, v string }{{"Kubelet", t.Kubelet}, {"APIServer", t.APIServer}} {
		if hp.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(hp.v); err != nil {
			return fmt.Errorf("metrics: Targets.%s %q is not host:port: %w", hp.name, hp.v, err)
		}
	}
	if t.Gluebox != "" {
		if _, err := parseTargetURL(t.Gluebox); err != nil {
			return fmt.Errorf("metrics: Targets.Gluebox: %w", err)
		}
	}
	seen := map[string]bool{"kubelet": true, "cadvisor": true, "apiserver": true, "gluebox": true, "kubernetes-pods": true, "victoria-metrics": true}
	for _, e := range t.Extra {
		if e.Job == "" {
			return fmt.Errorf("metrics: extra target %q has no job name", e.URL)
		}
		if seen[e.Job] {
			return fmt.Errorf("metrics: extra target job %q is used twice or is reserved", e.Job)
		}
		seen[e.Job] = true
		if _, err := parseTargetURL(e.URL); err != nil {
			return fmt.Errorf("metrics: extra target %q: %w", e.Job, err)
		}
	}
	return nil
}

// parseTargetURL accepts http(s)://host:port/path URLs.
func parseTargetURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("cannot parse URL %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q must be http(s)://host[:port]/path", s)
	}
	if u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("URL %q must not carry credentials or a fragment", s)
	}
	return u, nil
}

// PromConfig is the subset of the Prometheus configuration file that gluebox writes for
// VictoriaMetrics' -promscrape.config.
type PromConfig struct {
	Global        GlobalConfig   `json:"global"`
	ScrapeConfigs []ScrapeConfig `json:"scrape_configs"`
}

// GlobalConfig holds the defaults of every scrape job.
type GlobalConfig struct {
	ScrapeInterval string `json:"scrape_interval"`
	ScrapeTimeout  string `json:"scrape_timeout,omitempty"`
}

// ScrapeConfig is one scrape job.
type ScrapeConfig struct {
	JobName             string              `json:"job_name"`
	Scheme              string              `json:"scheme,omitempty"`
	MetricsPath         string              `json:"metrics_path,omitempty"`
	HonorLabels         bool                `json:"honor_labels,omitempty"`
	Params              map[string][]string `json:"params,omitempty"`
	TLSConfig           *TLSConfig          `json:"tls_config,omitempty"`
	StaticConfigs       []StaticConfig      `json:"static_configs,omitempty"`
	KubernetesSDConfigs []KubernetesSD      `json:"kubernetes_sd_configs,omitempty"`
	RelabelConfigs      []RelabelConfig     `json:"relabel_configs,omitempty"`
}

// TLSConfig is a job's TLS client configuration.
type TLSConfig struct {
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// StaticConfig is a fixed list of targets with extra labels.
type StaticConfig struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// KubernetesSD discovers targets from the Kubernetes API.
type KubernetesSD struct {
	Role           string `json:"role"`
	KubeconfigFile string `json:"kubeconfig_file,omitempty"`
}

// RelabelConfig is one relabelling step.
type RelabelConfig struct {
	SourceLabels []string `json:"source_labels,omitempty"`
	Separator    string   `json:"separator,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	TargetLabel  string   `json:"target_label,omitempty"`
	Replacement  string   `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// BuildScrapeConfig builds the scrape configuration for cfg (zero values meaning their defaults).
// VictoriaMetrics' own metrics come from -selfScrapeInterval, not from a job here.
func BuildScrapeConfig(cfg Config) (PromConfig, error) {
	cfg.defaults()
	t := cfg.Targets
	pc := PromConfig{Global: GlobalConfig{ScrapeInterval: promDuration(cfg.ScrapeInterval)}}
	tls := &TLSConfig{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
	var nodeLabels map[string]string
	if t.NodeName != "" {
		nodeLabels = map[string]string{"node": t.NodeName}
	}
	if t.Kubelet != "" {
		pc.ScrapeConfigs = append(pc.ScrapeConfigs,
			ScrapeConfig{JobName: "kubelet", Scheme: "https", MetricsPath: "/metrics", TLSConfig: tls,
				StaticConfigs: []StaticConfig{{Targets: []string{t.Kubelet}, Labels: nodeLabels}}},
			// cAdvisor's series carry their own namespace, pod and container labels.
			ScrapeConfig{JobName: "cadvisor", Scheme: "https", MetricsPath: "/metrics/cadvisor", TLSConfig: tls,
				StaticConfigs: []StaticConfig{{Targets: []string{t.Kubelet}, Labels: nodeLabels}}})
	}
	if t.APIServer != "" {
		pc.ScrapeConfigs = append(pc.ScrapeConfigs, ScrapeConfig{JobName: "apiserver", Scheme: "https", MetricsPath: "/metrics", TLSConfig: tls,
			StaticConfigs: []StaticConfig{{Targets: []string{t.APIServer}}}})
	}
	if t.Gluebox != "" {
		sc, err := urlJob("gluebox", t.Gluebox)
		if err != nil {
			return PromConfig{}, err
		}
		pc.ScrapeConfigs = append(pc.ScrapeConfigs, sc)
	}
	if t.Kubeconfig != "" {
		pc.ScrapeConfigs = append(pc.ScrapeConfigs, ScrapeConfig{
			JobName:             "kubernetes-pods",
			KubernetesSDConfigs: []KubernetesSD{{Role: "pod", KubeconfigFile: t.Kubeconfig}},
			RelabelConfigs:      PodRelabelConfigs(),
		})
	}
	for _, e := range t.Extra {
		sc, err := urlJob(e.Job, e.URL)
		if err != nil {
			return PromConfig{}, err
		}
		pc.ScrapeConfigs = append(pc.ScrapeConfigs, sc)
	}
	return pc, nil
}

// ScrapeConfigYAML is BuildScrapeConfig rendered as the YAML file VictoriaMetrics reads.
func ScrapeConfigYAML(cfg Config) ([]byte, error) {
	pc, err := BuildScrapeConfig(cfg)
	if err != nil {
		return nil, err
	}
	out, err := yaml.Marshal(pc)
	if err != nil {
		return nil, fmt.Errorf("metrics: cannot render scrape config: %w", err)
	}
	return append([]byte("# Written by gluebox at every start; edits are lost.\n"), out...), nil
}

func urlJob(job, raw string) (ScrapeConfig, error) {
	u, err := parseTargetURL(raw)
	if err != nil {
		return ScrapeConfig{}, fmt.Errorf("metrics: job %q: %w", job, err)
	}
	sc := ScrapeConfig{JobName: job, Scheme: u.Scheme, MetricsPath: u.EscapedPath(),
		StaticConfigs: []StaticConfig{{Targets: []string{u.Host}}}}
	if sc.MetricsPath == "" {
		sc.MetricsPath = "/metrics"
	}
	if u.RawQuery != "" {
		sc.Params = u.Query()
	}
	return sc, nil
}

// PodRelabelConfigs are the relabelling steps of the kubernetes-pods job: keep pods annotated
// prometheus.io/scrape: "true" that are running, honour prometheus.io/scheme, /path and /port,
// and label each series with namespace, pod, container and the pod's labels.
func PodRelabelConfigs() []RelabelConfig {
	const ann = "__meta_kubernetes_pod_annotation_prometheus_io_"
	return []RelabelConfig{
		{SourceLabels: []string{ann + "scrape"}, Regex: "true", Action: "keep"},
		{SourceLabels: []string{"__meta_kubernetes_pod_phase"}, Regex: "Pending|Succeeded|Failed|Unknown", Action: "drop"},
		{SourceLabels: []string{ann + "scheme"}, Regex: "(https?)", TargetLabel: "__scheme__", Replacement: "$1", Action: "replace"},
		{SourceLabels: []string{ann + "path"}, Regex: "(.+)", TargetLabel: "__metrics_path__", Replacement: "$1", Action: "replace"},
		{SourceLabels: []string{"__address__", ann + "port"}, Regex: `([^:]+)(?::\d+)?;(\d+)`, TargetLabel: "__address__", Replacement: "$1:$2", Action: "replace"},
		{Regex: "__meta_kubernetes_pod_label_(.+)", Action: "labelmap"},
		{SourceLabels: []string{"__meta_kubernetes_namespace"}, TargetLabel: "namespace", Action: "replace"},
		{SourceLabels: []string{"__meta_kubernetes_pod_name"}, TargetLabel: "pod", Action: "replace"},
		{SourceLabels: []string{"__meta_kubernetes_pod_container_name"}, TargetLabel: "container", Action: "replace"},
		{SourceLabels: []string{"__meta_kubernetes_pod_node_name"}, TargetLabel: "node", Action: "replace"},
	}
}
