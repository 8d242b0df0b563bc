#!/usr/bin/env bash
# bench_writes.sh: control writes per second (write mma/pipeline/max_workers),
# each acknowledged only once committed to the store, with the default
# (WAL, synchronous=NORMAL: survives kill -9) and with --durable (an fsync per
# commit: survives power loss), in the same run. Prints the median of the
# rounds for each and their ratio; fails only if something breaks.
#   meson test -C build --benchmark control_writes -v
#   tests/bench/bench_writes.sh ORCHFS WRITELOOP
set -u -o pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh" || exit 2
[ $# -eq 2 ] || { echo "usage: $0 ORCHFS WRITELOOP" >&2; exit 2; }
orchfs=$1 writeloop=$2
rounds=${BENCH_ROUNDS:-5}
ops=${BENCH_OPS:-2000}
durable_ops=${BENCH_DURABLE_OPS:-300}
mount_wait_s=5      # per daemon, until the mount shows
stop_wait_s=5       # per daemon, after unmount, before SIGKILL
bench_tmp orchfs-wbench

start() { # start NAME [ARGS]: mounts orchfs at $tmp/NAME/mnt
	mkdir -p "$tmp/$1/mnt" "$tmp/$1/state" || return 1
	bench_orchfs "$tmp/$1/mnt" "$tmp/$1/state" "$tmp/$1/orchfs.log" --max-workers 1 "${@:2}"
}

# the middle value (the lower middle one when even), as an integer
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

start plain || exit 1
start durable --durable || exit 1
: >"$tmp/plain.txt"
: >"$tmp/durable.txt"
for ((r = 1; r <= rounds; r++)); do
	"$writeloop" "$tmp/plain/mnt/mma/pipeline/max_workers" "$ops" | sed 's/writes_per_s=\([0-9]*\).*/\1/' >>"$tmp/plain.txt" || exit 1
	"$writeloop" "$tmp/durable/mnt/mma/pipeline/max_workers" "$durable_ops" | sed 's/writes_per_s=\([0-9]*\).*/\1/' >>"$tmp/durable.txt" || exit 1
done
p=$(median <"$tmp/plain.txt")
d=$(median <"$tmp/durable.txt")
echo "rounds=$rounds (medians of writes per second)"
echo "default (kill -9 safe)   writes_per_s=$p"
echo "--durable (fsync)        writes_per_s=$d"
awk -v p="$p" -v d="$d" 'BEGIN { printf "ratio default/durable=%.1f\n", p / d }'
