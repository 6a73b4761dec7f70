{{/* Every workload: the four services, and ml-service — once per model
version in the SpinKube mode (the static canary's subsets), once in the
runtime-host mode (Flagger makes the primary and canary copies). */}}
{{- define "daytrade.workloads" -}}
{{- $out := list -}}
{{- range $name, $svc := .Values.services -}}
{{- $out = append $out (dict "name" $name "component" $name "version" "v1" "replicas" $svc.replicas "resources" $svc.resources "config" $svc.config "secrets" $svc.secrets "literal" dict "host" dict) -}}
{{- end -}}
{{- if eq .Values.mode "runtime-host" -}}
{{- $r := .Values.ml.rollout -}}
{{- $out = append $out (dict "name" "ml-service" "component" "ml-service" "version" $r.modelVersion "replicas" $r.replicas "resources" $.Values.ml.resources "config" $.Values.ml.config "secrets" list "literal" (dict "ml_model_version" $r.modelVersion) "host" (dict "RUNTIME_HOST_MAX_INSTANCE_REUSE_COUNT" (toString $r.maxInstanceReuseCount))) -}}
{{- else -}}
{{- range $version, $v := .Values.ml.versions -}}
{{- $out = append $out (dict "name" (printf "ml-service-%s" $version) "component" "ml-service" "version" $version "replicas" $v.replicas "resources" $.Values.ml.resources "config" $.Values.ml.config "secrets" list "literal" (dict "ml_model_version" $version) "host" dict) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Service URLs through the cluster, for the ConfigMap. */}}
{{- define "daytrade.serviceUrls" -}}
{{- range $id := list "data" "symbol" "ml" "execution" "notification" }}
{{ $id }}_service_url: "http://{{ $id }}-service.{{ $.Values.namespace }}.svc.cluster.local"
{{- end }}
{{- end -}}

{{/* The four services and ml-service: the Services and identities. */}}
{{- define "daytrade.components" -}}
{{- toJson (append (keys .Values.services | sortAlpha) "ml-service" | sortAlpha) -}}
{{- end -}}
