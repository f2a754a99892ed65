#!/usr/bin/env bash
# Builds, or reuses from the cache, the binaries of the local Kubernetes control plane that the
# cluster tests run: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
# and helm, plus kwok-stages.yaml (the Stage objects that kwok needs) beside them. Everything
# comes from the Go module proxy and is compiled here; nothing is written inside the repository.
#
# Usage:
#   build.sh                  build what is missing, then print the bin directory
#   build.sh --print-bin-dir  print the bin directory and exit without building
#
# Environment:
#   GRACE_MOE_CACHE  cache root (default: $HOME/.cache/grace-moe)
#   BUILD_NICE       niceness of the Go commands (default: 19, so other work on the machine
#                    keeps its share of the cores)
#
# Go's own module and build caches (go env GOMODCACHE, GOCACHE) are used as they are and never
# cleaned, so a second build of a new version reuses every unchanged dependency.
set -Eeuo pipefail

# ---- Versions: the only place they are pinned. ----------------------------------------------
KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_MODULE=helm.sh/helm/v4
HELM_VERSION=v4.3.2
# ---------------------------------------------------------------------------------------------

CACHE_ROOT=${GRACE_MOE_CACHE:-$HOME/.cache/grace-moe}
TARGET_NAME="control-plane-k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}-helm-${HELM_VERSION}"
TARGET_DIR="$CACHE_ROOT/$TARGET_NAME"
BIN_DIR="$TARGET_DIR/bin"
WORK_DIR="$TARGET_DIR/work"
STAMP_FILE="$TARGET_DIR/stamp"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)
KWOK_STAGES_FILE=kwok-stages.yaml
NICE_LEVEL=${BUILD_NICE:-19}

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$BIN_DIR"
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "build.sh: unknown argument '$1'; expected no argument or --print-bin-dir" >&2
  exit 2
fi

SCRIPT_START=$SECONDS
CURRENT_STEP="checking the Go toolchain"

log() {
  printf '[control-plane build %4ds] %s\n' "$((SECONDS - SCRIPT_START))" "$*"
}

on_error() {
  local status=$?
  # With errtrace (-E) every subshell runs this trap too, so only the main shell prints the report.
  if [[ $BASHPID != "$$" ]]; then
    exit "$status"
  fi
  echo "build.sh: failed while ${CURRENT_STEP} (exit status ${status}) after $((SECONDS - SCRIPT_START)) s; see the output above." >&2
  echo "build.sh: nothing was marked as built; running the script again resumes from Go's caches." >&2
  exit "$status"
}
trap on_error ERR

# With GOTOOLCHAIN=local, a module that requires a newer Go fails here with a clear message
# instead of making the go command download another toolchain.
run_go() {
  nice -n "$NICE_LEVEL" env CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off GOTOOLCHAIN=local go "$@"
}

# The stamp names the versions, the Go toolchain and a hash of this script, so that a change to
# any of them (a flag, a version) rebuilds instead of reusing stale binaries.
stamp_content() {
  printf 'kubernetes %s\netcd %s\nkwok %s\nhelm %s %s\ngo %s\nrecipe %s\nbinaries %s\n' \
    "$KUBERNETES_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$HELM_MODULE" "$HELM_VERSION" \
    "$GO_VERSION" "$RECIPE_HASH" "${BINARIES[*]}"
}

all_outputs_present() {
  local name
  for name in "${BINARIES[@]}"; do
    [[ -x "$BIN_DIR/$name" ]] || return 1
  done
  [[ -f "$BIN_DIR/$KWOK_STAGES_FILE" ]]
}

# Marks one project as built by this recipe, so that a rerun after a later failure skips it.
project_done() { [[ -f "$WORK_DIR/$1.done" && "$(cat "$WORK_DIR/$1.done")" == "$RECIPE_HASH $GO_VERSION" ]]; }
mark_project_done() { echo "$RECIPE_HASH $GO_VERSION" >"$WORK_DIR/$1.done"; }

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: the go command was not found on PATH; install Go 1.26 or newer." >&2
  exit 1
fi
GO_VERSION=$(go env GOVERSION)
RECIPE_HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
case "$GO_VERSION" in
  go1.2[6-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
  *)
    echo "build.sh: ${GO_VERSION} is too old; these modules declare 'go 1.26.0', so install Go 1.26 or newer." >&2
    exit 1
    ;;
esac

mkdir -p "$BIN_DIR" "$WORK_DIR"

# Two builds started at once (for example two test runs) would write the same files.
exec 9>"$TARGET_DIR/.lock"
if ! flock -n 9; then
  log "another build of $TARGET_NAME is running; waiting for it"
  flock 9
fi

if [[ -f "$STAMP_FILE" ]] && all_outputs_present && [[ "$(cat "$STAMP_FILE")" == "$(stamp_content)" ]]; then
  log "reusing $BIN_DIR (stamp matches; nothing to build)"
  echo "$BIN_DIR"
  exit 0
fi
rm -f "$STAMP_FILE"
log "building into $BIN_DIR with $GO_VERSION (GOMODCACHE=$(go env GOMODCACHE), GOCACHE=$(go env GOCACHE))"

# Downloads MODULE@VERSION and prints FIELD of `go mod download -json` ("GoMod" is the path of
# its go.mod, "Dir" the folder of its source). The go command reports a failed download in the
# JSON "Error" field, so that field is printed on failure.
downloaded_module_field() {
  local module=$1 version=$2 field=$3 json
  if ! json=$(cd "$WORK_DIR" && run_go mod download -json "$module@$version"); then
    echo "build.sh: downloading $module@$version failed: $(sed -n 's/^[[:space:]]*"Error": "\(.*\)",*$/\1/p' <<<"$json")" >&2
    return 1
  fi
  sed -n "s/^[[:space:]]*\"$field\": \"\\(.*\\)\",*\$/\\1/p" <<<"$json"
}

# Prints the release time of MODULE@VERSION as the proxy records it (RFC 3339), which stamps
# buildDate so that the binaries do not depend on when they were compiled.
module_time() {
  (cd "$WORK_DIR" && run_go list -m -json "$1@$2") |
    sed -n 's/^[[:space:]]*"Time": "\(.*\)",*$/\1/p'
}

# ---- Kubernetes -----------------------------------------------------------------------------
# k8s.io/kubernetes replaces each staging module (k8s.io/api, k8s.io/client-go, ...) with a local
# folder, so `go install k8s.io/kubernetes/cmd/...@version` is rejected. The wrapper module below
# requires k8s.io/kubernetes and replaces every staging module with its published release
# (v0.MINOR.PATCH). The staging list is read from that version's own go.mod.
build_kubernetes() {
  local module_dir="$WORK_DIR/kubernetes"
  local staging_version="v0${KUBERNETES_VERSION#v1}"
  local minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}

  CURRENT_STEP="downloading k8s.io/kubernetes@${KUBERNETES_VERSION}"
  log "$CURRENT_STEP"
  local upstream_go_mod
  upstream_go_mod=$(downloaded_module_field k8s.io/kubernetes "$KUBERNETES_VERSION" GoMod)
  if [[ ! -f "$upstream_go_mod" ]]; then
    echo "build.sh: the go.mod of k8s.io/kubernetes@${KUBERNETES_VERSION} was not found after download." >&2
    return 1
  fi

  local staging_modules
  staging_modules=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$upstream_go_mod" | sort -u)
  if [[ -z "$staging_modules" ]]; then
    echo "build.sh: no staging replace lines found in $upstream_go_mod; the wrapper cannot be generated." >&2
    return 1
  fi
  log "k8s.io/kubernetes@${KUBERNETES_VERSION} has $(wc -l <<<"$staging_modules") staging modules; pinning them to ${staging_version}"

  CURRENT_STEP="writing the Kubernetes wrapper module"
  rm -rf "$module_dir"
  mkdir -p "$module_dir/stub"
  local requires="" replaces="" module
  for module in $staging_modules; do
    if (cd "$WORK_DIR" && run_go list -m "$module@$staging_version" >/dev/null 2>&1); then
      requires+=$'\t'"$module $staging_version"$'\n'
      replaces+=$'\t'"$module => $module $staging_version"$'\n'
    else
      # A staging module that the proxy does not serve gets an empty local module. That is
      # enough only when none of the built commands imports it; the build fails otherwise.
      log "WARNING: $module@$staging_version is not served (go list failed); replacing it with an empty local module"
      local stub_dir="$module_dir/stub/${module#k8s.io/}"
      mkdir -p "$stub_dir"
      printf 'module %s\n\ngo 1.26.0\n' "$module" >"$stub_dir/go.mod"
      replaces+=$'\t'"$module => ./stub/${module#k8s.io/}"$'\n'
    fi
  done
  {
    printf '// Generated by .ci/control-plane/build.sh; rebuilt on each run.\n'
    printf 'module grace-moe.local/control-plane/kubernetes\n\ngo 1.26.0\n\n'
    printf 'require k8s.io/kubernetes %s\n\n' "$KUBERNETES_VERSION"
    printf 'require (\n%s)\n\n' "$requires"
    printf 'replace (\n%s)\n' "$replaces"
  } >"$module_dir/go.mod"

  local commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local packages=() name
  for name in "${commands[@]}"; do
    packages+=("k8s.io/kubernetes/cmd/$name")
  done

  # Each package is named with @version: a bare `go get PACKAGE` means @upgrade and would move
  # k8s.io/kubernetes to the newest release.
  CURRENT_STEP="resolving the dependencies of the Kubernetes commands"
  log "$CURRENT_STEP"
  (cd "$module_dir" && run_go get "${packages[@]/%/@$KUBERNETES_VERSION}")

  local build_date
  build_date=$(module_time k8s.io/kubernetes "$KUBERNETES_VERSION")
  local ldflags="-s -w"
  local version_package
  for version_package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${version_package}.gitVersion=${KUBERNETES_VERSION}"
    ldflags+=" -X ${version_package}.gitMajor=1"
    ldflags+=" -X ${version_package}.gitMinor=${minor}"
    ldflags+=" -X ${version_package}.gitTreeState=clean"
    ldflags+=" -X ${version_package}.buildDate=${build_date}"
  done

  CURRENT_STEP="compiling ${commands[*]} (the longest step)"
  log "$CURRENT_STEP"
  (cd "$module_dir" && run_go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/" "${packages[@]}")
}

# ---- etcd -----------------------------------------------------------------------------------
# go.etcd.io/etcd/server/v3 is the etcd program (package main at the module root). Its go.mod
# replaces the sibling etcd modules with relative folders, so it gets the same kind of wrapper:
# each sibling is pinned to the server's version.
build_etcd() {
  local module_dir="$WORK_DIR/etcd"

  CURRENT_STEP="downloading go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  log "$CURRENT_STEP"
  local upstream_go_mod
  upstream_go_mod=$(downloaded_module_field go.etcd.io/etcd/server/v3 "$ETCD_VERSION" GoMod)
  if [[ ! -f "$upstream_go_mod" ]]; then
    echo "build.sh: the go.mod of go.etcd.io/etcd/server/v3@${ETCD_VERSION} was not found after download." >&2
    return 1
  fi

  local siblings
  siblings=$(sed -n 's#^[[:space:]]*\(go\.etcd\.io/etcd/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\.\./.*#\1#p' "$upstream_go_mod" | sort -u)

  CURRENT_STEP="writing the etcd wrapper module"
  rm -rf "$module_dir"
  mkdir -p "$module_dir"
  local requires="" replaces="" module
  for module in $siblings; do
    requires+=$'\t'"$module $ETCD_VERSION"$'\n'
    replaces+=$'\t'"$module => $module $ETCD_VERSION"$'\n'
  done
  {
    printf '// Generated by .ci/control-plane/build.sh; rebuilt on each run.\n'
    printf 'module grace-moe.local/control-plane/etcd\n\ngo 1.26.0\n\n'
    printf 'require go.etcd.io/etcd/server/v3 %s\n\n' "$ETCD_VERSION"
    if [[ -n "$requires" ]]; then
      printf 'require (\n%s)\n\n' "$requires"
      printf 'replace (\n%s)\n' "$replaces"
    fi
  } >"$module_dir/go.mod"

  CURRENT_STEP="resolving the dependencies of etcd"
  log "$CURRENT_STEP"
  (cd "$module_dir" && run_go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION")

  CURRENT_STEP="compiling etcd"
  log "$CURRENT_STEP"
  (cd "$module_dir" && run_go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3)
}

# ---- kwok and helm --------------------------------------------------------------------------
# Neither go.mod has replace lines, so `go install module/cmd@version` builds each against its
# own go.mod, isolated from the other projects' dependency versions.
build_kwok() {
  CURRENT_STEP="building sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  log "$CURRENT_STEP"
  # kwok's release version is already written in its source (pkg/consts.Version), so no -X flag.
  (cd "$WORK_DIR" && GOBIN="$BIN_DIR" run_go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}")

  # The kwok binary has no built-in stages, so it exits with "no stages found" unless its --config
  # contains Stage objects. The module ships them as YAML. These five are the ones that its "fast"
  # profile lists (node initialize, node heartbeat with lease, pod ready, complete and delete).
  CURRENT_STEP="collecting the kwok stage configuration"
  local kwok_dir
  kwok_dir=$(downloaded_module_field sigs.k8s.io/kwok "$KWOK_VERSION" Dir)
  local stage_files=(
    node/fast/node-initialize.yaml
    node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
    pod/fast/pod-ready.yaml
    pod/fast/pod-complete.yaml
    pod/fast/pod-delete.yaml
  )
  local stage_file
  {
    printf '# kwok Stage objects copied by .ci/control-plane/build.sh from sigs.k8s.io/kwok@%s/kustomize/stage.\n' "$KWOK_VERSION"
    for stage_file in "${stage_files[@]}"; do
      if [[ ! -f "$kwok_dir/kustomize/stage/$stage_file" ]]; then
        echo "build.sh: kwok stage file $stage_file is missing from $kwok_dir/kustomize/stage." >&2
        return 1
      fi
      printf -- '---\n'
      cat "$kwok_dir/kustomize/stage/$stage_file"
    done
  } >"$BIN_DIR/$KWOK_STAGES_FILE"
}

build_helm() {
  CURRENT_STEP="building ${HELM_MODULE}/cmd/helm@${HELM_VERSION}"
  log "$CURRENT_STEP"
  (cd "$WORK_DIR" && GOBIN="$BIN_DIR" run_go install -trimpath \
    -ldflags "-s -w -X ${HELM_MODULE}/internal/version.version=${HELM_VERSION}" \
    "${HELM_MODULE}/cmd/helm@${HELM_VERSION}")
}

build_project() {
  local project=$1
  shift
  local name missing=0
  for name in "$@"; do
    [[ -x "$BIN_DIR/$name" ]] || missing=1
  done
  if [[ $project == kwok && ! -f "$BIN_DIR/$KWOK_STAGES_FILE" ]]; then
    missing=1
  fi
  if [[ $missing -eq 0 ]] && project_done "$project"; then
    log "reusing $* (built by an earlier run)"
    return 0
  fi
  rm -f "$WORK_DIR/$project.done"
  local step_start=$SECONDS
  "build_$project"
  for name in "$@"; do
    if [[ ! -x "$BIN_DIR/$name" ]]; then
      CURRENT_STEP="checking the output of $project"
      echo "build.sh: $BIN_DIR/$name is missing after building $project." >&2
      return 1
    fi
  done
  mark_project_done "$project"
  log "built $* in $((SECONDS - step_start)) s"
}

build_project etcd etcd
build_project kwok kwok
build_project helm helm
build_project kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl

CURRENT_STEP="writing the stamp file"
stamp_content >"$STAMP_FILE.tmp"
mv "$STAMP_FILE.tmp" "$STAMP_FILE"
log "done in $((SECONDS - SCRIPT_START)) s; binaries:"
ls -l "$BIN_DIR" | sed 's/^/  /'
echo "$BIN_DIR"
