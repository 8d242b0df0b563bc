#!/usr/bin/env bash
# bench_ws.sh: WebSocket fan-out of orchfs's events: 100 clients on the
# `metrics` channel while a producer writes 2000 usage reports through the
# mount; prints deliveries/s and latency p50/p99 (medians of 3 rounds).
# The measuring is ws_fanout.py's (next to this script, run by
# /usr/bin/python3, which needs python3-websockets); this script starts
# orchfs on free loopback ports with a fresh state dir and mount, spawns one
# long-running worker to report usage for, and cleans everything up.
# A benchmark only: it fails if a client misses an event or something breaks,
# never because a number is slow.
#
#   meson test -C build --benchmark ws_fanout -v
#   tests/bench/bench_ws.sh ORCHFS
#
# The machine this was written on has 2 cores: orchfs, the producer and the
# Python clients share them, and the clients cost the most CPU per message,
# so the figures are a lower bound of orchfs's fan-out, best compared
# between builds on the same machine (ws_fanout.py prints the CPU seconds
# of each side).
#
# Knobs (environment): WS_CLIENTS (default 100), WS_REPORTS (default 2000),
# WS_ROUNDS (default 3), WS_PROCS (client processes, default 2), WS_RATE
# (reports/s, default 0: flat out),
# PYTHON (default /usr/bin/python3).
set -u -o pipefail

[ $# -eq 1 ] || { echo "usage: $0 ORCHFS" >&2; exit 2; }
orchfs=$1
here=$(cd "$(dirname "$0")" && pwd) || exit 1
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh" || exit 2
py=${PYTHON:-/usr/bin/python3}
mount_wait_s=10
stop_wait_s=10

[ -x "$orchfs" ] || { echo "not executable: $orchfs" >&2; exit 2; }
[ -r "$here/ws_fanout.py" ] || { echo "missing $here/ws_fanout.py" >&2; exit 2; }
for tool in "$py" mountpoint fusermount3 timeout; do
	command -v "$tool" >/dev/null || { echo "bench_ws: missing: $tool" >&2; exit 2; }
done
"$py" -c 'import websockets' 2>/dev/null || {
	echo "bench_ws: $py has no websockets module (Debian: apt-get install -y python3-websockets)" >&2
	exit 2
}

bench_tmp orchfs-wsbench
mnt=$tmp/mnt
state=$tmp/state
mkdir -p "$mnt" "$state" || exit 1

read -r p_http p_ws < <(bench_free_ports "$py" 2) || exit 1
bench_orchfs_api "$mnt" "$state" "$tmp/orchfs.log" "$p_http" "$p_ws" || exit 1

# one worker that runs for the whole benchmark (unmounting ends it)
exec 3<>"$mnt/mma/workers/spawn" || exit 1
echo 'sleep 3600' >&3 || { echo "spawn failed: $(cat "$mnt/last_error")" >&2; exit 1; }
read -r spawned <&3
exec 3>&-
id=${spawned#\{\"id\":}
id=${id%%,*}
case $id in ''|*[!0-9]*) echo "unexpected spawn result: $spawned" >&2; exit 1;; esac
echo "orchfs pid $orch_pid, ws 127.0.0.1:$p_ws; reports go to worker $id"

timeout 500 "$py" "$here/ws_fanout.py" --port "$p_ws" --token-file "$state/token" \
	--usage "$mnt/mma/workers/$id/usage" --server-pid "$orch_pid" \
	--clients "${WS_CLIENTS:-100}" --reports "${WS_REPORTS:-2000}" \
	--rounds "${WS_ROUNDS:-3}" --procs "${WS_PROCS:-2}" --rate "${WS_RATE:-0}"
rc=$?
[ "$rc" = 124 ] && echo "bench_ws: ws_fanout.py ran out of time (500s)" >&2
if [ -s "$tmp/orchfs.log" ]; then
	echo "note: orchfs log (last lines):"; tail -5 "$tmp/orchfs.log"
fi
exit "$rc"
