#!/usr/bin/env bash
# bench_writes.sh: control writes per second (open, write a number to
# mma/pipeline/max_workers, close), each acknowledged only once committed to
# the store, with 1, 8 and 64 writers at once: orchfs with the default
# durability (WAL, synchronous=NORMAL: survives kill -9), orchfs --durable (an
# fsync per commit: survives power loss), and hello_fs's ctl (a minimal FUSE
# fs that accepts the write and drops it), in the same run. Prints the median
# of the rounds for each and the ratios; fails only if something breaks.
#   meson test -C build --benchmark control_writes -v
#   tests/bench/bench_writes.sh ORCHFS HELLO_FS WRITELOOP
#   ORCHFS_BENCH_STATE=DIR tests/bench/bench_writes.sh ...   # orchfs on a copy
#       of DIR as its state (the scale benchmark's 10,000 workers, say)
# Knobs: BENCH_ROUNDS (default 5), BENCH_OPS (writes per round, default 2000),
# BENCH_DURABLE_OPS (default 500), BENCH_WRITERS (default "1 8 64").
set -u -o pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh" || exit 2
[ $# -eq 3 ] || { echo "usage: $0 ORCHFS HELLO_FS WRITELOOP" >&2; exit 2; }
orchfs=$1 hello=$2 writeloop=$3
rounds=${BENCH_ROUNDS:-5}
ops=${BENCH_OPS:-2000}
durable_ops=${BENCH_DURABLE_OPS:-500}
read -r -a writer_counts <<<"${BENCH_WRITERS:-1 8 64}"
mount_wait_s=5      # per daemon, until the mount shows
stop_wait_s=5       # per daemon, after unmount, before SIGKILL
bench_tmp orchfs-wbench

start() { # start NAME [ARGS]: mounts orchfs at $tmp/NAME/mnt
	mkdir -p "$tmp/$1/mnt" "$tmp/$1/state" || return 1
	bench_orchfs "$tmp/$1/mnt" "$tmp/$1/state" "$tmp/$1/orchfs.log" --max-workers 1 "${@:2}"
}

mkdir -p "$tmp/hello" || exit 1
bench_start "$tmp/hello" "$tmp/hello.log" "$hello" -f "$tmp/hello"
bench_wait_mount "$tmp/hello" "$bench_pid" "$tmp/hello.log" "$tmp/hello/status" || exit 1
start plain || exit 1
start durable --durable || exit 1

declare -A rates=()
run() { # run KEY PATH OPS WRITERS
	local out
	out=$("$writeloop" "$2" "$3" "$4") || { echo "writeloop failed on $2: $out" >&2; exit 1; }
	rates[$1]+="${out%% *} "
	rates[$1]=${rates[$1]//writes_per_s=/}
}
for ((r = 1; r <= rounds; r++)); do
	for w in "${writer_counts[@]}"; do
		run "hello.$w" "$tmp/hello/ctl" "$ops" "$w"
		run "plain.$w" "$tmp/plain/mnt/mma/pipeline/max_workers" "$ops" "$w"
		run "durable.$w" "$tmp/durable/mnt/mma/pipeline/max_workers" "$durable_ops" "$w"
	done
done
echo "rounds=$rounds; medians of writes per second"
printf '%-8s %10s %10s %10s %14s %16s\n' writers hello_fs orchfs durable orchfs/hello durable/orchfs
for w in "${writer_counts[@]}"; do
	h=$(bench_median %.0f "${rates[hello.$w]}")
	p=$(bench_median %.0f "${rates[plain.$w]}")
	d=$(bench_median %.0f "${rates[durable.$w]}")
	printf '%-8s %10s %10s %10s %14s %16s\n' "$w" "$h" "$p" "$d" "$(bench_ratio "$p" "$h")" \
		"$(bench_ratio "$d" "$p")"
	bench_row "control writes/s, $w writers" "$p" hello_fs "$h" "$(bench_ratio "$p" "$h")" \
		"$(bench_spread %.0f "${rates[plain.$w]}")"
	bench_row "--durable writes/s, $w writers" "$d" default "$p" "$(bench_ratio "$d" "$p")" \
		"$(bench_spread %.0f "${rates[durable.$w]}")"
done
