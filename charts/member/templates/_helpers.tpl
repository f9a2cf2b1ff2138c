{{- define "member.labels" -}}
app.kubernetes.io/name: balancing-member
app.kubernetes.io/instance: {{ .Release.Name }}
balancing.elf.io/member-cluster: {{ .Values.clusterName }}
{{- end -}}

{{- define "member.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
