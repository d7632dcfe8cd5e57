{{/*
Names. fullname is the release-scoped prefix of every object; it stays within 52 characters so
"<fullname>-processor-<ordinal>" remains a valid pod name and label value.
*/}}
{{- define "retailflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "retailflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains (include "retailflow.name" .) .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "retailflow.name" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "retailflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: immutable once a workload exists. */}}
{{- define "retailflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "retailflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full labels of one component. Call with (dict "root" $ "component" "processor"). */}}
{{- define "retailflow.labels" -}}
helm.sh/chart: {{ include "retailflow.chart" .root }}
{{ include "retailflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: retailflow
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "retailflow.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "retailflow.configMapName" -}}
{{- printf "%s-config" (include "retailflow.fullname" .) -}}
{{- end -}}

{{/*
The config file: .Values.config (keys of cmd/retailflow/config.go) with http.addr set from
.Values.http.port. Passwords are never rendered: they come from Secrets through the environment
(see retailflow.secretEnv), and a password in .Values.config fails the render.
*/}}
{{- define "retailflow.configYaml" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- range $path := list "kafka.sasl.password" "clickhouse.password" "registry.password" -}}
{{- $parts := splitList "." $path -}}
{{- $section := index $cfg (first $parts) | default dict -}}
{{- if eq (len $parts) 3 -}}{{- $section = index $section (index $parts 1) | default dict -}}{{- end -}}
{{- if hasKey $section (last $parts) -}}
{{- fail (printf "config.%s must not be set in values: reference a Secret under secrets.* instead (it reaches the pods as an environment variable)" $path) -}}
{{- end -}}
{{- end -}}
{{- if hasKey (default dict $cfg.runtime) "instance_id" -}}
{{- fail "config.runtime.instance_id must not be set: every processor replica derives its own from its pod (processor.instanceIdFrom)" -}}
{{- end -}}
{{- $_ := set $cfg "http" (dict "addr" (printf "%s:%d" (default "" .Values.http.address) (int .Values.http.port))) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Environment shared by every retailflow container: secrets by reference. */}}
{{- define "retailflow.secretEnv" -}}
{{- with .Values.secrets.kafkaSasl.existingSecret }}
- name: RETAILFLOW_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.secrets.kafkaSasl.key }}
{{- end }}
{{- with .Values.secrets.clickhouse.existingSecret }}
- name: RETAILFLOW_CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.secrets.clickhouse.key }}
{{- end }}
{{- with .Values.secrets.registry.existingSecret }}
- name: RETAILFLOW_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.secrets.registry.key }}
{{- end }}
{{- end -}}

{{/* Pod-level fields shared by the workloads and the hook job. */}}
{{- define "retailflow.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Volumes of every retailflow pod: the config file, a writable /tmp (the root fs is read-only), the TLS Secret when set. */}}
{{- define "retailflow.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .tlsSecret }}
- name: tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "retailflow.volumeMounts" -}}
- name: config
  mountPath: /etc/retailflow
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if (default dict .Values.tls).existingSecret }}
- name: tls
  mountPath: /etc/retailflow/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Seconds of a Go duration written as "<n>s", "<n>m" or "<n>h"; -1 for any other form (then the
checks that need it are skipped).
*/}}
{{- define "retailflow.durationSeconds" -}}
{{- $d := toString . -}}
{{- if regexMatch "^[0-9]+s$" $d -}}{{ trimSuffix "s" $d | int }}
{{- else if regexMatch "^[0-9]+m$" $d -}}{{ mul (trimSuffix "m" $d | int) 60 }}
{{- else if regexMatch "^[0-9]+h$" $d -}}{{ mul (trimSuffix "h" $d | int) 3600 }}
{{- else -}}-1{{- end -}}
{{- end -}}

{{- define "retailflow.partitions" -}}
{{- (default dict .Values.config.topics).partitions | default 6 | int -}}
{{- end -}}

{{/*
Checks of values that would deploy something broken. Rendered once, from configmap.yaml.
*/}}
{{- define "retailflow.validate" -}}
{{- $partitions := include "retailflow.partitions" . | int -}}
{{- if gt (int .Values.processor.replicas) $partitions -}}
{{- fail (printf "processor.replicas (%d) must not exceed config.topics.partitions (%d): a replica without a partition only sits idle" (int .Values.processor.replicas) $partitions) -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}
{{- $a := .Values.autoscaling -}}
{{- if gt (int $a.maxReplicas) $partitions -}}
{{- fail (printf "autoscaling.maxReplicas (%d) must not exceed config.topics.partitions (%d): the processor's parallelism is the partition count" (int $a.maxReplicas) $partitions) -}}
{{- end -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- if lt (int $a.lagThreshold) $partitions -}}
{{- fail (printf "autoscaling.lagThreshold (%d) must be at least config.topics.partitions (%d): on a transactional topic a caught-up group keeps lag 1 per partition (the commit marker), which must not ask for replicas" (int $a.lagThreshold) $partitions) -}}
{{- end -}}
{{- if and (eq (int $a.minReplicas) 0) (lt (int $a.activationLagThreshold) $partitions) -}}
{{- fail (printf "autoscaling.activationLagThreshold (%d) must be at least config.topics.partitions (%d) when minReplicas is 0, or commit markers wake the processor forever" (int $a.activationLagThreshold) $partitions) -}}
{{- end -}}
{{- end -}}
{{- $txn := include "retailflow.durationSeconds" ((default dict .Values.config.runtime).transaction_timeout | default "10s") | int -}}
{{- if and (ge $txn 0) (le (int .Values.processor.terminationGracePeriodSeconds) (add $txn 5)) -}}
{{- fail (printf "processor.terminationGracePeriodSeconds (%d) must exceed config.runtime.transaction_timeout (%ds) by more than 5s, so a stopping replica can finish or abort its open transaction" (int .Values.processor.terminationGracePeriodSeconds) $txn) -}}
{{- end -}}
{{- $sasl := (default dict (default dict .Values.config.kafka).sasl).mechanism | default "" -}}
{{- if and $sasl (not .Values.secrets.kafkaSasl.existingSecret) -}}
{{- fail "config.kafka.sasl.mechanism is set but secrets.kafkaSasl.existingSecret is empty: name the Secret holding the SASL password" -}}
{{- end -}}
{{- end -}}
