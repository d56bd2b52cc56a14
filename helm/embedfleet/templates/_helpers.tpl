{{/* Names and labels. */}}
{{- define "embedfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "embedfleet.fullname" -}}
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

{{- define "embedfleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "embedfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: embedfleet
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "embedfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "embedfleet.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "embedfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "embedfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "embedfleet.gatewayImage" -}}
{{ .Values.images.gateway.repository }}:{{ .Values.images.gateway.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The worker image; a pool or group may name its own: (dict "ctx" $ "image" .image). */}}
{{- define "embedfleet.workerImage" -}}
{{- $img := .image | default dict }}
{{- $repo := $img.repository | default .ctx.Values.images.worker.repository }}
{{- $tag := $img.tag | default .ctx.Values.images.worker.tag | default .ctx.Chart.AppVersion }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{- define "embedfleet.gatewayService" -}}
{{ include "embedfleet.fullname" . }}-gateway
{{- end }}

{{- define "embedfleet.rayClusterName" -}}
{{ include "embedfleet.fullname" . }}-ray
{{- end }}

{{/* Redis endpoint: the bundled Bitnami chart's master service, or the external host. */}}
{{- define "embedfleet.redisHost" -}}
{{- if .Values.redis.enabled }}{{ .Release.Name }}-redis-master{{ else }}{{ .Values.externalRedis.host }}{{ end }}
{{- end }}

{{- define "embedfleet.redisPort" -}}
{{- if .Values.redis.enabled }}6379{{ else }}{{ .Values.externalRedis.port }}{{ end }}
{{- end }}

{{- define "embedfleet.redisPasswordSecret" -}}
{{- if .Values.redis.enabled }}{{ .Release.Name }}-redis{{ else }}{{ .Values.externalRedis.existingSecret }}{{ end }}
{{- end }}

{{- define "embedfleet.redisPasswordKey" -}}
{{- if .Values.redis.enabled }}redis-password{{ else }}{{ .Values.externalRedis.existingSecretPasswordKey }}{{ end }}
{{- end }}

{{- define "embedfleet.redisDb" -}}
{{- if .Values.redis.enabled }}0{{ else }}{{ .Values.externalRedis.db }}{{ end }}
{{- end }}

{{- define "embedfleet.redisTls" -}}
{{- and (not .Values.redis.enabled) .Values.externalRedis.tls }}
{{- end }}

{{- define "embedfleet.milvusUri" -}}
{{- if .Values.milvus.enabled }}http://{{ .Release.Name }}-milvus:19530{{ else }}{{ .Values.externalMilvus.uri }}{{ end }}
{{- end }}

{{/* The Celery bulk queue as a Redis key: kombu prefixes every key with global_keyprefix. */}}
{{- define "embedfleet.bulkListName" -}}
{{- printf "%scelery:%s" .Values.config.keyPrefix .Values.config.bulkQueue }}
{{- end }}

{{/* One TOML value: scalars and lists of scalars as JSON, which is valid TOML for these types. */}}
{{- define "embedfleet.tomlValue" -}}
{{- toJson . }}
{{- end }}

{{/* Environment every embedfleet process gets: where state lives and what comes from Secrets. */}}
{{- define "embedfleet.env" -}}
- name: EMBEDFLEET_CONFIG
  value: /etc/embedfleet/embedfleet.toml
- name: EMBEDFLEET_BACKEND
  value: {{ .Values.backend | quote }}
{{- $secret := include "embedfleet.redisPasswordSecret" . }}
{{- $scheme := ternary "rediss" "redis" (eq (include "embedfleet.redisTls" .) "true") }}
{{- if $secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "embedfleet.redisPasswordKey" . }}
- name: EMBEDFLEET_REDIS_URL
  value: "{{ $scheme }}://:$(REDIS_PASSWORD)@{{ include "embedfleet.redisHost" . }}:{{ include "embedfleet.redisPort" . }}/{{ include "embedfleet.redisDb" . }}"
{{- else }}
- name: EMBEDFLEET_REDIS_URL
  value: "{{ $scheme }}://{{ include "embedfleet.redisHost" . }}:{{ include "embedfleet.redisPort" . }}/{{ include "embedfleet.redisDb" . }}"
{{- end }}
- name: EMBEDFLEET_MILVUS_URI
  value: {{ include "embedfleet.milvusUri" . | quote }}
{{- if and (not .Values.milvus.enabled) .Values.externalMilvus.existingSecret }}
- name: EMBEDFLEET_MILVUS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalMilvus.existingSecret }}
      key: {{ .Values.externalMilvus.existingSecretTokenKey }}
{{- end }}
- name: EMBEDFLEET_MODEL_STORE_DIR
  value: {{ .Values.models.store.mountPath | quote }}
{{- if eq .Values.dataStore.type "pvc" }}
- name: EMBEDFLEET_DATA_URI
  value: {{ printf "file://%s" .Values.dataStore.pvc.mountPath | quote }}
{{- else if eq .Values.dataStore.type "objectStore" }}
- name: EMBEDFLEET_DATA_URI
  value: {{ .Values.dataStore.objectStore.uri | quote }}
{{- with .Values.dataStore.objectStore.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if .Values.metrics.enabled }}
- name: EMBEDFLEET_METRICS_HOST
  value: 0.0.0.0
{{- end }}
# Caches (Hugging Face, torch, Ray) need a writable home: the root filesystem is read-only.
- name: HOME
  value: /tmp
- name: HF_HOME
  value: /tmp/huggingface
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "embedfleet.envFrom" -}}
{{- if and (eq .Values.dataStore.type "objectStore") .Values.dataStore.objectStore.existingSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.dataStore.objectStore.existingSecret }}
{{- end }}
{{- end }}

{{/* Volumes every embedfleet pod mounts; weights only where models are loaded: (dict "ctx" $ "weights" bool). */}}
{{- define "embedfleet.volumes" -}}
{{- $v := .ctx.Values }}
- name: config
  configMap:
    name: {{ include "embedfleet.fullname" .ctx }}-config
- name: tmp
  emptyDir: {}
- name: model-store
{{- if $v.models.store.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ $v.models.store.persistence.existingClaim | default (printf "%s-model-store" (include "embedfleet.fullname" .ctx)) }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- if eq $v.dataStore.type "pvc" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ $v.dataStore.pvc.existingClaim | default (printf "%s-data" (include "embedfleet.fullname" .ctx)) }}
{{- end }}
{{- if and .weights (eq $v.models.weights.source "pvc") }}
- name: model-weights
  persistentVolumeClaim:
    claimName: {{ $v.models.weights.existingClaim }}
    readOnly: true
{{- else if and .weights (eq $v.models.weights.source "initContainer") }}
- name: model-weights
  emptyDir:
    sizeLimit: {{ $v.models.weights.initContainer.sizeLimit }}
{{- end }}
{{- end }}

{{- define "embedfleet.volumeMounts" -}}
{{- $v := .ctx.Values }}
- name: config
  mountPath: /etc/embedfleet/embedfleet.toml
  subPath: embedfleet.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: model-store
  mountPath: {{ $v.models.store.mountPath }}
{{- if eq $v.dataStore.type "pvc" }}
- name: data
  mountPath: {{ $v.dataStore.pvc.mountPath }}
{{- end }}
{{- if and .weights (ne $v.models.weights.source "image") }}
- name: model-weights
  mountPath: {{ $v.models.weights.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{/* The init container that fills the weights volume (models.weights.source: initContainer). */}}
{{- define "embedfleet.weightsInit" -}}
{{- $w := .Values.models.weights }}
{{- if eq $w.source "initContainer" }}
initContainers:
  - name: fetch-weights
    image: {{ $w.initContainer.image | default (include "embedfleet.workerImage" (dict "ctx" .)) }}
    imagePullPolicy: {{ .Values.images.pullPolicy }}
    command: {{ toJson $w.initContainer.command }}
    {{- with $w.initContainer.env }}
    env: {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $w.initContainer.envFromSecret }}
    envFrom:
      - secretRef:
          name: {{ . }}
    {{- end }}
    securityContext: {{- toYaml .Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: model-weights
        mountPath: {{ $w.mountPath }}
      - name: tmp
        mountPath: /tmp
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every embedfleet pod. */}}
{{- define "embedfleet.podCommon" -}}
serviceAccountName: {{ include "embedfleet.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
securityContext: {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.images.pullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Annotations that roll pods when the shared config changes. */}}
{{- define "embedfleet.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

{{/* The Ray client address of the chart's RayCluster (KubeRay names the head Service <cluster>-head-svc). */}}
{{- define "embedfleet.rayAddress" -}}
{{- printf "ray://%s-head-svc:10001" (include "embedfleet.rayClusterName" .) }}
{{- end }}
