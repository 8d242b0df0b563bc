#!/bin/sh
# install-deps: the Debian packages orchfs needs to build, run and test (clang
# and its runtime for the fuzz targets, chromium for the dashboard's browser
# test); with --bench also those the benchmarks compare against (wrk, nginx-light).
# Idempotent and quiet: runs apt-get update only when something is missing.
#   sudo contrib/install-deps.sh [--bench]
set -eu
PACKAGES="gcc meson ninja-build pkg-config libfuse3-dev fuse3 libcjson-dev libcmocka-dev
libsqlite3-dev libwebsockets-dev universal-ctags jq inotify-tools curl python3
python3-websockets graphviz procps psmisc tmux clang libclang-rt-dev chromium openssl
slurmctld slurmd slurm-client munge"
[ "${1:-}" = "--bench" ] && PACKAGES="$PACKAGES wrk nginx-light"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing:$missing; run as root (sudo $0)" >&2
	exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
