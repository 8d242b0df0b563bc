#!/usr/bin/env bash
# bench_ws.sh: WebSocket fan-out of orchfs's events, measured by wsfan (C
# clients on raw sockets, so the clients are not what is measured): 100
# clients on the `metrics` channel while a producer writes usage reports
# through the mount at 1,000 a second; every event must reach every client
# once, in order. Each round runs twice: as is, and with one more client
# that subscribes and never reads, which must be closed (1013) within
# --ws-queue-window while the others' p99 moves little, and the daemon's RSS
# must come back to where it was (the event history, 16,384 events, is filled
# first, so that it is not what grows). Prints medians of the rounds; fails only if
# an event is missed, duplicated or out of order, or something breaks.
#   meson test -C build --benchmark ws_fanout -v
#   tests/bench/bench_ws.sh ORCHFS WSFAN
#   ORCHFS_BENCH_STATE=DIR ...   # orchfs on a copy of DIR as its state (tests/bench/lib.sh)
# Knobs: WS_CLIENTS (100), WS_RATE (1000 a second), WS_SECONDS (3, the
# plain run), WS_ROUNDS (BENCH_ROUNDS, else 3), WS_WINDOW (the daemon's --ws-queue-window, 5;
# the stalled run lasts the window and 5 s more).
set -u -o pipefail
[ $# -eq 2 ] || { echo "usage: $0 ORCHFS WSFAN" >&2; exit 2; }
orchfs=$1 wsfan=$2
here=$(cd "$(dirname "$0")" && pwd) || exit 1
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh" || exit 2
clients=${WS_CLIENTS:-100}
rate=${WS_RATE:-1000}
secs=${WS_SECONDS:-3}
rounds=${WS_ROUNDS:-${BENCH_ROUNDS:-3}}
window=${WS_WINDOW:-5}
mount_wait_s=10
stop_wait_s=10
[ -x "$orchfs" ] && [ -x "$wsfan" ] || { echo "not executable: $orchfs or $wsfan" >&2; exit 2; }

bench_tmp orchfs-wsbench
mnt=$tmp/mnt
state=$tmp/state
mkdir -p "$mnt" "$state" || exit 1
read -r p_http p_ws < <(bench_free_ports python3 2) || exit 1
bench_orchfs_api "$mnt" "$state" "$tmp/orchfs.log" "$p_http" "$p_ws" --ws-queue-window "$window" || exit 1

# one worker that runs for the whole benchmark (unmounting ends it)
echo 'sleep 3600' >"$mnt/mma/workers/spawn" || exit 1
id=$(find "$mnt/mma/workers" -mindepth 1 -maxdepth 1 -name '[0-9]*' -printf '%f\n' | sort -n | tail -1)
usage=$mnt/mma/workers/$id/usage
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$orch_pid/status"; }
dropped() { jq '.websocket.clients_dropped' "$mnt/system/telemetry.json"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

echo "orchfs pid $orch_pid; $clients clients at $rate events/s; stalled window ${window}s"
# the event history in memory full first, so that RSS compares like with like
"$wsfan" "$p_ws" "$state/token" "$usage" 0 17000 5000 warmup >/dev/null || exit 1
declare -A v=()
for ((r = 1; r <= rounds; r++)); do
	out=$("$wsfan" "$p_ws" "$state/token" "$usage" "$clients" $((rate * secs)) "$rate" "plain$r") || {
		echo "round $r: $out" >&2; exit 1; }
	echo "round $r plain:   $out"
	v[plain.p50]+="$(field p50_ms "$out") " v[plain.p99]+="$(field p99_ms "$out") "
	rss0=$(rss_kb) d0=$(dropped)
	out=$("$wsfan" "$p_ws" "$state/token" "$usage" "$clients" $((rate * (window + 5))) "$rate" "stall$r" 1) || {
		echo "round $r: $out" >&2; exit 1; }
	d1=$(dropped)
	sleep 2   # what the closed client held is let go
	rss1=$(rss_kb)
	echo "round $r stalled: $out dropped=$((d1 - d0)) rss_kb before=$rss0 after=$rss1"
	v[stall.p50]+="$(field p50_ms "$out") " v[stall.p99]+="$(field p99_ms "$out") "
	v[dropped]+="$((d1 - d0)) " v[rss]+="$(awk -v a="$rss1" -v b="$rss0" 'BEGIN { printf "%.3f", a / b }') "
done
echo "--- medians of $rounds rounds"
p99=$(bench_median %.2f "${v[plain.p99]}") s99=$(bench_median %.2f "${v[stall.p99]}")
echo "plain:   p50_ms=$(bench_median %.2f "${v[plain.p50]}") p99_ms=$p99"
bench_row "WS $clients clients at $rate/s, p99 ms" "$p99" target 10 "$(bench_ratio "$p99" 10)" \
	"$(bench_spread %.2f "${v[plain.p99]}")"
bench_row "WS p99 ms beside a stalled client" "$s99" plain "$p99" "$(bench_ratio "$s99" "$p99")" \
	"$(bench_spread %.2f "${v[stall.p99]}")"
bench_row "RSS after the stalled client / before" "$(bench_median %.3f "${v[rss]}")" - 1 \
	"$(bench_median %.3f "${v[rss]}")" "$(bench_spread %.3f "${v[rss]}")"
echo "stalled: p50_ms=$(bench_median %.2f "${v[stall.p50]}") p99_ms=$s99 (x$(bench_ratio "$s99" "$p99") of plain)" \
	"stalled clients dropped=$(bench_median %.0f "${v[dropped]}") rss after/before=$(bench_median %.3f "${v[rss]}")"
