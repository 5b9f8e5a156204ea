{{/* vim: set filetype=mustache: */}}
{{/*
Expand the name of the chart.
*/}}
{{- define "openitdr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "openitdr.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of one component's objects: <fullname>-<component>, truncated.
Input: (dict "ctx" $ "component" "worker")
*/}}
{{- define "openitdr.componentName" -}}
{{- $base := include "openitdr.fullname" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base .component -}}
{{- end -}}

{{/*
Create the name of the service account to use
*/}}
{{- define "openitdr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
    {{ default (include "openitdr.fullname" .) .Values.serviceAccount.name }}
{{- else -}}
    {{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}

{{/*
Allow the release namespace to be overridden for multi-namespace deployments in combined charts
*/}}
{{- define "openitdr.namespace" -}}
  {{- if .Values.namespaceOverride -}}
    {{- .Values.namespaceOverride -}}
  {{- else -}}
    {{- .Release.Namespace -}}
  {{- end -}}
{{- end -}}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "openitdr.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Generate basic labels (release-wide objects).
*/}}
{{- define "openitdr.labels" }}
helm.sh/chart: {{ template "openitdr.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ template "openitdr.name" . }}
{{- include "openitdr.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- if .Values.customLabels }}
{{ tpl (toYaml .Values.customLabels) . }}
{{- end }}
{{- if .Values.releaseLabel }}
release: {{ .Release.Name }}
{{- end }}
{{- end }}

{{/*
Selector labels (release-wide: every pod of the release carries them).
*/}}
{{- define "openitdr.selectorLabels" }}
app.kubernetes.io/name: {{ include "openitdr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component. Input: (dict "ctx" $ "component" "worker")
*/}}
{{- define "openitdr.componentLabels" }}
{{- include "openitdr.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Selector labels of one component. Input: (dict "ctx" $ "component" "worker")
*/}}
{{- define "openitdr.componentSelectorLabels" }}
{{- include "openitdr.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Formats imagePullSecrets. Input is (dict "Values" .Values "imagePullSecrets" .{specific imagePullSecrets})
*/}}
{{- define "openitdr.imagePullSecrets" -}}
{{- range (concat .Values.global.imagePullSecrets .imagePullSecrets) }}
  {{- if eq (typeOf .) "map[string]interface {}" }}
- {{ toYaml . | trim }}
  {{- else }}
- name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
The image to use for every OpenITDR container (tag defaults to the chart appVersion).
*/}}
{{- define "openitdr.image" -}}
{{- $registry := default .Values.image.registry .Values.global.imageRegistry -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString -}}
{{- if .Values.image.sha -}}
{{- printf "%s/%s:%s@%s" $registry .Values.image.repository $tag .Values.image.sha -}}
{{- else -}}
{{- printf "%s/%s:%s" $registry .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Fixed paths inside the containers.
*/}}
{{- define "openitdr.configDir" -}}/etc/openitdr{{- end -}}
{{- define "openitdr.configPath" -}}/etc/openitdr/config.yaml{{- end -}}
{{- define "openitdr.secretsDir" -}}/var/run/secrets/openitdr{{- end -}}
{{- define "openitdr.dataDir" -}}/var/lib/openitdr{{- end -}}

{{/*
Detector enable list, kube-state-metrics style:
(detectors.default - detectors.exclude) + detectors.extra, without duplicates.
Fails on an exclude id that is not in the default list (a typo would silently keep it on).
Output: JSON list.
*/}}
{{- define "openitdr.enabledDetectors" -}}
{{- $d := .Values.detectors -}}
{{- range $d.exclude -}}
{{- if not (has . $d.default) -}}
{{- fail (printf "detectors.exclude: %q is not in detectors.default; check the id against `itdr detectors list`" .) -}}
{{- end -}}
{{- end -}}
{{- $enabled := list -}}
{{- range $d.default -}}
{{- if not (has . $d.exclude) -}}
{{- $enabled = append $enabled . -}}
{{- end -}}
{{- end -}}
{{- range $d.extra -}}
{{- $enabled = append $enabled . -}}
{{- end -}}
{{- $enabled = uniq $enabled -}}
{{- if not $enabled -}}
{{- fail "no detector enabled: detectors.default minus detectors.exclude plus detectors.extra is empty" -}}
{{- end -}}
{{- toJson $enabled -}}
{{- end -}}

{{/*
Maps a chart sink key to the `itdr sink <name>` argument and its config section key.
*/}}
{{- define "openitdr.sinkCommand" -}}
{{- $m := dict "workspace" "workspace" "sentinel" "sentinel" "syslog" "syslog" "alertsTopic" "alerts-topic" -}}
{{- get $m . -}}
{{- end -}}
{{- define "openitdr.sinkConfigKey" -}}
{{- $m := dict "workspace" "workspace" "sentinel" "sentinel" "syslog" "syslog" "alertsTopic" "alerts_topic" -}}
{{- get $m . -}}
{{- end -}}

{{/*
Validation of values that the schema cannot express.
*/}}
{{- define "openitdr.validate" -}}
{{- if not .Values.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is required (comma-separated host:port list of your Kafka cluster)" -}}
{{- end -}}
{{- $parts := int .Values.topics.partitions -}}
{{- if gt (int .Values.worker.replicaCount) $parts -}}
{{- fail (printf "worker.replicaCount (%d) exceeds topics.partitions (%d): extra workers would get no partition" (int .Values.worker.replicaCount) $parts) -}}
{{- end -}}
{{- if and .Values.worker.autoscaling.enabled (gt (int .Values.worker.autoscaling.maxReplicas) $parts) -}}
{{- fail (printf "worker.autoscaling.maxReplicas (%d) exceeds topics.partitions (%d)" (int .Values.worker.autoscaling.maxReplicas) $parts) -}}
{{- end -}}
{{- if hasKey .Values.detection.settings "enabled" -}}
{{- fail "detection.settings.enabled is not allowed: use detectors.default / detectors.exclude / detectors.extra" -}}
{{- end -}}
{{- $sasl := has .Values.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL") -}}
{{- if and $sasl (not .Values.kafka.sasl.existingSecret) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.existingSecret (Secret with the SASL password)" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and $sasl (not .Values.kafka.sasl.username) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.username" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- $st := .Values.sinks.sentinel -}}
{{- if and $st.enabled (not $st.clientSecret.existingSecret) (not $st.settings.use_managed_identity) -}}
{{- fail "sinks.sentinel needs clientSecret.existingSecret (service principal) or settings.use_managed_identity: true (managed / workload identity)" -}}
{{- end -}}
{{- range $key, $s := .Values.sinks -}}
{{- if hasKey $s.settings "enabled" -}}
{{- fail (printf "sinks.%s.settings.enabled is not allowed: use sinks.%s.enabled" $key $key) -}}
{{- end -}}
{{- end -}}
{{- range $k := list "client_secret" "url" -}}
{{- $val := get $.Values.sinks.sentinel.settings $k | default "" | toString -}}
{{- if and (eq $k "client_secret") $val -}}
{{- fail "sinks.sentinel.settings.client_secret is not allowed: put it in a Secret and set sinks.sentinel.clientSecret.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- $wurl := get .Values.sinks.workspace.settings "url" | default "" | toString -}}
{{- if regexMatch "^postgres(ql)?://" $wurl -}}
{{- fail "sinks.workspace.settings.url must not hold a PostgreSQL DSN (it may contain a password): put the DSN in a Secret and set sinks.workspace.postgresql.existingSecret" -}}
{{- end -}}
{{- if and $wurl .Values.sinks.workspace.postgresql.existingSecret -}}
{{- fail "set either sinks.workspace.settings.url (SQLite path) or sinks.workspace.postgresql.existingSecret, not both" -}}
{{- end -}}
{{- $w := .Values.sinks.workspace -}}
{{- if and $w.enabled (not $w.postgresql.existingSecret) (gt (int $w.replicaCount) 1) -}}
{{- fail "sinks.workspace.replicaCount > 1 needs PostgreSQL (sinks.workspace.postgresql.existingSecret): SQLite is a single-writer file" -}}
{{- end -}}
{{- end -}}

{{/*
The itdr YAML configuration (stream/settings.py). Secrets are never rendered here.
Input: (dict "ctx" $ "sink" "<chart sink key>" ) -- sink "" renders config.yaml (worker,
gateway) with no sink section; a sink key renders that sink's file with only its own section,
so a sink pod never needs (or validates) another sink's credentials.
*/}}
{{- define "openitdr.config" -}}
{{- $only := .sink -}}
{{- with .ctx -}}
{{- $v := .Values -}}
{{- $kafka := dict "bootstrap_servers" $v.kafka.bootstrapServers "security_protocol" $v.kafka.securityProtocol "client_id" $v.kafka.clientId -}}
{{- if has $v.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL") -}}
{{- $_ := set $kafka "sasl_mechanism" $v.kafka.sasl.mechanism -}}
{{- $_ := set $kafka "sasl_username" $v.kafka.sasl.username -}}
{{- end -}}
{{- if $v.kafka.tls.existingSecret -}}
{{- $tlsDir := printf "%s/kafka-tls" (include "openitdr.secretsDir" .) -}}
{{- with $v.kafka.tls.caKey }}{{ $_ := set $kafka "ssl_ca_location" (printf "%s/%s" $tlsDir .) }}{{ end -}}
{{- with $v.kafka.tls.certKey }}{{ $_ := set $kafka "ssl_certificate_location" (printf "%s/%s" $tlsDir .) }}{{ end -}}
{{- with $v.kafka.tls.keyKey }}{{ $_ := set $kafka "ssl_key_location" (printf "%s/%s" $tlsDir .) }}{{ end -}}
{{- end -}}
{{- if $v.kafka.extra -}}
{{- $_ := set $kafka "extra" $v.kafka.extra -}}
{{- end -}}
{{- $topics := dict "prefix" $v.topics.prefix "partitions" (int $v.topics.partitions) "replication_factor" (int $v.topics.replicationFactor) -}}
{{- $topics = merge $topics (deepCopy $v.topics.names) -}}
{{- $detection := deepCopy $v.detection.settings -}}
{{- $_ := set $detection "sensitivity" $v.detection.sensitivity -}}
{{- $_ := set $detection "learning_days" $v.detection.learningDays -}}
{{- $_ := set $detection "enabled" (include "openitdr.enabledDetectors" . | fromJsonArray) -}}
{{- $worker := deepCopy $v.worker.settings -}}
{{- $_ := set $worker "app_id" $v.worker.appId -}}
{{- $_ := set $worker "web_host" "0.0.0.0" -}}
{{- $_ := set $worker "web_port" (int $v.worker.webPort) -}}
{{- $_ := set $worker "state_dir" (printf "%s/state" (include "openitdr.dataDir" .)) -}}
{{- $sinks := deepCopy $v.sinkSettings -}}
{{- $_ := set $sinks "metrics_port" (int $v.metricsPort) -}}
{{- $_ := set $sinks "metrics_host" "0.0.0.0" -}}
{{- range $key, $sink := $v.sinks -}}
{{- if and $sink.enabled (eq $key $only) -}}
{{- $s := deepCopy $sink.settings -}}
{{- if ne $key "workspace" -}}
{{- $_ := set $s "enabled" true -}}
{{- end -}}
{{- $_ := set $sinks (include "openitdr.sinkConfigKey" $key) $s -}}
{{- end -}}
{{- end -}}
{{- $cfg := dict "kafka" $kafka "topics" $topics "detection" $detection "worker" $worker "sinks" $sinks -}}
{{- if $v.gateway.enabled -}}
{{- $gw := dict "host" "0.0.0.0" "tcp_port" (int $v.gateway.tcpPort) "http_port" (int $v.gateway.httpPort) -}}
{{- $forced := dict "metrics_port" (int $v.metricsPort) "metrics_host" "0.0.0.0" "gateway" $gw -}}
{{- $_ := set $cfg "collector" (merge $forced (deepCopy $v.gateway.settings)) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
{{- end -}}

{{/*
Environment shared by every OpenITDR container.
*/}}
{{- define "openitdr.commonEnv" -}}
- name: ITDR_CONFIG
  value: {{ include "openitdr.configPath" . | quote }}
{{- include "openitdr.baseEnv" . }}
{{- end -}}

{{/*
Environment of every container except ITDR_CONFIG.
*/}}
{{- define "openitdr.baseEnv" }}
- name: ITDR_SECRETS_DIR
  value: {{ include "openitdr.secretsDir" . | quote }}
- name: NUMBA_CACHE_DIR
  value: {{ .Values.numbaCache.mountPath | quote }}
- name: HOME
  value: /tmp
- name: PYTHONUNBUFFERED
  value: "1"
{{- if and (has .Values.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL")) .Values.kafka.sasl.existingSecret }}
- name: ITDR_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret | quote }}
      key: {{ .Values.kafka.sasl.passwordKey | quote }}
{{- end }}
{{- if .Values.kafka.tls.keyPasswordSecret }}
- name: ITDR_KAFKA__SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.tls.keyPasswordSecret | quote }}
      key: {{ .Values.kafka.tls.keyPasswordKey | quote }}
{{- end }}
{{- end -}}

{{/*
Volume mounts shared by every OpenITDR container.
*/}}
{{- define "openitdr.commonVolumeMounts" -}}
- name: config
  mountPath: /etc/openitdr
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: numba-cache
  mountPath: {{ .Values.numbaCache.mountPath }}
- name: data
  mountPath: {{ include "openitdr.dataDir" . }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "openitdr.secretsDir" . }}/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Volumes shared by every OpenITDR pod. Input: (dict "ctx" $ "data" <volume source yaml or "">)
*/}}
{{- define "openitdr.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "openitdr.fullname" .ctx }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .ctx.Values.tmp.sizeLimit }}
- name: numba-cache
  emptyDir:
    sizeLimit: {{ .ctx.Values.numbaCache.sizeLimit }}
{{- if .data }}
- name: data
{{ .data | indent 2 }}
{{- else }}
- name: data
  emptyDir: {}
{{- end }}
{{- if .ctx.Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .ctx.Values.kafka.tls.existingSecret | quote }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/*
Init container copying the build-time numba cache into the writable emptyDir.
*/}}
{{- define "openitdr.numbaInit" -}}
{{- if .Values.numbaCache.prewarm }}
- name: numba-cache
  image: {{ include "openitdr.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - /bin/sh
    - -c
    - {{ printf "if [ -d %s ]; then cp -R %s/. %s/; fi" .Values.numbaCache.imageDir .Values.numbaCache.imageDir .Values.numbaCache.mountPath | quote }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: numba-cache
      mountPath: {{ .Values.numbaCache.mountPath }}
{{- end }}
{{- end -}}

{{/*
Pod-level fields shared by every pod. Input: (dict "ctx" $ "cfg" <component values>)
*/}}
{{- define "openitdr.podCommon" -}}
serviceAccountName: {{ include "openitdr.serviceAccountName" .ctx }}
automountServiceAccountToken: {{ .ctx.Values.serviceAccount.automountServiceAccountToken }}
{{- if or .ctx.Values.global.imagePullSecrets .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- include "openitdr.imagePullSecrets" (dict "Values" .ctx.Values "imagePullSecrets" .ctx.Values.imagePullSecrets) | indent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .cfg.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .cfg.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
