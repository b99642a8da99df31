#!/usr/bin/env bash
# `make prometheus`: make sure prometheus and promtool (Debian package `prometheus`) are on
# PATH, as the monitoring tests and `trilink run --monitoring` need them. The shared installer
# (deploy/ensure-debian-packages.sh) does nothing when both are there, installs the package as
# root with apt-get, or says in one line how to install it and fails.
#
# The package starts a system Prometheus on :9090; the tests and trilink run their own. Without
# systemd or an init script, stop only the package's daemon (it runs as user prometheus), never a
# Prometheus someone started by hand.
set -euo pipefail
exec "$(dirname "$0")/../ensure-debian-packages.sh" --target prometheus \
  --after-install '(systemctl stop prometheus || service prometheus stop || pkill -x -u prometheus prometheus) >/dev/null 2>&1 || true' \
  prometheus=prometheus,promtool
