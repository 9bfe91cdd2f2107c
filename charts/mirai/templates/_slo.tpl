{{/*
SLO rule groups (Prometheus rule-file format), shared by the Rules (Managed Prometheus) and
PrometheusRule (prometheus-operator) templates, and extracted by scripts/validate-k8s for
`promtool check rules` and `promtool test rules` (charts/mirai/tests/slo-rules.test.yaml).

Two SLIs per service, each as an error ratio (bad / all) recorded over the five windows the
multiwindow, multi-burn-rate alerts of the SRE workbook (chapter 5) need:
  - availability: calls that ended in a server-side error (gRPC Unknown, DeadlineExceeded,
    Unimplemented, Internal, Unavailable, DataLoss; HTTP 5xx at the gateway);
  - latency: calls slower than slo.latency.thresholdSeconds (a histogram bucket boundary).
Health checks and reflection are left out. Alerts, with budget = 1 - objective:
  - page:   burn > 14.4 x budget over 1h and 5m, or > 6 x budget over 6h and 30m
  - ticket: burn > 1 x budget over 3d and 6h
With no traffic a ratio is NaN, which compares false: silence, not an alert.
*/}}
{{- define "mirai.sloWindows" -}}5m 30m 1h 6h 3d{{- end -}}

{{- define "mirai.sloGroups" -}}
{{- $root := . -}}
{{- $services := include "mirai.services" . | fromYaml -}}
{{- $alertLabels := .Values.monitoring.rules.alertLabels | default dict -}}
groups:
{{- range $name, $svc := $services }}
{{- $job := $svc.fullname }}
{{- $avail := float64 $svc.slo.availability }}
{{- $lat := float64 $svc.slo.latency.objective }}
{{- $availBudget := round (divf (subf 100.0 $avail) 100.0) 8 }}
{{- $latBudget := round (divf (subf 100.0 $lat) 100.0) 8 }}
{{- $le := printf "%v" $svc.slo.latency.thresholdSeconds }}
{{- $total := "" }}{{- $errors := "" }}{{- $fast := "" }}{{- $count := "" }}
{{- if eq $svc.kind "http" }}
{{- $total = printf "mirai_http_server_requests_total{job=%q}" $job }}
{{- $errors = printf "mirai_http_server_requests_total{job=%q,status=~\"5..\"}" $job }}
{{- $fast = printf "mirai_http_server_request_duration_seconds_bucket{job=%q,le=%q}" $job $le }}
{{- $count = printf "mirai_http_server_request_duration_seconds_count{job=%q}" $job }}
{{- else }}
{{- $sel := printf "job=%q,grpc_service!~\"grpc[.](health|reflection)[.].*\"" $job }}
{{- $total = printf "mirai_grpc_server_handled_total{%s}" $sel }}
{{- $errors = printf "mirai_grpc_server_handled_total{%s,grpc_code=~\"Unknown|DeadlineExceeded|Unimplemented|Internal|Unavailable|DataLoss\"}" $sel }}
{{- $fast = printf "mirai_grpc_server_handling_seconds_bucket{%s,le=%q}" $sel $le }}
{{- $count = printf "mirai_grpc_server_handling_seconds_count{%s}" $sel }}
{{- end }}
  - name: mirai-slo-{{ $name }}
    interval: 30s
    rules:
      {{- range $w := splitList " " (include "mirai.sloWindows" $root) }}
      - record: mirai:slo_errors:ratio_rate{{ $w }}
        expr: sum by (namespace) (rate({{ $errors }}[{{ $w }}])) / sum by (namespace) (rate({{ $total }}[{{ $w }}]))
        labels: {service: {{ $name }}, slo: availability}
      - record: mirai:slo_errors:ratio_rate{{ $w }}
        expr: 1 - sum by (namespace) (rate({{ $fast }}[{{ $w }}])) / sum by (namespace) (rate({{ $count }}[{{ $w }}]))
        labels: {service: {{ $name }}, slo: latency}
      {{- end }}
      {{- range $slo := list "availability" "latency" }}
      {{- $budget := ternary $availBudget $latBudget (eq $slo "availability") }}
      {{- $objective := ternary $avail $lat (eq $slo "availability") }}
      {{- $m := printf "{service=%q,slo=%q}" $name $slo }}
      - alert: MiraiErrorBudgetBurnFast
        expr: |
          (
            mirai:slo_errors:ratio_rate1h{{ $m }} > {{ round (mulf 14.4 $budget) 8 }}
            and
            mirai:slo_errors:ratio_rate5m{{ $m }} > {{ round (mulf 14.4 $budget) 8 }}
          )
          or
          (
            mirai:slo_errors:ratio_rate6h{{ $m }} > {{ round (mulf 6.0 $budget) 8 }}
            and
            mirai:slo_errors:ratio_rate30m{{ $m }} > {{ round (mulf 6.0 $budget) 8 }}
          )
        labels:
          {{- with $alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
          severity: page
          service: {{ $name }}
          slo: {{ $slo }}
        annotations:
          summary: "{{ $name }} is burning its {{ $slo }} error budget fast"
          description: "{{ $name }} {{ $slo }} SLO {{ $objective }}%: at this rate the 30-day error budget is gone within days (burn above 14.4x over 1h and 5m, or 6x over 6h and 30m)."
      - alert: MiraiErrorBudgetBurnSlow
        expr: |
          mirai:slo_errors:ratio_rate3d{{ $m }} > {{ $budget }}
          and
          mirai:slo_errors:ratio_rate6h{{ $m }} > {{ $budget }}
        labels:
          {{- with $alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
          severity: ticket
          service: {{ $name }}
          slo: {{ $slo }}
        annotations:
          summary: "{{ $name }} is spending its {{ $slo }} error budget faster than it accrues"
          description: "{{ $name }} {{ $slo }} SLO {{ $objective }}%: the error ratio is above the budget of {{ $budget }} over 3d and 6h."
      {{- end }}
{{- end }}
{{- end -}}
