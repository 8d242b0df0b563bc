#!/usr/bin/env bash
# bench_writes.sh: control writes per second (write mma/pipeline/max_workers),
# each acknowledged only once committed to the store, with the default
# (WAL, synchronous=NORMAL: survives kill -9) and with --durable (an fsync per
# commit: survives power loss), in the same run. Prints the median of the
# rounds for each and their ratio; fails only if something breaks.
#   meson test -C build --benchmark control_writes -v
#   tests/bench/bench_writes.sh ORCHFS WRITELOOP
set -u -o pipefail
[ $# -eq 2 ] || { echo "usage: $0 ORCHFS WRITELOOP" >&2; exit 2; }
orchfs=$1 writeloop=$2
rounds=${BENCH_ROUNDS:-5}
ops=${BENCH_OPS:-2000}
durable_ops=${BENCH_DURABLE_OPS:-300}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orchfs-wbench.XXXXXX") || exit 1
mounts=()
cleanup() {
	local m
	for m in "${mounts[@]}"; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
	done
	sleep 0.2
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

start() { # start NAME [ARGS]: mounts orchfs at $tmp/NAME
	local name=$1 i
	shift
	mkdir -p "$tmp/$name/mnt" "$tmp/$name/state"
	"$orchfs" --state-dir "$tmp/$name/state" --http off --ws off --max-workers 1 "$@" "$tmp/$name/mnt" || return 1
	mounts+=("$tmp/$name/mnt")
	for ((i = 0; i < 100; i++)); do
		[ -r "$tmp/$name/mnt/mma/pipeline/status" ] && return 0
		sleep 0.05
	done
	echo "orchfs did not mount at $tmp/$name/mnt" >&2
	return 1
}

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
