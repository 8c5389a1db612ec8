#!/usr/bin/env bash
# Builds the kube-apiserver and etcd binaries that envtest runs, from the Go module proxy,
# once, into bin/k8s/<version>/. Later runs reuse them. Prints the directory to point
# KUBEBUILDER_ASSETS at.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
STAGING_VERSION="${STAGING_VERSION:-0.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${root}/bin/k8s/${K8S_VERSION}-etcd${ETCD_VERSION}"
mkdir -p "${dest}"

log() { echo "setup-envtest: $*" >&2; }

build_apiserver() {
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' RETURN
  local staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
    cloud-provider cluster-bootstrap code-generator component-base component-helpers
    controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
    endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
    kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
    sample-apiserver sample-cli-plugin sample-controller)
  {
    echo "module envtest.local/apiserver"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do
      echo "	k8s.io/${m} => k8s.io/${m} v${STAGING_VERSION}"
    done
    echo ")"
  } >"${work}/go.mod"
  cat >"${work}/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  log "building kube-apiserver v${K8S_VERSION} (first time only, several minutes)"
  (cd "${work}" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  (cd "${work}" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "${dest}/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "${dest}/kube-apiserver.tmp" "${dest}/kube-apiserver"
}

build_etcd() {
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' RETURN
  cat >"${work}/go.mod" <<MOD
module envtest.local/etcd

go 1.25

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
MOD
  cat >"${work}/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  log "building etcd v${ETCD_VERSION} (first time only, about a minute)"
  (cd "${work}" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  (cd "${work}" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "${dest}/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "${dest}/etcd.tmp" "${dest}/etcd"
}

[ -x "${dest}/etcd" ] || build_etcd
[ -x "${dest}/kube-apiserver" ] || build_apiserver

echo "${dest}"
