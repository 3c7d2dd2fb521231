{{- define "papo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "papo.fullname" -}}
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

{{- define "papo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. Never used as a selector: they change between releases. */}}
{{- define "papo.labels" -}}
helm.sh/chart: {{ include "papo.chart" . }}
{{ include "papo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: papo
{{- end }}

{{/* Stable across upgrades: what selectors use. */}}
{{- define "papo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "papo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "papo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "papo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "papo.secretName" -}}
{{- default (include "papo.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Deep-merges the map `src` into the map `dst` in place: nested maps merge, anything else in `src` replaces
`dst`'s. Unlike sprig's merge/mergeOverwrite, a `false`, `0` or empty value in `src` still wins.
Call: include "papo.deepMerge" (list $dst $src)
*/}}
{{- define "papo.deepMerge" -}}
{{- $dst := index . 0 }}
{{- $src := index . 1 }}
{{- range $key, $value := $src }}
{{- if and (kindIs "map" $value) (kindIs "map" (get $dst $key)) }}
{{- include "papo.deepMerge" (list (get $dst $key) $value) }}
{{- else }}
{{- $_ := set $dst $key (deepCopy (list $value) | first) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A component's values: `defaults` with the component's own laid over them, plus `name`. Returned as YAML.
Call: include "papo.componentValues" (list $ "ingest")
*/}}
{{- define "papo.componentValues" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- $merged := deepCopy $root.Values.defaults }}
{{- include "papo.deepMerge" (list $merged (index $root.Values.components $name)) }}
{{- $_ := set $merged "name" $name }}
{{- toYaml $merged }}
{{- end }}

{{/* The image reference of a component's track. Call: include "papo.image" (list $ $component $track) */}}
{{- define "papo.image" -}}
{{- $root := index . 0 }}
{{- $c := index . 1 }}
{{- $track := index . 2 }}
{{- $image := $c.image | default dict }}
{{- if eq $track "canary" }}
{{- $image = $c.canary.image }}
{{- end }}
{{- $repository := $image.repository | default ($c.image | default dict).repository | default (printf "%s/%s%s" $root.Values.image.registry $root.Values.image.repositoryPrefix $c.name) }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository ($image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion) }}
{{- end }}
{{- end }}
