{{- define "probe.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The container of every workload: probe.py with its pod's identity in the environment. */}}
{{- define "probe.container" -}}
- name: probe
  image: {{ include "probe.image" .root }}
  command: ["python3", "/etc/workload-probe/probe.py"]
  env:
    - {name: RELEASE, value: {{ .root.Release.Name | quote }}}
    - {name: PORT, value: {{ .port | quote }}}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: HOST_IP
      valueFrom: {fieldRef: {fieldPath: status.hostIP}}
  ports:
    - {name: http, containerPort: {{ .port }}}
  readinessProbe:
    httpGet: {path: /healthz, port: http}
    periodSeconds: 1
  volumeMounts:
    - {name: probe, mountPath: /etc/workload-probe}
  {{- if .node }}
    - {name: bpffs, mountPath: /sys/fs/bpf}
    - {name: cgroup, mountPath: /sys/fs/cgroup}
    - {name: run, mountPath: /run/balancing}
    - {name: state, mountPath: /var/lib/balancing}
  securityContext: {privileged: true}
  {{- end }}
{{- end -}}
