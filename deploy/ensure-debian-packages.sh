#!/usr/bin/env bash
# Make sure the commands a make target needs are on PATH, installing their Debian packages when
# they are missing (used by `make prometheus` and `make browser`).
#
#   deploy/ensure-debian-packages.sh [--target NAME] [--after-install 'SHELL'] PACKAGE=COMMAND[,COMMAND...]...
#
# Nothing to do when every COMMAND is on PATH. Otherwise, as root with apt-get, it installs the
# packages whose commands are missing (--no-install-recommends) and runs the --after-install
# snippet once; not root (or no apt-get), it says in one line what to install and fails.
# --target names the make target for the message ("sudo make NAME").
set -euo pipefail

target=""
after_install=""
specs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --after-install) after_install="$2"; shift 2 ;;
    -*) echo "ensure-debian-packages: unknown option $1" >&2; exit 2 ;;
    *=*) specs+=("$1"); shift ;;
    *) echo "ensure-debian-packages: expected PACKAGE=COMMAND[,COMMAND...], got '$1'" >&2; exit 2 ;;
  esac
done
[ ${#specs[@]} -gt 0 ] || { echo "ensure-debian-packages: no PACKAGE=COMMAND given" >&2; exit 2; }

# Packages with at least one missing command, and the missing commands (for the messages).
missing_packages() {
  local spec package commands command
  for spec in "${specs[@]}"; do
    package="${spec%%=*}"
    commands="${spec#*=}"
    for command in ${commands//,/ }; do
      if ! command -v "$command" >/dev/null 2>&1; then
        echo "$package"
        break
      fi
    done
  done
}
missing_commands() {
  local spec command
  for spec in "${specs[@]}"; do
    for command in $(echo "${spec#*=}" | tr ',' ' '); do
      command -v "$command" >/dev/null 2>&1 || printf '%s ' "$command"
    done
  done
}

packages="$(missing_packages | tr '\n' ' ')"
packages="${packages% }"
[ -z "$packages" ] && exit 0
commands="$(missing_commands)"
commands="${commands% }"
rerun="run make again"
[ -n "$target" ] && rerun="or run 'sudo make $target', then run make again"

if [ "$(id -u)" -ne 0 ]; then
  echo "make: ${commands// //} not found: install the Debian packages with 'sudo apt-get install --no-install-recommends $packages' ($rerun)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make: ${commands// //} not found and there is no apt-get: install them (Debian packages: $packages) so that they are on PATH, then run make again" >&2
  exit 1
fi

echo "make: installing the Debian packages $packages (for ${commands// /, })"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # one word per package
apt-get install -y -qq --no-install-recommends $packages >/dev/null
if [ -n "$after_install" ]; then
  bash -c "$after_install"
fi

still="$(missing_commands)"
if [ -n "$still" ]; then
  echo "make: installed $packages, but ${still% } still not on PATH" >&2
  exit 1
fi
