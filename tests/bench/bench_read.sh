#!/usr/bin/env bash
# bench_read.sh: open+read+close and stat latency of orchfs's
# mma/pipeline/status and of a finished worker's status, against hello_fs's
# status (a minimal FUSE fs) and a file on tmpfs, in one run, each by its
# name in its directory (readloop holds the directory open), so that the
# kernel's walk down to it, the same on any file system, is not compared. A
# benchmark only: it prints numbers and fails only if something breaks, never
# because a number is slow.
#
#   meson test -C build --benchmark read_status -v
#   tests/bench/bench_read.sh ORCHFS HELLO_FS READLOOP
#   ORCHFS_BENCH_ONLY_HELLO=1 tests/bench/bench_read.sh - HELLO_FS READLOOP
#   ORCHFS_BENCH_STATE=DIR tests/bench/bench_read.sh ...   # orchfs on a copy of
#       DIR as its state (the scale benchmark's 10,000 workers, say)
#
# Knobs (environment): BENCH_OPS (open+read+close per round, default 20000),
# BENCH_ROUNDS (alternating rounds per target, default 5),
# ORCHFS_BENCH_ONLY_HELLO=1 (skip orchfs; its argument is then ignored).
# Each readloop prints its median; the report is the median of the round
# medians per target and each one's ratio to hello_fs.
set -u -o pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh" || exit 2

usage() { echo "usage: $0 ORCHFS HELLO_FS READLOOP" >&2; exit 2; }
[ $# -eq 3 ] || usage
orchfs=$1 hello=$2 readloop=$3
ops=${BENCH_OPS:-20000}
rounds=${BENCH_ROUNDS:-5}
only_hello=${ORCHFS_BENCH_ONLY_HELLO:-0}
mount_wait_s=5      # per daemon, until the mount shows
readloop_limit_s=120 # per readloop run
stop_wait_s=5       # per daemon, after unmount, before SIGKILL

case $ops in ''|*[!0-9]*) echo "BENCH_OPS must be a number" >&2; exit 2;; esac
case $rounds in ''|*[!0-9]*) echo "BENCH_ROUNDS must be a number" >&2; exit 2;; esac
[ "$ops" -ge 1 ] && [ "$rounds" -ge 1 ] || { echo "BENCH_OPS and BENCH_ROUNDS must be >= 1" >&2; exit 2; }
for exe in "$hello" "$readloop"; do
	[ -x "$exe" ] || { echo "not executable: $exe" >&2; exit 2; }
done
if [ "$only_hello" != 1 ] && [ ! -x "$orchfs" ]; then
	echo "not executable: $orchfs (set ORCHFS_BENCH_ONLY_HELLO=1 to skip orchfs)" >&2
	exit 2
fi
for tool in mountpoint fusermount3 timeout awk sort; do
	command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

bench_tmp orchfs-bench
hello_mnt=$tmp/hello_mnt
orch_mnt=$tmp/orch_mnt
state_dir=$tmp/state
# the plain-file anchor lives on tmpfs, whatever $TMPDIR is
shm=$(mktemp -d /dev/shm/orchfs-bench.XXXXXX) || exit 1
bench_stop_others() { rm -rf "$shm"; }
plain=$shm/status
mkdir -p "$hello_mnt" "$orch_mnt" "$state_dir" || exit 1
printf 'running\n' >"$plain" || exit 1

bench_start "$hello_mnt" "$tmp/hello.log" "$hello" -f "$hello_mnt"
bench_wait_mount "$hello_mnt" "$bench_pid" "$tmp/hello.log" "$hello_mnt/status" || exit 1

names=(tmpfs hello)
paths=("$plain" "$hello_mnt/status")
if [ "$only_hello" != 1 ]; then
	bench_orchfs "$orch_mnt" "$state_dir" "$tmp/orchfs.log" || exit 1
	# a finished worker: the newest one of the state, or one started here
	wid=$(find "$orch_mnt/mma/workers" -mindepth 1 -maxdepth 1 -name '[0-9]*' -printf '%f\n' | sort -n | tail -1)
	if [ -z "$wid" ]; then
		echo true >"$orch_mnt/mma/workers/spawn" || exit 1
		wid=1
	fi
	for ((i = 0; i < 100; i++)); do
		[ "$(cat "$orch_mnt/mma/workers/$wid/status")" != running ] && break
		sleep 0.05
	done
	names+=(pipeline worker)
	paths+=("$orch_mnt/mma/pipeline/status" "$orch_mnt/mma/workers/$wid/status")
fi

for i in "${!names[@]}"; do
	content=$(timeout 10 cat "${paths[$i]}") || { echo "cannot read ${paths[$i]}" >&2; exit 1; }
	printf '%-8s %s (%s)\n' "${names[$i]}" "${paths[$i]}" "$content"
done
echo "plain file on: $(stat -f -c %T "$plain"); rounds=$rounds ops/round=$ops"

# one round of MODE (read or stat) on target i: its median into meds
declare -A meds=()
measure() {
	local mode=$1 i=$2 out med flag=()
	[ "$mode" == stat ] && flag=(-s)
	out=$(timeout "$readloop_limit_s" "$readloop" "${flag[@]}" "${paths[$i]}" "$ops") || {
		echo "readloop $mode failed on ${paths[$i]} (round $r): $out" >&2
		exit 1
	}
	med=${out#median_us=}
	med=${med%% *}
	case $med in ''|*[!0-9.]*) echo "unexpected readloop output: $out" >&2; exit 1;; esac
	meds[$mode.${names[$i]}]+="$med "
	printf 'round %d %-4s %-8s %s\n' "$r" "$mode" "${names[$i]}" "$out"
}
for ((r = 1; r <= rounds; r++)); do
	for mode in read stat; do
		for i in "${!names[@]}"; do
			measure "$mode" "$i"
		done
	done
done

echo "--- median of $rounds round medians (us); ratio to hello_fs"
printf '%-4s %-8s %10s %8s\n' op target median_us ratio
for mode in read stat; do
	h=$(bench_median %.2f "${meds[$mode.hello]}")
	for n in "${names[@]}"; do
		m=$(bench_median %.2f "${meds[$mode.$n]}")
		printf '%-4s %-8s %10s %8s\n' "$mode" "$n" "$m" "$(bench_ratio "$m" "$h")"
		case $n in pipeline|worker)
			bench_row "$mode $n status (us)" "$m" hello_fs "$h" "$(bench_ratio "$m" "$h")" \
				"$(bench_spread %.2f "${meds[$mode.$n]}")" ;;
		esac
	done
done
exit 0
