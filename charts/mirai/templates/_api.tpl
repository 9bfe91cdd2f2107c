{{/*
What a browser frontend needs from the REST gateway (values `api`): its public base URL, the
CORS origins, Redis shared by the replicas. mirai.apiEnv adds the plain variables to the
gateway's env dict (dict "root" $ "plain" $plain); mirai.apiSecretEnv renders MIRAI_REDIS_URL
from its Secret and, for TLS, MIRAI_REDIS_CA_CERT naming the CA that mirai.apiVolumes and
mirai.apiVolumeMounts mount from its Secret (dict "root" $ "svc" $svc).
*/}}
{{- define "mirai.apiEnv" -}}
{{- $api := .root.Values.api -}}
{{- if $api.publicUrl -}}{{- $_ := set .plain "MIRAI_PUBLIC_URL" $api.publicUrl -}}{{- end -}}
{{- if $api.corsOrigins -}}{{- $_ := set .plain "MIRAI_CORS_ORIGINS" (join "," $api.corsOrigins) -}}{{- end -}}
{{- if $api.redis.urlSecret.name -}}{{- $_ := set .plain "MIRAI_REDIS_PREFIX" $api.redis.prefix -}}{{- end -}}
{{- end -}}

{{- define "mirai.apiSecretEnv" -}}
{{- $redis := .root.Values.api.redis -}}
{{- if and (eq .svc.kind "http") $redis.urlSecret.name (not .hook) }}
- name: MIRAI_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $redis.urlSecret.name }}
      key: {{ $redis.urlSecret.key }}
{{- if $redis.caSecret.name }}
- name: MIRAI_REDIS_CA_CERT
  value: /var/run/secrets/mirai/redis-ca/{{ $redis.caSecret.key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "mirai.apiVolumes" -}}
{{- $redis := .root.Values.api.redis -}}
{{- if and (eq .svc.kind "http") $redis.urlSecret.name $redis.caSecret.name }}
- name: redis-ca
  secret:
    secretName: {{ $redis.caSecret.name }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "mirai.apiVolumeMounts" -}}
{{- $redis := .root.Values.api.redis -}}
{{- if and (eq .svc.kind "http") $redis.urlSecret.name $redis.caSecret.name }}
- name: redis-ca
  mountPath: /var/run/secrets/mirai/redis-ca
  readOnly: true
{{- end }}
{{- end -}}
