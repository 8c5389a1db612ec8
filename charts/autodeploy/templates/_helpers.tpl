{{/* The chart name, or nameOverride. */}}
{{- define "autodeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: the release name when it contains the chart name (release
"autodeploy" gives autodeploy-controller-manager, as config/default does), else
<release>-<chart>.
*/}}
{{- define "autodeploy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 35 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 35 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 35 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "autodeploy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels the pods are selected by. Never change them: a Deployment's selector is immutable. */}}
{{- define "autodeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "autodeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
control-plane: controller-manager
{{- end }}

{{- define "autodeploy.labels" -}}
helm.sh/chart: {{ include "autodeploy.chart" . }}
{{ include "autodeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "autodeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller-manager" (include "autodeploy.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing service account when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "autodeploy.image" -}}
{{- $repo := required "image.repository must be set" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- if not (hasPrefix "sha256:" .Values.image.digest) }}
{{- fail (printf "image.digest: %q is not a digest (sha256:<64 hex digits>)" .Values.image.digest) }}
{{- end }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{- define "autodeploy.manifestKeySecretName" -}}
{{- default (printf "%s-manifest-key" (include "autodeploy.fullname" .)) .Values.manifestKey.existingSecret }}
{{- end }}

{{/* Refuses values that would install a broken controller, naming the value to fix. */}}
{{- define "autodeploy.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "leaderElection.enabled is false with replicaCount %d: two reconcilers would deploy at once; set replicaCount: 1 or enable leader election" (int .Values.replicaCount)) }}
{{- end }}
{{- if lt (int .Values.replicaCount) 1 }}
{{- fail (printf "replicaCount: %d, want at least 1" (int .Values.replicaCount)) }}
{{- end }}
{{- with .Values.manifestKey }}
{{- if and .enabled .create }}
{{- if .existingSecret }}
{{- fail "manifestKey: set either existingSecret or create, not both" }}
{{- end }}
{{- if not .keys }}
{{- fail "manifestKey.keys: give one key (two during a rotation) when manifestKey.create is true" }}
{{- end }}
{{- if gt (len .keys) 2 }}
{{- fail (printf "manifestKey.keys: %d keys, at most 2 (the new and the old during a rotation)" (len .keys)) }}
{{- end }}
{{- range $i, $k := .keys }}
{{- if lt (len (toString $k)) 16 }}
{{- fail (printf "manifestKey.keys[%d]: %d bytes, want at least 16 (openssl rand -hex 32)" $i (len (toString $k))) }}
{{- end }}
{{- if contains "\n" (toString $k) }}
{{- fail (printf "manifestKey.keys[%d]: a key is one line" $i) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.receiver.tls.enabled (not .Values.receiver.tls.secretName) }}
{{- fail "receiver.tls.secretName: name the kubernetes.io/tls Secret when receiver.tls.enabled is true" }}
{{- end }}
{{- if and .Values.aws.accountId (not (regexMatch "^[0-9]{12}$" (toString .Values.aws.accountId))) }}
{{- fail (printf "aws.accountId: %q is not a 12-digit AWS account ID (quote it in YAML)" (toString .Values.aws.accountId)) }}
{{- end }}
{{- end }}
