{{/* The pod of one component's track. Takes (dict "root" $ "c" <component values> "track" stable|canary). */}}

{{- define "papo.podSpec" -}}
{{- $root := .root }}
{{- $c := .c }}
{{- $gpu := $c.gpu }}
{{- $nodeSelector := deepCopy ($c.nodeSelector | default dict) }}
{{- $tolerations := $c.tolerations | default list }}
{{- $resources := deepCopy ($c.resources | default dict) }}
{{- if $gpu.enabled }}
{{- $nodeSelector = merge $nodeSelector ($gpu.nodeSelector | default dict) }}
{{- $tolerations = concat $tolerations ($gpu.tolerations | default list) }}
{{- $limits := $resources.limits | default dict }}
{{- $_ := set $limits $gpu.resourceName $gpu.count }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
serviceAccountName: {{ include "papo.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
{{- with $root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if and $gpu.enabled $gpu.runtimeClassName }}
runtimeClassName: {{ $gpu.runtimeClassName }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $c.podSecurityContext | nindent 2 }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ $c.name }}
    image: {{ include "papo.image" (list $root $c .track) | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    ports:
      - name: http
        containerPort: {{ $c.port }}
        protocol: TCP
    env:
      {{- include "papo.env" . | trim | nindent 6 }}
    {{- with $resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml $c.securityContext | nindent 6 }}
    {{- range $kind := list "startup" "liveness" "readiness" }}
    {{- $probe := get $c.probes $kind }}
    {{ $kind }}Probe:
      httpGet:
        path: {{ $probe.path }}
        port: http
      periodSeconds: {{ $probe.periodSeconds }}
      timeoutSeconds: {{ $probe.timeoutSeconds }}
      failureThreshold: {{ $probe.failureThreshold }}
    {{- end }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- with $c.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $c.tmpSizeLimit }}
  {{- with $c.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
The container's environment: what the chart owns (track, port, pod identity for traces), the plain settings
(empty values left out), the secrets by reference, then extraEnv.
*/}}
{{- define "papo.env" -}}
{{- $root := .root }}
{{- $c := .c }}
{{- $env := deepCopy ($c.env | default dict) }}
{{- if eq .track "canary" }}
{{- include "papo.deepMerge" (list $env ($c.canary.env | default dict)) }}
{{- end }}
- name: PAPO_SERVICE_TRACK
  value: {{ .track }}
- name: {{ $c.portEnv }}
  value: {{ $c.port | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_RESOURCE_ATTRIBUTES
  value: k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),deployment.environment={{ $env.PAPO_ENVIRONMENT | default "production" }}
{{- range $key := keys $env | sortAlpha }}
{{- $value := get $env $key }}
{{- if ne (toString $value) "" }}
- name: {{ $key }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- range $var := $c.secretEnv }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ include "papo.secretName" $root }}
      key: {{ get $root.Values.secrets.keys $var }}
      {{- if has $var ($root.Values.secrets.optional | default list) }}
      optional: true
      {{- end }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
