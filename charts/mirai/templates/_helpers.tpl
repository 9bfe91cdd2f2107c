{{/*
Helpers shared by every template. Each kind has one template that loops over the merged
services map from "mirai.services"; nothing here emits a resource.
*/}}

{{- define "mirai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>" when it already contains the chart name (the usual "mirai"), else "<release>-<chart>". */}}
{{- define "mirai.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "mirai.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mirai.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object (mirai.labels = these + the instance). */}}
{{- define "mirai.commonLabels" -}}
helm.sh/chart: {{ include "mirai.chart" . }}
app.kubernetes.io/part-of: {{ include "mirai.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mirai.labels" -}}
{{ include "mirai.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one service's objects: dict "root" $ "svc" $svc ["component" c] */}}
{{- define "mirai.serviceLabels" -}}
{{ include "mirai.commonLabels" .root }}
{{ include "mirai.selectorLabels" . }}
app.kubernetes.io/version: {{ .svc.imageTag | quote }}
app.kubernetes.io/component: {{ .component | default .svc.kind }}
{{- end -}}

{{/* What selects a service's pods (stable and canary alike). */}}
{{- define "mirai.selectorLabels" -}}
app.kubernetes.io/name: {{ .svc.name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/*
Deep merge of two maps: "over" wins, maps merge recursively, lists and scalars replace, and an
explicit null removes the key. (Sprig's merge/mergeOverwrite treat false and 0 as "empty" and
would silently ignore `enabled: false` in a service.) Returns YAML: use with fromYaml.
*/}}
{{- define "mirai.deepMerge" -}}
{{- $out := deepCopy .base -}}
{{- range $key, $value := .over -}}
{{- if kindIs "invalid" $value -}}
{{- $_ := unset $out $key -}}
{{- else if and (kindIs "map" $value) (kindIs "map" (get $out $key)) -}}
{{- $_ := set $out $key (include "mirai.deepMerge" (dict "base" (get $out $key) "over" $value) | fromYaml) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
The enabled services, each merged over .Values.defaults and completed with derived fields:
name, fullname, binary, image, imageTag, serviceAccount, hookServiceAccount, gcpServiceAccount,
meshOn, mainPort, mainPortName, callers (services that list this one in `upstreams`).
Returns YAML: use with fromYaml.
*/}}
{{- define "mirai.services" -}}
{{- $root := . -}}
{{- $fullname := include "mirai.fullname" . -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- $out := dict -}}
{{- range $name, $cfg := .Values.services -}}
{{- $svc := include "mirai.deepMerge" (dict "base" $root.Values.defaults "over" $cfg) | fromYaml -}}
{{- if $svc.enabled -}}
{{- $_ := set $svc "name" $name -}}
{{- $_ := set $svc "fullname" (printf "%s-%s" $fullname $name) -}}
{{- $_ := set $svc "binary" (printf "mirai-%s" $name) -}}
{{- $svcTag := $svc.imageTag | default $tag | toString -}}
{{- $_ := set $svc "imageTag" $svcTag -}}
{{- $_ := set $svc "image" (include "mirai.imageRef" (dict "root" $root "name" $name "tag" $svcTag "noDigest" (ne $svcTag $tag))) -}}
{{- if $svc.canary.enabled -}}
{{- $_ := set $svc "canaryImage" (include "mirai.imageRef" (dict "root" $root "name" $name "tag" (required (printf "services.%s.canary.tag is required when the canary is enabled" $name) $svc.canary.tag) "noDigest" true)) -}}
{{- end -}}
{{- $_ := set $svc "serviceAccount" (printf "%s-%s" $fullname $name) -}}
{{- $_ := set $svc "hookServiceAccount" (printf "%s-%s-hooks" $fullname $name) -}}
{{- $gsa := $svc.gcpServiceAccount -}}
{{- if and (not $gsa) $root.Values.gcp.projectId -}}
{{- $gsa = printf "%s%s@%s.iam.gserviceaccount.com" $root.Values.gcp.workloadIdentity.serviceAccountPrefix $name $root.Values.gcp.projectId -}}
{{- end -}}
{{- $_ := set $svc "gcpServiceAccount" $gsa -}}
{{- $_ := set $svc "meshOn" (and $root.Values.mesh.enabled $svc.mesh.enabled) -}}
{{- if eq $svc.kind "http" -}}
{{- $_ := set $svc "mainPortName" "http" -}}
{{- $_ := set $svc "mainPort" $svc.ports.http -}}
{{- else -}}
{{- $_ := set $svc "mainPortName" "grpc" -}}
{{- $_ := set $svc "mainPort" $svc.ports.grpc -}}
{{- end -}}
{{- $callers := list -}}
{{- range $other, $ocfg := $root.Values.services -}}
{{- $oenabled := true -}}
{{- if hasKey $ocfg "enabled" -}}{{- $oenabled = $ocfg.enabled -}}{{- end -}}
{{- if and $oenabled (has $name ($ocfg.upstreams | default list)) -}}
{{- $callers = append $callers $other -}}
{{- end -}}
{{- end -}}
{{- $_ := set $svc "callers" $callers -}}
{{- $_ := set $out $name $svc -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Image reference of mirai-<name>: dict "root" $ "name" name "tag" tag ["noDigest" true] */}}
{{- define "mirai.imageRef" -}}
{{- $image := .root.Values.image -}}
{{- $repo := printf "mirai-%s" .name -}}
{{- if $image.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" $image.registry) $repo -}}{{- end -}}
{{- if and $image.digest (not .noDigest) -}}
{{- printf "%s@%s" $repo $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo .tag -}}
{{- end -}}
{{- end -}}

{{/* Host name of a service inside the cluster: dict "root" $ "svc" $svc */}}
{{- define "mirai.host" -}}
{{- printf "%s.%s.svc.cluster.local" .svc.fullname .root.Release.Namespace -}}
{{- end -}}

{{/*
MIRAI_<UP>_URL of a caller: dict "root" $ "svc" $caller "up" name. The caller's client layer
(services/platform/src/grpc/client) balances over the endpoints the URL gives it:
  caller with the mesh  http://<fullname>-<up>.<ns>.svc.cluster.local:<port> (the ClusterIP
                        name: the sidecar balances per request and ejects bad pods)
  caller without it     dns:///<fullname>-<up>-headless.<ns>.svc.cluster.local:<port> (every
                        ready pod, re-resolved every 10 s: the client balances per call;
                        through the ClusterIP one HTTP/2 connection would pin every call to one pod)
An upstream of kind http has no headless Service and always gets the ClusterIP URL.
*/}}
{{- define "mirai.upstreamUrl" -}}
{{- $target := index .root.Values.services .up | default dict -}}
{{- $ports := $target.ports | default dict -}}
{{- $http := eq ($target.kind | default "grpc") "http" -}}
{{- $port := $ports.grpc -}}
{{- if $http -}}{{- $port = $ports.http -}}{{- end -}}
{{- $port = int (required (printf "services.%s.upstreams names %q, which has no %s port" .svc.name .up (ternary "http" "grpc" $http)) $port) -}}
{{- $host := printf "%s-%s" (include "mirai.fullname" .root) .up -}}
{{- if or .svc.meshOn $http -}}
{{- printf "http://%s.%s.svc.cluster.local:%d" $host .root.Release.Namespace $port -}}
{{- else -}}
{{- printf "dns:///%s-headless.%s.svc.cluster.local:%d" $host .root.Release.Namespace $port -}}
{{- end -}}
{{- end -}}

{{/* Mesh identity of a Kubernetes service account: dict "root" $ "namespace" ns "sa" name */}}
{{- define "mirai.principal" -}}
{{- printf "cluster.local/ns/%s/sa/%s" .namespace .sa -}}
{{- end -}}

{{/* The termination grace period: preStop + drain delay + grace + margin (seconds). */}}
{{- define "mirai.terminationGrace" -}}
{{- $s := .Values.shutdown -}}
{{- add (int $s.preStopSleepSeconds) (int $s.drainDelaySeconds) (int $s.graceSeconds) (int $s.marginSeconds) -}}
{{- end -}}

{{/* DATABASE_URL as an EnvVar: dict "root" $ "svc" $svc. Empty for services without a database. */}}
{{- define "mirai.databaseEnv" -}}
{{- $db := .root.Values.database -}}
{{- $svc := .svc -}}
{{- if $svc.database.name -}}
{{- if and (eq $db.mode "cloudSqlProxy") $db.cloudSqlProxy.iamAuthn -}}
{{- $user := trimSuffix ".gserviceaccount.com" (required (printf "gcp.projectId (or services.%s.gcpServiceAccount) is required for Cloud SQL IAM authentication" $svc.name) $svc.gcpServiceAccount) -}}
- name: DATABASE_URL
  value: {{ printf "postgres://%s@127.0.0.1:%d/%s?sslmode=disable" (urlquery $user) (int $db.cloudSqlProxy.port) $svc.database.name | quote }}
{{- else -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "services.%s.database.urlSecret.name is required (database.mode=%s without IAM authentication)" $svc.name $db.mode) $svc.database.urlSecret.name }}
      key: {{ $svc.database.urlSecret.key }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Environment of a service's main container: dict "root" $ "svc" $svc ["hook" true]. Hook Jobs
mount none of the service's files, so they get none of the variables pointing at them.
Computed variables first;
`env` (rendered with tpl) may override any of them, and a name in both env and secretEnv is an
error. Sorted by name, so a rendering is stable.
*/}}
{{- define "mirai.env" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $v := $root.Values -}}
{{- $plain := dict -}}
{{- if eq $svc.kind "http" -}}
{{- $_ := set $plain "MIRAI_HTTP_ADDR" (printf "0.0.0.0:%d" (int $svc.ports.http)) -}}
{{- range $up := $svc.upstreams -}}
{{- $_ := set $plain (printf "MIRAI_%s_URL" ($up | upper | replace "-" "_")) (include "mirai.upstreamUrl" (dict "root" $root "svc" $svc "up" $up)) -}}
{{- end -}}
{{- $_ := include "mirai.apiEnv" (dict "root" $root "plain" $plain) -}}
{{- else -}}
{{- $_ := set $plain "MIRAI_GRPC_ADDR" (printf "0.0.0.0:%d" (int $svc.ports.grpc)) -}}
{{- $_ := set $plain "GOOGLE_CLOUD_PROJECT" (required "gcp.projectId is required (GOOGLE_CLOUD_PROJECT of every service)" $v.gcp.projectId) -}}
{{- $_ := set $plain "MIRAI_PUBSUB_PREFIX" $v.pubsub.prefix -}}
{{- $_ := set $plain "MIRAI_PUBSUB_PROVISION" "false" -}}
{{- if $v.pubsub.emulatorHost -}}{{- $_ := set $plain "PUBSUB_EMULATOR_HOST" $v.pubsub.emulatorHost -}}{{- end -}}
{{- $_ := set $plain "MIRAI_DB_MAX_CONNECTIONS" (toString $v.database.maxConnections) -}}
{{- /* Email verification links point at the gateway's public confirmation route. */ -}}
{{- if and $v.api.publicUrl (eq $svc.binary "mirai-notification") -}}
{{- $_ := set $plain "MIRAI_EMAIL_VERIFICATION_URL" (printf "%s/v1/notification-email/confirm" (trimSuffix "/" $v.api.publicUrl)) -}}
{{- end -}}
{{- /* The emailed unlock link opens the frontend's page. */ -}}
{{- if and $v.api.unlockPageUrl (eq $svc.binary "mirai-user") -}}
{{- $_ := set $plain "MIRAI_UNLOCK_URL" $v.api.unlockPageUrl -}}
{{- end -}}
{{- range $up := $svc.upstreams -}}
{{- $_ := set $plain (printf "MIRAI_%s_URL" ($up | upper | replace "-" "_")) (include "mirai.upstreamUrl" (dict "root" $root "svc" $svc "up" $up)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $plain "MIRAI_ADMIN_ADDR" (printf "0.0.0.0:%d" (int $svc.ports.admin)) -}}
{{- /* Production refuses test-only machinery (fault injection) at startup; a chaos environment
sets MIRAI_PROFILE=development in a service's env. */ -}}
{{- $_ := set $plain "MIRAI_PROFILE" "production" -}}
{{- $_ := set $plain "MIRAI_SHUTDOWN_DRAIN_DELAY" (printf "%ds" (int $v.shutdown.drainDelaySeconds)) -}}
{{- $_ := set $plain "MIRAI_SHUTDOWN_GRACE" (printf "%ds" (int $v.shutdown.graceSeconds)) -}}
{{- $_ := set $plain "RUST_LOG" $v.telemetry.rustLog -}}
{{- $_ := set $plain "MIRAI_LOG_FORMAT" $v.telemetry.logFormat -}}
{{- $_ := set $plain "OTEL_SERVICE_NAME" $svc.binary -}}
{{- with include "mirai.otlpEndpoint" $root -}}{{- $_ := set $plain "OTEL_EXPORTER_OTLP_ENDPOINT" . -}}{{- end -}}
{{- $files := $svc.files | default dict -}}
{{- if .hook -}}{{- $files = dict -}}{{- end -}}
{{- range $fname, $file := $files -}}
{{- $dir := $file.mountPath | default (printf "/var/run/secrets/mirai/%s" $fname) -}}
{{- if $file.dirEnv -}}{{- $_ := set $plain $file.dirEnv $dir -}}{{- end -}}
{{- range $var, $path := $file.fileEnv -}}{{- $_ := set $plain $var (printf "%s/%s" $dir $path) -}}{{- end -}}
{{- end -}}
{{- range $key, $value := $svc.env -}}
{{- if hasKey ($svc.secretEnv | default dict) $key -}}
{{- fail (printf "services.%s: %s is both in env and secretEnv" $svc.name $key) -}}
{{- end -}}
{{- $_ := set $plain $key (tpl (toString $value) $root) -}}
{{- end -}}
{{- if and $svc.database.name (hasKey $plain "DATABASE_URL") -}}
{{- fail (printf "services.%s: DATABASE_URL comes from the database settings, not env" $svc.name) -}}
{{- end -}}
{{- range $key := keys $plain | sortAlpha }}
- name: {{ $key }}
  value: {{ get $plain $key | quote }}
{{- end }}
{{- with include "mirai.databaseEnv" . }}{{ . | nindent 0 }}{{ end }}
{{- range $key := keys ($svc.secretEnv | default dict) | sortAlpha }}
{{- $ref := get $svc.secretEnv $key }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName }}
      key: {{ $ref.key }}
{{- end }}
{{- include "mirai.apiSecretEnv" . }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{/* Pod-level security context: Pod Security Standard "restricted". */}}
{{- define "mirai.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context: Pod Security Standard "restricted". */}}
{{- define "mirai.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The Cloud SQL Auth Proxy as a native sidecar (an init container that keeps running). */}}
{{- define "mirai.cloudSqlProxy" -}}
{{- $p := .root.Values.database.cloudSqlProxy -}}
- name: cloud-sql-proxy
  image: {{ $p.image }}
  imagePullPolicy: IfNotPresent
  restartPolicy: Always
  args:
    - --structured-logs
    - --port={{ int $p.port }}
    - --health-check
    - --http-address=0.0.0.0
    - --http-port={{ int $p.healthPort }}
    # Exit 0 on SIGTERM, so a hook Job whose main container finished still succeeds.
    - --exit-zero-on-sigterm
    {{- if $p.iamAuthn }}
    - --auto-iam-authn
    {{- end }}
    {{- if $p.privateIp }}
    - --private-ip
    {{- end }}
    - {{ required "database.cloudSqlProxy.instanceConnectionName is required with database.mode=cloudSqlProxy" $p.instanceConnectionName | quote }}
  ports:
    - name: sql-health
      containerPort: {{ int $p.healthPort }}
      protocol: TCP
  # Later containers start only after this probe passes: the app never sees a missing proxy.
  startupProbe:
    httpGet: {path: /startup, port: sql-health}
    periodSeconds: 1
    failureThreshold: 30
    timeoutSeconds: 2
  livenessProbe:
    httpGet: {path: /liveness, port: sql-health}
    # The proxy refreshes its certificate five minutes before expiry; six failed minutes means
    # it cannot.
    periodSeconds: 60
    failureThreshold: 6
    timeoutSeconds: 10
  readinessProbe:
    httpGet: {path: /readiness, port: sql-health}
    periodSeconds: 10
    failureThreshold: 3
    timeoutSeconds: 5
  resources:
    {{- toYaml $p.resources | nindent 4 }}
  securityContext:
    {{- include "mirai.containerSecurityContext" . | nindent 4 }}
{{- end -}}

{{/* Whether a service's pods run the Cloud SQL proxy: dict "root" $ "svc" $svc → "true" or "" */}}
{{- define "mirai.usesProxy" -}}
{{- if and .svc.database.name (eq .root.Values.database.mode "cloudSqlProxy") -}}true{{- end -}}
{{- end -}}

{{/* Volumes of a service (tmp + files): dict "root" $ "svc" $svc */}}
{{- define "mirai.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- range $fname, $file := .svc.files }}
- name: files-{{ $fname }}
{{- if and $file.csi $file.secretName }}
{{- fail (printf "services.%s.files.%s: set secretName or csi, not both (secretName: null drops a default)" $.svc.name $fname) }}
{{- end }}
{{- if $file.csi }}
  csi:
    driver: {{ $.root.Values.secretsStore.driver }}
    readOnly: true
    volumeAttributes:
      secretProviderClass: {{ printf "%s-%s" $.svc.fullname $fname }}
{{- else }}
  secret:
    secretName: {{ required (printf "services.%s.files.%s needs secretName or csi" $.svc.name $fname) $file.secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- include "mirai.apiVolumes" . }}
{{- end -}}

{{- define "mirai.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- range $fname, $file := .svc.files }}
- name: files-{{ $fname }}
  mountPath: {{ $file.mountPath | default (printf "/var/run/secrets/mirai/%s" $fname) }}
  readOnly: true
{{- end }}
{{- include "mirai.apiVolumeMounts" . }}
{{- end -}}

{{/*
Pod annotations (the service's podAnnotations plus the mesh's): dict "root" $ "svc" $svc. YAML. Native sidecars make istio-proxy start
before the Cloud SQL proxy (both are init containers then) so the proxy's first calls to the
Cloud SQL Admin API and the metadata server already go through the mesh.
*/}}
{{- define "mirai.meshPodAnnotations" -}}
{{- $out := dict -}}
{{- if .svc.meshOn -}}
{{- if and .root.Values.mesh.nativeSidecars (include "mirai.usesProxy" .) -}}
{{- $_ := set $out "sidecar.istio.io/nativeSidecar" "true" -}}
{{- end -}}
{{- $_ := set $out "proxy.istio.io/config" "{\"holdApplicationUntilProxyStarts\": true}" -}}
{{- end -}}
{{- toYaml (merge $out (.svc.podAnnotations | default dict)) -}}
{{- end -}}

{{/*
NetworkPolicy egress rules to Google: APIs on 443, the metadata server (Workload Identity), and
the database (Cloud SQL on 3307 through the proxy, or the direct database CIDRs).
dict "root" $ "svc" $svc
*/}}
{{- define "mirai.googleEgress" -}}
{{- $np := .root.Values.networkPolicy -}}
# Google APIs (Pub/Sub, Cloud SQL Admin, Secret Manager, Trace).
- to:
    {{- range $cidr := $np.googleApisCidrs }}
    - ipBlock: {cidr: {{ $cidr | quote }}}
    {{- end }}
  ports:
    - {port: 443, protocol: TCP}
# GKE metadata server (Workload Identity tokens).
- to:
    {{- range $cidr := $np.metadataServerCidrs }}
    - ipBlock: {cidr: {{ $cidr | quote }}}
    {{- end }}
  ports:
    {{- range $port := $np.metadataServerPorts }}
    - {port: {{ int $port }}, protocol: TCP}
    {{- end }}
{{- if .svc.database.name }}
{{- if eq .root.Values.database.mode "cloudSqlProxy" }}
# Cloud SQL instances (the Auth Proxy's server side).
- to:
    {{- range $cidr := $np.cloudSqlCidrs }}
    - ipBlock: {cidr: {{ $cidr | quote }}}
    {{- end }}
  ports:
    - {port: 3307, protocol: TCP}
{{- else if $np.directDatabase.cidrs }}
# PostgreSQL (database.mode=direct).
- to:
    {{- range $cidr := $np.directDatabase.cidrs }}
    - ipBlock: {cidr: {{ $cidr | quote }}}
    {{- end }}
  ports:
    - {port: {{ int $np.directDatabase.port }}, protocol: TCP}
{{- end }}
{{- end }}
{{- end -}}

{{/* Weighted destinations of a VirtualService route: dict "root" $ "svc" $svc */}}
{{- define "mirai.meshRoute" -}}
{{- $host := include "mirai.host" . -}}
{{- $canary := 0 -}}
{{- if .svc.canary.enabled }}{{- $canary = int .svc.canary.weight -}}{{- end }}
- destination:
    host: {{ $host }}
    subset: stable
    port: {number: {{ int .svc.mainPort }}}
  weight: {{ sub 100 $canary }}
{{- if .svc.canary.enabled }}
- destination:
    host: {{ $host }}
    subset: canary
    port: {number: {{ int .svc.mainPort }}}
  weight: {{ $canary }}
{{- end }}
{{- end -}}

{{/*
The retries of one VirtualService route: dict "retries" $svc.mesh.retries "route" name.
`{attempts: 0}` unless the route is in retries.routes and attempts > 0 (an empty perTryTimeout
is left out: each try is then bounded by the route timeout alone).
*/}}
{{- define "mirai.meshRetries" -}}
{{- $r := .retries -}}
{{- if and (has .route ($r.routes | default list)) (gt (int $r.attempts) 0) -}}
retries:
  attempts: {{ int $r.attempts }}
  {{- if $r.perTryTimeout }}
  perTryTimeout: {{ $r.perTryTimeout }}
  {{- end }}
  retryOn: {{ required "mesh.retries.retryOn is required when attempts > 0" $r.retryOn | quote }}
{{- else -}}
retries: {attempts: 0}
{{- end -}}
{{- end -}}

{{/* A Pub/Sub name as a Kubernetes object name (dots are fine; lower case, at most 253). */}}
{{- define "mirai.kccName" -}}
{{- . | lower | replace "_" "-" | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{/* A YAML flow list of quoted strings: ["a", "b"] */}}
{{- define "mirai.flowList" -}}
[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ $e | quote }}{{ end }}]
{{- end -}}

{{/* The OpenTelemetry collector of telemetry.collector (templates/otel-collector.yaml). */}}
{{- define "mirai.collectorName" -}}
{{- printf "%s-otel-collector" (include "mirai.fullname" .) -}}
{{- end -}}

{{- define "mirai.collectorSelectorLabels" -}}
app.kubernetes.io/name: otel-collector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mirai.collectorLabels" -}}
{{ include "mirai.commonLabels" . }}
{{ include "mirai.collectorSelectorLabels" . }}
app.kubernetes.io/component: telemetry
{{- end -}}

{{/* The collector's Google service account: telemetry.collector.gcpServiceAccount, or
"<prefix>otel-collector@<project>.iam.gserviceaccount.com". */}}
{{- define "mirai.collectorGcpServiceAccount" -}}
{{- $c := .Values.telemetry.collector -}}
{{- if $c.gcpServiceAccount -}}
{{- $c.gcpServiceAccount -}}
{{- else if .Values.gcp.projectId -}}
{{- printf "%sotel-collector@%s.iam.gserviceaccount.com" .Values.gcp.workloadIdentity.serviceAccountPrefix .Values.gcp.projectId -}}
{{- end -}}
{{- end -}}

{{/* Where the services send spans (OTEL_EXPORTER_OTLP_ENDPOINT): telemetry.otlpEndpoint, else
the chart's collector when enabled, else nothing (no export). */}}
{{- define "mirai.otlpEndpoint" -}}
{{- $t := .Values.telemetry -}}
{{- if $t.otlpEndpoint -}}
{{- $t.otlpEndpoint -}}
{{- else if $t.collector.enabled -}}
{{- printf "http://%s.%s.svc.cluster.local:4317" (include "mirai.collectorName" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Time partitioning of a warehouse table: days of publish_time (docs/warehouse.md). */}}
{{- define "mirai.warehouse.partitioning" -}}
{{- $w := .Values.warehouse -}}
timePartitioning:
  type: DAY
  field: publish_time
  {{- if gt (int $w.partitionExpirationDays) 0 }}
  expirationMs: {{ mul (int $w.partitionExpirationDays) 86400000 }}
  {{- end }}
  {{- if $w.requirePartitionFilter }}
  requirePartitionFilter: true
  {{- end }}
{{- end -}}
