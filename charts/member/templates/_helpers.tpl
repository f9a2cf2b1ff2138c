{{- define "member.labels" -}}
app.kubernetes.io/name: balancing-member
app.kubernetes.io/instance: {{ .Release.Name }}
balancing.elf.io/member-cluster: {{ .Values.clusterName }}
{{- end -}}

{{/* The project image: image.repository and image.tag, the tag defaulting to the chart's appVersion. */}}
{{- define "balancing.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret holding the member's hub kubeconfig, when it joined a hub. */}}
{{- define "member.hubSecret" -}}
{{- if .Values.hub.existingSecret -}}{{ .Values.hub.existingSecret }}{{- else if .Values.hub.server -}}balancing-hub-credentials{{- end -}}
{{- end -}}
