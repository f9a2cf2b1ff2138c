{{- define "hub.labels" -}}
app.kubernetes.io/name: balancing-hub
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The project image: image.repository and image.tag, the tag defaulting to the chart's appVersion. */}}
{{- define "balancing.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
What one member needs on the hub, and all it may do there. The only definition: the chart renders it
for each of .Values.members, and `balancing hub add-member NAME` renders it for NAME (helm template
--show-only templates/members.yaml) and creates whatever is missing.
Arguments: (dict "name" MEMBER "root" $).
*/}}
{{- define "hub.member" -}}
{{- $name := .name }}
{{- $labels := printf "{balancing.elf.io/member-cluster: %s, app.kubernetes.io/name: balancing-hub}" $name }}
apiVersion: v1
kind: Namespace
metadata:
  name: {{ $name }}
  labels: {{ $labels }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: member
  namespace: {{ $name }}
  labels: {{ $labels }}
---
# Its own namespace: its registration and heartbeat, exports, endpoints, tunnel endpoints.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .root.Release.Name }}-member
  namespace: {{ $name }}
  labels: {{ $labels }}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {{ .root.Release.Name }}-member}
subjects:
  - {kind: ServiceAccount, name: member, namespace: {{ $name }}}
---
# The catalogue: read what every member imports.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .root.Release.Name }}-member-{{ $name }}
  namespace: {{ .root.Values.catalogueNamespace }}
  labels: {{ $labels }}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {{ .root.Release.Name }}-member-catalogue}
subjects:
  - {kind: ServiceAccount, name: member, namespace: {{ $name }}}
---
# The hub's policies (cluster-scoped): read.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .root.Release.Name }}-member-{{ $name }}
  labels: {{ $labels }}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {{ .root.Release.Name }}-member-policies}
subjects:
  - {kind: ServiceAccount, name: member, namespace: {{ $name }}}
{{- end -}}
