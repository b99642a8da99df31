#!/usr/bin/env bash
# `make prometheus`: make sure prometheus and promtool (Debian package `prometheus`) are on
# PATH, as the monitoring tests and `trilink run --monitoring` need them. Nothing to do when
# both are there. As root it installs the package with apt-get and stops the system
# Prometheus the package starts on :9090 (trilink starts its own); otherwise it says in one
# line how to install it and fails.
set -euo pipefail

have_both() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

have_both && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "make: prometheus/promtool not found: install the Debian package with 'sudo apt-get install --no-install-recommends prometheus' (or run 'sudo make prometheus'), then run make again" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make: prometheus/promtool not found and there is no apt-get: install Prometheus 2.x so that both prometheus and promtool are on PATH, then run make again" >&2
  exit 1
fi

echo "make: installing the Debian package prometheus (prometheus, promtool)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system Prometheus on :9090; the tests and trilink run their own. Without
# systemd or an init script, stop only the package's daemon (it runs as user prometheus), never
# a Prometheus someone started by hand.
(systemctl stop prometheus || service prometheus stop || pkill -x -u prometheus prometheus) >/dev/null 2>&1 || true

if ! have_both; then
  echo "make: installed the package prometheus, but prometheus/promtool are still not on PATH" >&2
  exit 1
fi
