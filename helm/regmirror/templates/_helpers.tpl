{{/*
Names, labels and the values computed from other values. Every template uses these, so a rule lives in one place.
*/}}

{{- define "regmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name; objects are named <fullname>[-suffix]. 52 characters leave room for suffixes. */}}
{{- define "regmirror.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "regmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regmirror.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "regmirror.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "regmirror.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Pods of the mirror itself (not Redis, not the node configuration). */}}
{{- define "regmirror.podSelectorLabels" -}}
{{ include "regmirror.selectorLabels" . }}
app.kubernetes.io/component: mirror
{{- end -}}

{{- define "regmirror.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "regmirror.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "regmirror.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the replicas need the peer settings: more than one, or cluster.enabled. */}}
{{- define "regmirror.clustered" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.cluster.enabled -}}true{{- end -}}
{{- end -}}

{{- define "regmirror.clusterSecretName" -}}
{{- default (printf "%s-cluster" (include "regmirror.fullname" .)) .Values.cluster.existingSecret -}}
{{- end -}}

{{- define "regmirror.peersUrl" -}}
{{- $svc := printf "%s-headless.%s.svc.%s" (include "regmirror.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- default (printf "http://%s:5000" $svc) .Values.cluster.peersUrl -}}
{{- end -}}

{{/* "emptyDir" or "volumeClaim": where /var/lib/regmirror lives. */}}
{{- define "regmirror.storage" -}}
{{- if and .Values.persistence.enabled (eq .Values.persistence.type "volumeClaim") -}}volumeClaim
{{- else if or (not .Values.persistence.enabled) (eq .Values.persistence.type "emptyDir") -}}emptyDir
{{- else -}}{{- fail (printf "persistence.type must be volumeClaim or emptyDir, not %q" .Values.persistence.type) -}}
{{- end -}}
{{- end -}}

{{/*
Bytes in a Kubernetes quantity ("50Gi", "500G", "1.5Ti", "1000000"), as a decimal number. Binary suffixes are
powers of 1024, decimal ones of 1000, as Kubernetes reads them. Anything else (millis, exponents) fails.
*/}}
{{- define "regmirror.quantityBytes" -}}
{{- $q := toString . | trim -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $q) -}}
{{- fail (printf "%q is not a storage size like 50Gi or 500G" $q) -}}
{{- end -}}
{{- $number := regexReplaceAll "[A-Za-z]+$" $q "" -}}
{{- $suffix := regexReplaceAll "^[0-9.]+" $q "" -}}
{{- $multipliers := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
{{- mulf $number (index $multipliers $suffix) -}}
{{- end -}}

{{/*
cache.maxSize for the configuration: the value given; else maxSizePercent of the volume (persistence.size for a
volume claim, persistence.sizeLimit for an emptyDir), in whole MiB, rounded down; else `auto`, which the mirror
resolves itself from the filesystem it runs on (an emptyDir without a limit: the node's disk).
*/}}
{{- define "regmirror.cacheMaxSize" -}}
{{- $volume := "" -}}
{{- if eq (include "regmirror.storage" .) "volumeClaim" -}}
{{- $volume = required "persistence.size is required for a volume claim" .Values.persistence.size -}}
{{- else -}}
{{- $volume = .Values.persistence.sizeLimit -}}
{{- end -}}
{{- if .Values.cache.maxSize -}}
{{- .Values.cache.maxSize -}}
{{- else if $volume -}}
{{- $percent := float64 .Values.cache.maxSizePercent -}}
{{- if or (le $percent 0.0) (gt $percent 100.0) -}}
{{- fail "cache.maxSizePercent must be above 0 and at most 100" -}}
{{- end -}}
{{- $mib := floor (divf (mulf (include "regmirror.quantityBytes" $volume) $percent) (mulf 100 1048576)) -}}
{{- if lt $mib 1.0 -}}
{{- fail (printf "the volume (%s) is too small for a cache: set cache.maxSize" $volume) -}}
{{- end -}}
{{- printf "%dMiB" (int64 $mib) -}}
{{- else -}}
auto
{{- end -}}
{{- end -}}

{{/* The directory name of an upstream's credentials files and its keys in Secrets: ':' is not allowed there. */}}
{{- define "regmirror.credentialsSlug" -}}
{{- . | lower | replace ":" "_" -}}
{{- end -}}

{{/*
Which files an upstream's credentials come from: a list of {upstream, entry, dir, kind (password|token), secret,
key} as JSON, for the Secret, the volume and the configuration. credentials is one mapping or a list of them
(several accounts of one registry); entry is the index in that list (0 for a mapping). Inline secrets go to the
chart's Secret <fullname>-credentials; existingSecret names the user's. Files: credentials/<dir>/<kind>, dir
<slug> for a mapping, <slug>/<entry> for a list.
*/}}
{{- define "regmirror.credentialFiles" -}}
{{- $files := list -}}
{{- $chartSecret := printf "%s-credentials" (include "regmirror.fullname" .) -}}
{{- range $i, $u := .Values.upstreams -}}
{{- $name := required (printf "upstreams[%d].name is required" $i) $u.name -}}
{{- if $u.credentials -}}
{{- $slug := include "regmirror.credentialsSlug" $name -}}
{{- $isList := kindIs "slice" $u.credentials -}}
{{- $entries := $u.credentials -}}
{{- if not $isList }}{{ $entries = list $u.credentials }}{{ end -}}
{{- range $j, $c := $entries -}}
{{- $at := ternary (printf "upstreams[%d] (%s) credentials[%d]" $i $name $j) (printf "upstreams[%d] (%s)" $i $name) $isList -}}
{{- $dir := ternary (printf "%s/%d" $slug $j) $slug $isList -}}
{{- if and $c.password $c.token -}}
{{- fail (printf "%s: credentials take a password or a token, not both" $at) -}}
{{- end -}}
{{- if $c.existingSecret -}}
{{- if or $c.password $c.token -}}
{{- fail (printf "%s: give the secret inline (password/token) or in existingSecret, not both" $at) -}}
{{- end -}}
{{- if and $c.passwordKey $c.tokenKey -}}
{{- fail (printf "%s: existingSecret takes passwordKey or tokenKey, not both" $at) -}}
{{- end -}}
{{- if not (or $c.passwordKey $c.tokenKey) -}}
{{- fail (printf "%s: existingSecret needs passwordKey or tokenKey" $at) -}}
{{- end -}}
{{- $kind := ternary "password" "token" (not (empty $c.passwordKey)) -}}
{{- $files = append $files (dict "upstream" $name "entry" $j "dir" $dir "kind" $kind "secret" $c.existingSecret "key" (default $c.tokenKey $c.passwordKey)) -}}
{{- else if or $c.password $c.token -}}
{{- $kind := ternary "password" "token" (not (empty $c.password)) -}}
{{- $key := printf "%s.%s" (replace "/" "." $dir) $kind -}}
{{- $files = append $files (dict "upstream" $name "entry" $j "dir" $dir "kind" $kind "secret" $chartSecret "key" $key "value" (default $c.token $c.password)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/*
The upstreams list of the configuration: the values' entries, each credential's secret replaced by the file it is
in (a list of credentials stays a list). A proxy URL with a password is refused: it would be in the ConfigMap.
*/}}
{{- define "regmirror.configUpstreams" -}}
{{- $files := include "regmirror.credentialFiles" . | fromJsonArray -}}
{{- $out := list -}}
{{- range $i, $u := .Values.upstreams -}}
{{- if regexMatch "://[^/]*@" (toString (default "" $u.proxy)) -}}
{{- fail (printf "upstreams[%d] (%s): a proxy with credentials would be written into the ConfigMap; set HTTPS_PROXY in extraEnv from a Secret instead" $i $u.name) -}}
{{- end -}}
{{- $entry := omit (deepCopy $u) "credentials" -}}
{{- if $u.credentials -}}
{{- $isList := kindIs "slice" $u.credentials -}}
{{- $entries := $u.credentials -}}
{{- if not $isList }}{{ $entries = list $u.credentials }}{{ end -}}
{{- $creds := list -}}
{{- range $j, $c := $entries -}}
{{- $one := omit (deepCopy $c) "password" "token" "existingSecret" "passwordKey" "tokenKey" -}}
{{- range $f := $files -}}
{{- if and (eq $f.upstream $u.name) (eq (int $f.entry) $j) -}}
{{- $_ := set $one (printf "%sFile" $f.kind) (printf "/etc/regmirror/credentials/%s/%s" $f.dir $f.kind) -}}
{{- end -}}
{{- end -}}
{{- $creds = append $creds $one -}}
{{- end -}}
{{- $_ := set $entry "credentials" (ternary $creds (first $creds) $isList) -}}
{{- end -}}
{{- $out = append $out $entry -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The mirror's configuration file (regmirror.yaml), as YAML. No secret is ever in it. */}}
{{- define "regmirror.config" -}}
{{- $config := dict
  "log" (dict "level" .Values.log.level)
  "defaultUpstream" .Values.defaultUpstream
  "wellKnownUpstreams" .Values.wellKnownUpstreams
  "cache" (dict "maxSize" (include "regmirror.cacheMaxSize" .) "pins" (deepCopy .Values.cache.pins))
  "offline" (dict "enabled" .Values.offline.enabled)
  "timeouts" (dict "shutdown" (printf "%ds" (int .Values.shutdownTimeoutSeconds)))
-}}
{{- if .Values.upstreams -}}
{{- $_ := set $config "upstreams" (include "regmirror.configUpstreams" . | fromJsonArray) -}}
{{- end -}}
{{- if .Values.tagTtl -}}
{{- $_ := set $config "tagTtl" .Values.tagTtl -}}
{{- end -}}
{{- $auth := dict -}}
{{- if .Values.auth.anonymous.cidrs -}}
{{- $_ := set $auth "anonymous" (dict "cidrs" (deepCopy .Values.auth.anonymous.cidrs)) -}}
{{- end -}}
{{- if .Values.auth.rules -}}
{{- $_ := set $auth "rules" (deepCopy .Values.auth.rules) -}}
{{- end -}}
{{- if $auth -}}
{{- $_ := set $config "auth" $auth -}}
{{- end -}}
{{- include "regmirror.mergeInto" (list $config (deepCopy .Values.extraConfig)) -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Merges the map (index . 1) into the map (index . 0): maps key by key, anything else replaced, a null removing the
key. Not sprig's mergeOverwrite, which skips false, 0 and "" (extraConfig {wellKnownUpstreams: false} must work).
*/}}
{{- define "regmirror.mergeInto" -}}
{{- $dst := index . 0 -}}
{{- range $k, $v := index . 1 -}}
{{- if kindIs "invalid" $v -}}
{{- $_ := unset $dst $k -}}
{{- else if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- include "regmirror.mergeInto" (list (get $dst $k) $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Redis URL without its password, or "" when there is no Redis. */}}
{{- define "regmirror.redisUrl" -}}
{{- if .Values.redis.bundled.enabled -}}
{{- printf "redis://%s-redis.%s.svc.%s:6379" (include "regmirror.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- else -}}
{{- .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key holding the Redis password, as "name key", or "" when there is none. */}}
{{- define "regmirror.redisPasswordRef" -}}
{{- if .Values.redis.existingSecret -}}
{{- printf "%s %s" .Values.redis.existingSecret .Values.redis.existingSecretPasswordKey -}}
{{- else if or .Values.redis.bundled.enabled .Values.redis.password -}}
{{- printf "%s-redis redis-password" (include "regmirror.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
A password for a generated Secret: the one already in the cluster (so an upgrade keeps it), else a new random
one. Called with (list $ secretName key); returns it base64-encoded, ready for `data:`.
*/}}
{{- define "regmirror.keptSecret" -}}
{{- $top := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $top.Release.Namespace (index . 1) -}}
{{- if and $existing $existing.data (hasKey $existing.data (index . 2)) -}}
{{- index $existing.data (index . 2) -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The mirror's built-in upstreams: src/config/upstreams.ts WELL_KNOWN_UPSTREAMS (a test compares them). */}}
{{- define "regmirror.builtInUpstreams" -}}
docker.io ghcr.io quay.io registry.k8s.io gcr.io nvcr.io mcr.microsoft.com public.ecr.aws
{{- end -}}

{{/*
"true" when an image reference can name this upstream as its registry (a '.' or ':' in it, or localhost), as
`regmirror client-config` decides: containerd reads `internal/app` as a Docker Hub image.
*/}}
{{- define "regmirror.namesRegistry" -}}
{{- if or (contains "." .) (contains ":" .) (eq . "localhost") -}}true{{- end -}}
{{- end -}}

{{/*
The registries the node configuration writes hosts.toml for: a JSON list of {name, server, key}, each enabled
upstream that names a registry (the built-ins unless wellKnownUpstreams is false, then the upstreams list), or
those named in nodeConfig.registries. server is where containerd goes when the mirror fails: the registry itself,
as containerd would without the file and as `regmirror client-config --containerd` writes it. key is the
ConfigMap key of its hosts.toml (no ':' allowed there).
*/}}
{{- define "regmirror.nodeRegistries" -}}
{{- $enabled := list -}}
{{- if .Values.wellKnownUpstreams -}}
{{- $enabled = splitList " " (include "regmirror.builtInUpstreams" .) -}}
{{- end -}}
{{- range $u := .Values.upstreams -}}
{{- if eq (toString $u.enabled) "false" -}}
{{- $enabled = without $enabled $u.name -}}
{{- else if not (has $u.name $enabled) -}}
{{- $enabled = append $enabled $u.name -}}
{{- end -}}
{{- end -}}
{{- range $name := .Values.nodeConfig.registries -}}
{{- if not (has $name $enabled) -}}
{{- fail (printf "nodeConfig.registries: %q is not an enabled upstream of the mirror" $name) -}}
{{- end -}}
{{- if not (include "regmirror.namesRegistry" $name) -}}
{{- fail (printf "nodeConfig.registries: %q names no registry (no '.' or ':'): containerd reads %s/app as a Docker Hub image" $name $name) -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $name := default $enabled .Values.nodeConfig.registries -}}
{{- if include "regmirror.namesRegistry" $name -}}
{{- $server := ternary "https://registry-1.docker.io" (printf "https://%s" $name) (eq $name "docker.io") -}}
{{- $key := printf "%s.toml" (include "regmirror.credentialsSlug" $name) -}}
{{- $out = append $out (dict "name" $name "server" $server "key" $key) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The soft or hard preset of pod anti-affinity: one replica per node. */}}
{{- define "regmirror.affinity" -}}
{{- if .Values.affinity -}}
{{- toYaml .Values.affinity -}}
{{- else if eq .Values.podAntiAffinity "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "regmirror.podSelectorLabels" . | nindent 12 }}
{{- else if eq .Values.podAntiAffinity "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "regmirror.podSelectorLabels" . | nindent 10 }}
{{- else if ne .Values.podAntiAffinity "none" -}}
{{- fail (printf "podAntiAffinity must be soft, hard or none, not %q" .Values.podAntiAffinity) -}}
{{- end -}}
{{- end -}}

{{/* The first line of every hosts.toml the node configuration writes: which files it may replace and remove. */}}
{{- define "regmirror.nodeConfigMarker" -}}
# written by regmirror node-config (release {{ .Release.Name }}, namespace {{ .Release.Namespace }}); removed when it stops
{{- end -}}
