// Package alerts owns alerting in a gluebox server: the rules (gluebox's defaults from
// assets/alerts and the user's from platform.yaml's alerts: list), vmalert evaluating them
// against VictoriaMetrics and VictoriaLogs, and Alertmanager routing the resulting
// notifications to webhook, Slack-compatible and email receivers, with grouping, silences,
// resolve messages and a heartbeat ("dead man's switch"). Both programs are bundled and run as
// supervised children on 127.0.0.1; their configuration is generated here from Go structs.
//
// Lifecycle: NewAlertmanager and NewVMAlert validate their Config, create their directories
// and write the generated files (alertmanager.yml; the default rule files); nothing runs until
// Run, which keeps the program running until its context ends and returns nil then. WaitReady
// returns once the program answers its health check. Start Alertmanager before vmalert, and
// both after VictoriaMetrics (and VictoriaLogs when log rules are used). While they run,
// Alertmanager.Apply replaces the notification routing and VMAlert.SetUserRules the user's
// rules; both check the new configuration with the real program before it replaces the old
// one, and a rejected change leaves the old one running. With Limits.CgroupParent set in their
// Config, each program runs in a cgroup of its own with hard limits (DefaultMemoryLimit,
// DefaultCPULimit), OOM-killed and restarted above its memory limit.
//
// Rules. Each user rule becomes its own vmalert group, so an invalid rule is dropped alone:
// ValidateUserRules checks what gluebox can check itself, Check runs `vmalert -dryRun` (which
// parses MetricsQL and LogsQL exactly as the evaluator will) and maps its complaints back to
// rule names, and SetUserRules writes only the rules both accepted. A log rule (logs: instead
// of expr:) is a LogsQL query evaluated by vmalert with `type: vlogs`; vmalert has a single
// datasource URL, so when VictoriaLogs is configured VMAlert puts a small path router in
// front of both stores (/select/logsql/* to VictoriaLogs, the rest to VictoriaMetrics), which
// is what VictoriaLogs' documentation does with vmauth.
//
// The default rule files may hold these placeholders, replaced when they are written:
// %{GLUEBOX_REGISTRY_DISK_LIMIT_BYTES} (VMAlertConfig.RegistryDiskLimit).
//
// Heartbeat. The default rule GlueboxHeartbeat (vector(1)) always fires. Alertmanager routes it
// to the heartbeat receiver only, with group_interval equal to Heartbeat.Interval and a
// repeat_interval slightly shorter: Alertmanager has no minimum repeat_interval (only zero is
// refused) but only re-sends at group_interval ticks and compares repeat_interval with the
// time the previous notification was logged, which is a little after the tick, so
// repeat_interval == group_interval would send every second tick.
//
// Only the server (and the API layer, through Client) imports this package.
package alerts
