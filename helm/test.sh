#!/usr/bin/env bash
# helm/test.sh — proves the chart: lint, render (default, ci/full-values.yaml,
# ci/replicated-values.yaml), compare with the golden files, validate every manifest against the
# Kubernetes schemas offline, check that the rendered config file is accepted by retailflow's
# own config loader, and check that the guard rails (fail in templates) fire.
#
#   helm/test.sh            run the checks
#   helm/test.sh --update   rewrite helm/testdata/*.golden from the current chart, then check
#
# Tools are built once with `go install` from the Go module proxy into $GOBIN
# ($HOME/.cache/retailflow/bin) and reused. Schemas: kubeconform's default source is a GitHub
# download, which is not reachable here, so helm/schemagen converts the OpenAPI document that
# ships in the k8s.io/kubernetes Go module (fetched with `go mod download`, ~18 MB, cached) into
# strict per-kind JSON schemas under $HOME/.cache/retailflow/k8s-schemas. The KEDA and
# Prometheus Operator kinds are validated against the schemas in helm/schemas (written for the
# fields the chart uses, strict).
set -euo pipefail

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
K8S_VERSION=1.34.4

update=0
case "${1:-}" in
  --update) update=1 ;;
  "") ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${RETAILFLOW_CACHE:-$HOME/.cache/retailflow}
export GOBIN=${GOBIN:-$cache/bin}
export GOFLAGS=-mod=mod
chart=helm/retailflow
golden=helm/testdata
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# install NAME VERSION PACKAGE: go install unless $GOBIN/NAME was built from VERSION.
install() {
  local name=$1 version=$2 pkg=$3 stamp="$GOBIN/.$1.version"
  if [[ -x $GOBIN/$name && "$(cat "$stamp" 2>/dev/null)" == "$version" ]]; then
    return
  fi
  echo "installing $name $version into $GOBIN (once)"
  mkdir -p "$GOBIN"
  (cd "$work" && GOFLAGS= go install "$pkg@$version")
  echo "$version" >"$stamp"
}
install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform
helm=$GOBIN/helm
kubeconform=$GOBIN/kubeconform

schemas=$cache/k8s-schemas/v$K8S_VERSION
if [[ ! -f $schemas/.done ]]; then
  echo "generating Kubernetes $K8S_VERSION JSON schemas into $schemas (once)"
  dir=$(cd "$work" && GOFLAGS= go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  go run ./helm/schemagen -swagger "$dir/api/openapi-spec/swagger.json" -out "$schemas"
  touch "$schemas/.done"
fi

# retailflow's config loader, to check the rendered config file.
rf=$work/retailflow
go build -o "$rf" ./cmd/retailflow

render() { # NAME [helm args...]: render into $work/NAME.yaml
  local name=$1
  shift
  "$helm" template retailflow "$chart" --namespace retail --kube-version "$K8S_VERSION" "$@" >"$work/$name.yaml"
}

for variant in default full replicated; do
  args=()
  [[ $variant != default ]] && args=(-f "$chart/ci/$variant-values.yaml")

  if out=$("$helm" lint --strict "$chart" --kube-version "$K8S_VERSION" "${args[@]}" 2>&1); then
    ok "helm lint ($variant)"
  else
    bad "helm lint ($variant)"; echo "$out"
  fi

  if ! render "$variant" "${args[@]}"; then
    bad "helm template ($variant)"
    continue
  fi
  ok "helm template ($variant)"

  if ((update)); then
    mkdir -p "$golden"
    cp "$work/$variant.yaml" "$golden/$variant.golden"
    echo "     updated $golden/$variant.golden"
  fi
  if diff -u "$golden/$variant.golden" "$work/$variant.yaml" >"$work/$variant.diff"; then
    ok "golden $golden/$variant.golden"
  else
    bad "golden $golden/$variant.golden differs (review, then: helm/test.sh --update)"
    head -100 "$work/$variant.diff"
  fi

  if out=$("$kubeconform" -strict -summary -kubernetes-version "$K8S_VERSION" \
      -schema-location "$schemas/{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json" \
      -schema-location "helm/schemas/{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json" \
      "$work/$variant.yaml" 2>&1); then
    ok "kubeconform ($variant): ${out##*$'\n'}"
  else
    bad "kubeconform ($variant)"; echo "$out"
  fi

  # The ConfigMap's config.yaml must load and validate in retailflow itself.
  "$helm" template retailflow "$chart" --namespace retail --kube-version "$K8S_VERSION" "${args[@]}" \
    --show-only templates/configmap.yaml |
    awk '/^  config.yaml: \|/ {f = 1; next} f && /^    / {print substr($0, 5); next} f {exit}' >"$work/$variant-config.yaml"
  # What the pods get besides the file: the passwords (Secrets through the environment) and the
  # TLS files (the tls Secret's mount), here a throw-away CA in $work at the mount's paths.
  sed "s|/etc/retailflow/tls/|$work/tls/|g" "$work/$variant-config.yaml" >"$work/$variant-config-local.yaml"
  if [[ ! -f $work/tls/ca.crt ]]; then
    mkdir -p "$work/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=helm-test -keyout "$work/tls/tls.key" \
      -out "$work/tls/ca.crt" >/dev/null 2>&1
    cp "$work/tls/ca.crt" "$work/tls/tls.crt"
  fi
  if out=$(RETAILFLOW_KAFKA_SASL_PASSWORD=from-secret RETAILFLOW_CLICKHOUSE_PASSWORD=from-secret RETAILFLOW_REGISTRY_PASSWORD=from-secret \
      "$rf" config --config "$work/$variant-config-local.yaml" 2>&1); then
    ok "retailflow config accepts the rendered config.yaml ($variant)"
  else
    bad "retailflow config rejects the rendered config.yaml ($variant)"; echo "$out"
  fi
done

# Guard rails: each of these renders must fail with the message named.
expect_fail() { # WANT [helm args...]
  local want=$1
  shift
  if out=$("$helm" template retailflow "$chart" --kube-version "$K8S_VERSION" "$@" 2>&1); then
    bad "render with $* succeeded, want failure: $want"
  elif [[ $out != *"$want"* ]]; then
    bad "render with $* failed without '$want':"; echo "$out"
  else
    ok "refused: $want"
  fi
}
expect_fail "autoscaling.maxReplicas (7) must not exceed config.topics.partitions (6)" \
  --set autoscaling.enabled=true --set autoscaling.maxReplicas=7
expect_fail "autoscaling.lagThreshold (5) must be at least config.topics.partitions (6)" \
  --set autoscaling.enabled=true --set autoscaling.lagThreshold=5
expect_fail "activationLagThreshold (2) must be at least config.topics.partitions (6) when minReplicas is 0" \
  --set autoscaling.enabled=true --set autoscaling.minReplicas=0 --set autoscaling.activationLagThreshold=2
expect_fail "processor.replicas (8) must not exceed config.topics.partitions (6)" --set processor.replicas=8
expect_fail "config.clickhouse.password must not be set in values" --set config.clickhouse.password=hunter2
expect_fail "config.kafka.sasl.password must not be set in values" --set config.kafka.sasl.password=hunter2
expect_fail "config.runtime.instance_id must not be set" --set config.runtime.instance_id=7
expect_fail "terminationGracePeriodSeconds (12) must exceed config.runtime.transaction_timeout (10s)" \
  --set processor.terminationGracePeriodSeconds=12
expect_fail "secrets.kafkaSasl.existingSecret is empty" --set config.kafka.sasl.mechanism=SCRAM-SHA-512
expect_fail "processor.instanceIdFrom must be podName or podIndex" --set processor.instanceIdFrom=random
expect_fail "prometheusRule.consumerLag.maxLag (40) must be at least 8 × config.topics.partitions (48)" \
  --set prometheusRule.enabled=true --set prometheusRule.consumerLag.maxLag=40
expect_fail 'prometheusRule: duration "5 minutes" must be an integer followed by s, m or h' \
  --set prometheusRule.enabled=true --set 'prometheusRule.lagPollStale.after=5 minutes'

echo "helm: $passed passed, $failed failed"
((failed == 0))
