{{/* Name of the app's objects: the app folder name. */}}
{{- define "app.name" -}}
{{- required "gluebox.app is not set: the chart is rendered by gluebox only" .Values.gluebox.app -}}
{{- end -}}

{{/* Labels that select the app's pods. Deployments cannot change them, so they never vary. */}}
{{- define "app.selectorLabels" -}}
{{- toYaml (dict "app.kubernetes.io/name" (include "app.name" .) "gluebox.dev/app" .Values.gluebox.app "gluebox.dev/env" .Values.gluebox.env) -}}
{{- end -}}

{{/*
Labels of an object: the selector labels and managed-by, which win, then the section's labels
(.extra), then commonLabels. gluebox adds the commit label itself.
*/}}
{{- define "app.labels" -}}
{{- $fixed := fromYaml (include "app.selectorLabels" .root) -}}
{{- $_ := set $fixed "app.kubernetes.io/managed-by" "gluebox" -}}
{{- $all := merge $fixed (.extra | default dict) (.root.Values.commonLabels | default dict) -}}
{{- range $k, $v := $all }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* Annotations of an object: the section's (.extra), then commonAnnotations. */}}
{{- define "app.annotations" -}}
{{- $all := merge (dict) (.extra | default dict) (.root.Values.commonAnnotations | default dict) -}}
{{- range $k, $v := $all }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* Container port, also the Service target. */}}
{{- define "app.port" -}}
{{- .Values.image.port | default 8080 | int -}}
{{- end -}}

{{- define "app.servicePort" -}}
{{- .Values.service.port | default .Values.image.port | default 8080 | int -}}
{{- end -}}

{{/* Image reference: registry/repository:tag, or registry/repository@sha256:... */}}
{{- define "app.image" -}}
{{- $reg := .Values.image.registry | default .Values.gluebox.registry -}}
{{- $repo := .Values.image.repository | default .Values.gluebox.app -}}
{{- $tag := required "image.tag is required when deployment.enabled is true (a branch such as main, a commit SHA or a version)" (.Values.image.tag | toString | trim) -}}
{{- $ref := $repo -}}
{{- if $reg }}{{ $ref = printf "%s/%s" (trimSuffix "/" $reg) $repo }}{{ end -}}
{{- if hasPrefix "sha256:" $tag -}}
{{ $ref }}@{{ $tag }}
{{- else -}}
{{ $ref }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{/* A GlueOps pull policy may be spelled "always"; Kubernetes wants "Always". */}}
{{- define "app.pullPolicy" -}}
{{- $p := .Values.deployment.imagePullPolicy | default .Values.image.pullPolicy | default "IfNotPresent" -}}
{{- if eq (lower $p) "ifnotpresent" }}IfNotPresent{{ else }}{{ title (lower $p) }}{{ end -}}
{{- end -}}
