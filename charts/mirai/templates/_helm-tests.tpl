{{/*
One `helm test` Pod: dict "root" $ "name" n "what" description "env" {NAME: value} "script" sh.
Outside the mesh (no sidecar, which would keep the Pod running), Pod Security "restricted".
*/}}
{{- define "mirai.testPod" -}}
{{- $root := .root -}}
{{- $t := $root.Values.tests -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "mirai.fullname" $root }}-test-{{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "mirai.labels" $root | nindent 4 }}
    app.kubernetes.io/component: test
    sidecar.istio.io/inject: "false"
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation
    # {{ .what }}. It runs once to completion: nothing to probe.
    checkov.io/skip1: CKV_K8S_8=a test Pod runs to completion and serves nothing
    checkov.io/skip2: CKV_K8S_9=a test Pod runs to completion and serves nothing
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "mirai.fullname" $root }}-tests
  automountServiceAccountToken: false
  securityContext:
    {{- include "mirai.podSecurityContext" $root | nindent 4 }}
  containers:
    - name: test
      image: {{ $t.image }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: [sh, -ec]
      args:
        - |
          {{- .script | nindent 10 }}
      env:
        {{- range $k, $v := .env }}
        - {name: {{ $k }}, value: {{ $v | quote }}}
        {{- end }}
      resources:
        {{- toYaml $t.resources | nindent 8 }}
      securityContext:
        {{- include "mirai.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - {name: tmp, mountPath: /tmp}
  volumes:
    - name: tmp
      emptyDir: {sizeLimit: 16Mi}
{{- end -}}

{{/* Where the API tests send requests, as env: BASE (URL) and CURL_ARGS. */}}
{{- define "mirai.testTarget" -}}
{{- $root := . -}}
{{- $t := $root.Values.tests -}}
{{- $services := include "mirai.services" $root | fromYaml -}}
{{- $gw := get $services "gateway" -}}
{{- if $gw.meshOn -}}
{{- $host := first $root.Values.mesh.ingress.hosts -}}
BASE: https://{{ $host }}
CURL_ARGS: "--connect-to {{ $host }}:443:{{ $t.ingress.service }}:{{ $t.ingress.port }}{{ if $t.insecureTls }} --insecure{{ end }}"
{{- else -}}
BASE: http://{{ include "mirai.host" (dict "root" $root "svc" $gw) }}:{{ $gw.mainPort }}
CURL_ARGS: ""
{{- end -}}
{{- end -}}
