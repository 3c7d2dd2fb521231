{{/* The objects of one component. Each takes (dict "root" $ "c" <component values> ["track" stable|canary]). */}}

{{- define "papo.componentLabels" -}}
{{ include "papo.labels" .root }}
app.kubernetes.io/component: {{ .c.name }}
{{- end }}

{{- define "papo.componentSelectorLabels" -}}
{{ include "papo.selectorLabels" .root }}
app.kubernetes.io/component: {{ .c.name }}
{{- end }}

{{- define "papo.componentFullname" -}}
{{- printf "%s-%s" (include "papo.fullname" .root) .c.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Values that contradict each other stop the render instead of producing something that half works. */}}
{{- define "papo.validateComponent" -}}
{{- $c := .c }}
{{- if and $c.keda.enabled $c.hpa.enabled }}
{{- fail (printf "components.%s: keda.enabled and hpa.enabled are both true; one autoscaler per Deployment" $c.name) }}
{{- end }}
{{- if and $c.keda.enabled (not $c.queue) }}
{{- fail (printf "components.%s: keda.enabled needs a queue; %s owns none (use hpa)" $c.name $c.name) }}
{{- end }}
{{- if and $c.hpa.enabled (not ((($c.resources).requests).cpu)) }}
{{- fail (printf "components.%s: hpa.enabled scales on CPU utilization and needs resources.requests.cpu" $c.name) }}
{{- end }}
{{- range $kind := list "keda" "hpa" }}
{{- $a := get $c $kind }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "components.%s: %s.minReplicas (%v) is above %s.maxReplicas (%v)" $c.name $kind $a.minReplicas $kind $a.maxReplicas) }}
{{- end }}
{{- end }}
{{- if and $c.hpa.enabled (lt (int $c.hpa.minReplicas) 1) }}
{{- fail (printf "components.%s: hpa.minReplicas must be at least 1; scale to zero is keda's" $c.name) }}
{{- end }}
{{- if and $c.canary.enabled (not (or $c.canary.image.tag $c.canary.image.digest)) }}
{{- fail (printf "components.%s: canary.enabled needs canary.image.tag or canary.image.digest" $c.name) }}
{{- end }}
{{- range $var := $c.secretEnv }}
{{- if not (hasKey $.root.Values.secrets.keys $var) }}
{{- fail (printf "components.%s: secretEnv %s has no key in secrets.keys" $c.name $var) }}
{{- end }}
{{- end }}
{{- range $var, $_ := merge (dict) ($c.env | default dict) ($c.canary.env | default dict) }}
{{- if hasKey $.root.Values.secrets.keys $var }}
{{- fail (printf "components.%s: %s is a secret; list it in secretEnv instead of setting it in env" $c.name $var) }}
{{- end }}
{{- if or (eq $var "PAPO_SERVICE_TRACK") (eq $var $c.portEnv) }}
{{- fail (printf "components.%s: %s is set by the chart" $c.name $var) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "papo.deployment" -}}
{{- $c := .c }}
{{- $canary := eq .track "canary" }}
{{- $autoscaled := and (not $canary) (or $c.keda.enabled $c.hpa.enabled) }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "papo.componentFullname" . }}{{ if $canary }}-canary{{ end }}
  labels:
    {{- include "papo.componentLabels" . | nindent 4 }}
    track: {{ .track }}
spec:
  {{- if not $autoscaled }}
  replicas: {{ ternary $c.canary.replicas $c.replicas $canary }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "papo.componentSelectorLabels" . | nindent 6 }}
      track: {{ .track }}
  template:
    metadata:
      labels:
        {{- with omit ($c.podLabels | default dict) "track" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- include "papo.componentSelectorLabels" . | nindent 8 }}
        track: {{ .track }}
      {{- with $c.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- include "papo.podSpec" . | trim | nindent 6 }}
{{- end }}

{{- define "papo.service" -}}
{{- $c := .c }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "papo.componentFullname" . }}
  labels:
    {{- include "papo.componentLabels" . | nindent 4 }}
  {{- with $c.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $c.service.type }}
  ports:
    - name: http
      port: {{ $c.port }}
      targetPort: http
      protocol: TCP
  {{- /* No track: both the stable and the canary pods are behind the Service. */}}
  selector:
    {{- include "papo.componentSelectorLabels" . | nindent 4 }}
{{- end }}

{{- define "papo.kedaAuthName" -}}
{{- printf "%s-rabbitmq" (include "papo.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "papo.scaledObject" -}}
{{- $c := .c }}
{{- if $c.keda.enabled }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "papo.componentFullname" . }}
  labels:
    {{- include "papo.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "papo.componentFullname" . }}
  pollingInterval: {{ $c.keda.pollingInterval }}
  cooldownPeriod: {{ $c.keda.cooldownPeriod }}
  minReplicaCount: {{ $c.keda.minReplicas }}
  maxReplicaCount: {{ $c.keda.maxReplicas }}
  {{- with $c.keda.fallback }}
  fallback:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.keda.behavior }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        {{- toYaml . | nindent 8 }}
  {{- end }}
  triggers:
    - type: rabbitmq
      metadata:
        protocol: {{ $c.keda.protocol | quote }}
        queueName: {{ $c.queue | quote }}
        mode: QueueLength
        value: {{ $c.keda.queueLength | quote }}
        activationValue: {{ $c.keda.activationQueueLength | quote }}
      authenticationRef:
        name: {{ include "papo.kedaAuthName" .root }}
{{- end }}
{{- end }}

{{- define "papo.hpa" -}}
{{- $c := .c }}
{{- if $c.hpa.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "papo.componentFullname" . }}
  labels:
    {{- include "papo.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "papo.componentFullname" . }}
  minReplicas: {{ $c.hpa.minReplicas }}
  maxReplicas: {{ $c.hpa.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $c.hpa.targetCPUUtilizationPercentage }}
  {{- with $c.hpa.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "papo.pdb" -}}
{{- $c := .c }}
{{- if $c.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "papo.componentFullname" . }}
  labels:
    {{- include "papo.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $c.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "papo.componentSelectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{- define "papo.ingress" -}}
{{- $c := .c }}
{{- if $c.ingress.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "papo.componentFullname" . }}
  labels:
    {{- include "papo.componentLabels" . | nindent 4 }}
  {{- with $c.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $c.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with $c.ingress.tls }}
  tls:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    {{- range $c.ingress.hosts }}
    - host: {{ .host | quote }}
      http:
        paths:
          {{- range .paths }}
          - path: {{ .path }}
            pathType: {{ .pathType | default "Prefix" }}
            backend:
              service:
                name: {{ include "papo.componentFullname" $ }}
                port:
                  name: http
          {{- end }}
    {{- end }}
{{- end }}
{{- end }}
