{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "meshmask.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, or the release alone if it holds the chart name. */}}
{{- define "meshmask.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "meshmask.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshmask.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshmask.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "meshmask.labels" -}}
helm.sh/chart: {{ include "meshmask.chart" . }}
{{ include "meshmask.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "meshmask.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "meshmask.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "meshmask.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "meshmask.policiesConfigMap" -}}
{{- default (printf "%s-policies" (include "meshmask.fullname" .)) .Values.existingPoliciesConfigMap }}
{{- end }}

{{- define "meshmask.tokenSecret" -}}
{{- default (printf "%s-admin-token" (include "meshmask.fullname" .)) .Values.admin.existingSecret }}
{{- end }}

{{- define "meshmask.tokenSecretKey" -}}
{{- if .Values.admin.existingSecret }}{{ .Values.admin.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "meshmask.detokenizeSecret" -}}
{{- default (printf "%s-detokenize-token" (include "meshmask.fullname" .)) .Values.admin.detokenize.existingSecret }}
{{- end }}

{{- define "meshmask.detokenizeSecretKey" -}}
{{- if .Values.admin.detokenize.existingSecret }}{{ .Values.admin.detokenize.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "meshmask.keysSecret" -}}
{{- default (printf "%s-hash-keys" (include "meshmask.fullname" .)) .Values.hashKeys.existingSecret }}
{{- end }}

{{/* Whether a hash-key volume exists at all. */}}
{{- define "meshmask.hasKeys" -}}
{{- if or .Values.hashKeys.existingSecret .Values.hashKeys.keys }}true{{ end }}
{{- end }}

{{/* HTTP or HTTPS, for probes and scrapes. */}}
{{/* How the admin API gets its certificate: generate, certManager, secret or off. */}}
{{- define "meshmask.tlsMode" -}}
{{- if .Values.admin.tls.secretName }}secret{{ else }}{{ .Values.admin.tls.mode | default "generate" }}{{ end }}
{{- end }}

{{/* The Secret holding tls.crt/tls.key (and ca.crt unless "secret"); empty when TLS is off. */}}
{{- define "meshmask.tlsSecret" -}}
{{- $m := include "meshmask.tlsMode" . }}
{{- if eq $m "secret" }}{{ .Values.admin.tls.secretName }}
{{- else if ne $m "off" }}{{ printf "%s-admin-tls" (include "meshmask.fullname" .) }}
{{- end }}
{{- end }}

{{/* The DNS name the certificate is for and clients verify (the Service's). */}}
{{- define "meshmask.adminHost" -}}
{{- printf "%s.%s.svc" (include "meshmask.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "meshmask.scheme" -}}
{{- if include "meshmask.tlsSecret" . }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* The loopback address probes target when the admin API binds loopback; empty otherwise. */}}
{{- define "meshmask.probeHost" -}}
{{- if has .Values.admin.bind (list "127.0.0.1" "localhost") }}127.0.0.1{{ else if eq .Values.admin.bind "[::1]" }}::1{{ end }}
{{- end }}

{{/* The --admin value. "hostIP" expands from the downward API at container start. */}}
{{- define "meshmask.adminAddr" -}}
{{- if eq .Values.admin.bind "hostIP" }}
{{- printf "$(MESHMASK_HOST_IP):%d" (int .Values.admin.port) }}
{{- else }}
{{- printf "%s:%d" .Values.admin.bind (int .Values.admin.port) }}
{{- end }}
{{- end }}

{{/*
Capabilities the agent needs, one per enabled feature (docs/deploy.md explains each):
  BPF          load programs, create maps (bpf(2) since 5.8)
  NET_ADMIN    cgroup/connect, cgroup/getsockopt, sockops, sk_msg, sk_lookup program types
  SYS_ADMIN    setns(2) into pod network namespaces; attaching to the root cgroup
  SYS_PTRACE   /proc/PID/ns/net, /proc/PID/maps and /proc/PID/root of other users' processes
  PERFMON      OpenSSL uprobes through perf events, tracing programs (tp_btf)
  SYS_RESOURCE raise RLIMIT_MEMLOCK on kernels before 5.11
Without BPF (--no-bpf) the agent is a plain HTTP server and needs none.
*/}}
{{- define "meshmask.capabilities" -}}
{{- $caps := list }}
{{- if .Values.agent.bpf }}
{{- $caps = concat $caps (list "BPF" "NET_ADMIN" "SYS_ADMIN" "SYS_PTRACE") }}
{{- if .Values.agent.tlsUprobes }}
{{- $caps = append $caps "PERFMON" }}
{{- end }}
{{- if .Values.agent.legacyMemlock }}
{{- $caps = append $caps "SYS_RESOURCE" }}
{{- end }}
{{- end }}
{{- $caps = concat $caps .Values.securityContext.extraCapabilities | uniq }}
{{- toJson $caps }}
{{- end }}

{{/* Probe target: an httpGet on the admin port, on loopback through the host network if bound there. */}}
{{- define "meshmask.probeGet" -}}
httpGet:
  path: {{ .path }}
  port: admin
  scheme: {{ include "meshmask.scheme" .root }}
  {{- with include "meshmask.probeHost" .root }}
  host: {{ . | quote }}
  {{- end }}
{{- end }}

{{/* Whether the ServiceMonitor renders: asked for, a Service to select, and the CRD served. */}}
{{- define "meshmask.serviceMonitor" -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.service.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}true{{ end }}
{{- end }}

{{/* Whether the agent gets a ServiceAccount token (only when RBAC rules grant it something). */}}
{{- define "meshmask.needsToken" -}}
{{- if or (include "meshmask.identity" .) (and .Values.rbac.create .Values.rbac.rules) }}true{{ end }}
{{- end }}

{{/* Pod identity from the Kubernetes API: only the data plane (agent.bpf) uses it. */}}
{{- define "meshmask.identity" -}}
{{- if and .Values.identity.kubernetes .Values.agent.bpf }}true{{ end }}
{{- end }}
