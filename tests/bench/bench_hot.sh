#!/usr/bin/env bash
# bench_hot.sh: every hot path beside its anchor, in one table: reads and stat
# of status files (hello_fs), control writes at 1, 8 and 64 writers (hello_fs,
# and --durable against the default), `true` tasks at max_workers 8 and 64
# (a posix_spawn loop, bare and with a log file and a cgroup each), GET at
# -c10 and -c100 (nginx), WebSocket fan-out and a
# stalled client. It runs each benchmark on a fresh daemon and, given a state
# directory (the history the scale benchmark copies to SCALE_KEEP_STATE, say),
# again on a copy of it; then prints the rows they report (bench_row in
# lib.sh): daemon, row, orchfs, anchor, ratio, spread of orchfs's figure over
# the rounds. Each benchmark's own output goes to OUT_DIR/NAME.DAEMON.log.
#   meson test -C build --benchmark hot_paths -v
#   tests/bench/bench_hot.sh ORCHFS HELLO_FS READLOOP WRITELOOP SPAWNLOOP WSFAN [STATE_DIR]
# Knobs: BENCH_ROUNDS (3), and each benchmark's own.
set -u -o pipefail
[ $# -eq 6 ] || [ $# -eq 7 ] || {
	echo "usage: $0 ORCHFS HELLO_FS READLOOP WRITELOOP SPAWNLOOP WSFAN [STATE_DIR]" >&2; exit 2; }
orchfs=$1 hello=$2 readloop=$3 writeloop=$4 spawnloop=$5 wsfan=$6 state=${7:-}
here=$(cd "$(dirname "$0")" && pwd) || exit 2
out=$(mktemp -d "${TMPDIR:-/tmp}/orchfs-hot.XXXXXX") || exit 2
export BENCH_ROUNDS=${BENCH_ROUNDS:-3}
rows=$out/rows
: >"$rows"

run() { # run DAEMON NAME SCRIPT ARGS...
	local daemon=$1 name=$2
	shift 2
	echo "# $name on the $daemon daemon ..." >&2
	if ! "$@" >"$out/$name.$daemon.log" 2>&1; then
		echo "# $name failed on the $daemon daemon: see $out/$name.$daemon.log" >&2
		tail -5 "$out/$name.$daemon.log" >&2
		return 1
	fi
	sed -n "s/^row|/$daemon|/p" "$out/$name.$daemon.log" >>"$rows"
}

status=0
for daemon in fresh ${state:+history}; do
	if [ "$daemon" = history ]; then export ORCHFS_BENCH_STATE=$state; else unset ORCHFS_BENCH_STATE; fi
	run "$daemon" read "$here/bench_read.sh" "$orchfs" "$hello" "$readloop" || status=1
	run "$daemon" writes "$here/bench_writes.sh" "$orchfs" "$hello" "$writeloop" || status=1
	run "$daemon" spawn "$here/bench_spawn.sh" "$orchfs" "$spawnloop" || status=1
	if command -v wrk >/dev/null && PATH=$PATH:/usr/sbin command -v nginx >/dev/null; then
		run "$daemon" http "$here/bench_http.sh" "$orchfs" || status=1
	else
		echo "# http skipped: no wrk or nginx (contrib/install-deps.sh --bench)" >&2
	fi
	run "$daemon" ws "$here/bench_ws.sh" "$orchfs" "$wsfan" || status=1
done

echo "--- medians of $BENCH_ROUNDS rounds; logs in $out"
awk -F'|' 'BEGIN { printf "%-8s %-40s %12s  %-20s %12s %7s  %s\n", "daemon", "row", "orchfs", "anchor", "", "ratio", "spread" }
	{ printf "%-8s %-40s %12s  %-20s %12s %7s  %s\n", $1, $2, $3, $4, $5, $6, $7 }' "$rows"
exit "$status"
