#!/usr/bin/env bash
# bench_spawn.sh: tasks per second of orchfs running a plan of BENCH_TASKS
# tasks of `true` (no deps) at max_workers 8 and 64, from the plan's write to
# its track's end, against two anchors in the same run, alternating:
# spawnloop bare (the same number of `sh -c true` with posix_spawn and wait,
# the same number at once), and spawnloop giving each process what orchfs
# gives a worker (a log file beside orchfs's state and, where orchfs's
# isolation is cgroup, a cgroup of its own made, joined and removed), which
# tells orchfs's own cost from the kernel's cost of a file and a cgroup.
# Prints the medians and the ratios; fails only if something breaks.
#   meson test -C build --benchmark spawn -v
#   tests/bench/bench_spawn.sh ORCHFS SPAWNLOOP
#   ORCHFS_BENCH_STATE=DIR tests/bench/bench_spawn.sh ...   # orchfs on a copy
#       of DIR as its state (the scale benchmark's 10,000 workers, say)
# Knobs: BENCH_ROUNDS (default 3), BENCH_TASKS (default 1000),
# BENCH_IN_FLIGHT (default "8 64").
set -u -o pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh" || exit 2
[ $# -eq 2 ] || { echo "usage: $0 ORCHFS SPAWNLOOP" >&2; exit 2; }
orchfs=$1 spawnloop=$2
rounds=${BENCH_ROUNDS:-3}
ntasks=${BENCH_TASKS:-1000}
read -r -a caps <<<"${BENCH_IN_FLIGHT:-8 64}"
mount_wait_s=10
stop_wait_s=10
track_wait_s=300    # per plan, until its track ends
bench_tmp orchfs-sbench

mkdir -p "$tmp/mnt" "$tmp/state" || exit 1
bench_orchfs "$tmp/mnt" "$tmp/state" "$tmp/orchfs.log" --max-workers 8 || exit 1
M=$tmp/mnt
# the same work as a worker's: a new log file in orchfs's filesystem (a new
# directory each run: a file opened again costs no inode, a new one may cost
# much more, as on ext4 without a journal after many deletes), and its cgroup
# beside orchfs's own when orchfs uses cgroups
same=(--logs "")
isolation=$(jq -r .pipeline.isolation "$M/state.json") || exit 1
if [ "$isolation" == cgroup ]; then
	cg_mount=$(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break } }' \
		/proc/self/mountinfo | head -1)
	own=$(sed -n 's|^0::/*||p' /proc/self/cgroup)
	same+=(--cgroup "$cg_mount${own:+/$own}/orchfs-bench-anchor-$$")
fi
same_name="spawnloop+log${same[2]:++cgroup}"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# run_plan ID CAP: tasks/s of a plan of $ntasks `true` tasks at max_workers CAP
run_plan() {
	local id=$1 cap=$2 t0 t1 st i
	echo "$cap" >"$M/mma/pipeline/max_workers" || return 1
	awk -v id="$id" -v n="$ntasks" 'BEGIN { printf "{\"id\":\"%s\",\"tasks\":[", id
		for (i = 0; i < n; i++) printf "%s{\"id\":\"%s-%d\",\"command\":\"true\"}", i ? "," : "", id, i
		print "]}" }' >"$tmp/plan.json"
	t0=$(now_ms)
	cat "$tmp/plan.json" >"$M/mma/tracks/create" || return 1
	for ((i = 0; i < track_wait_s * 100; i++)); do
		# no fork per poll: the loop would take CPU from the workers
		read -r st <"$M/mma/tracks/$id/status"
		[ "$st" == done ] || [ "$st" == failed ] && break
		bench_nap 0.01
	done
	t1=$(now_ms)
	[ "$st" == done ] || { echo "track $id: $st after ${track_wait_s}s" >&2; return 1; }
	awk -v n="$ntasks" -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1000 / ms }'
}

declare -A rates=()
for ((r = 1; r <= rounds; r++)); do
	for cap in "${caps[@]}"; do
		out=$("$spawnloop" "$ntasks" "$cap") || exit 1
		out=${out#spawns_per_s=}
		rates[loop.$cap]+="${out%% *} "
		same[1]=$tmp/anchor-logs-$r-$cap
		mkdir -p "${same[1]}" || exit 1
		out2=$("$spawnloop" "$ntasks" "$cap" "${same[@]}") || exit 1
		out2=${out2#spawns_per_s=}
		rates[same.$cap]+="${out2%% *} "
		rate=$(run_plan "b$r-$cap" "$cap") || exit 1
		rates[orchfs.$cap]+="$rate "
		echo "round $r max_workers=$cap spawnloop=${out%% *}/s $same_name=${out2%% *}/s orchfs=$rate tasks/s"
	done
done
echo "--- medians of $rounds rounds, $ntasks tasks of true, orchfs's isolation: $isolation"
printf '%-12s %12s %8s %12s %8s %12s\n' max_workers spawnloop ratio "same work" ratio orchfs
for cap in "${caps[@]}"; do
	l=$(bench_median %.0f "${rates[loop.$cap]}")
	w=$(bench_median %.0f "${rates[same.$cap]}")
	o=$(bench_median %.0f "${rates[orchfs.$cap]}")
	printf '%-12s %12s %8s %12s %8s %12s\n' "$cap" "$l" "$(bench_ratio "$o" "$l")" "$w" \
		"$(bench_ratio "$o" "$w")" "$o"
	spread=$(bench_spread %.0f "${rates[orchfs.$cap]}")
	bench_row "true tasks/s, max_workers $cap" "$o" spawnloop "$l" "$(bench_ratio "$o" "$l")" "$spread"
	bench_row "true tasks/s, max_workers $cap, same work" "$o" "$same_name" "$w" \
		"$(bench_ratio "$o" "$w")" "$spread"
done
