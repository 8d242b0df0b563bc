#!/usr/bin/env bash
# bench_slurm.sh: the Slurm runner's overhead on a single-node test cluster
# (tests/slurm/cluster.sh, root): tasks/s of a plan of BENCH_JOBS `true` tasks
# under --runner slurm, from the plan's write to its track's end, against the
# anchor a Slurm user has, `sbatch --wrap true` in a shell loop then waiting
# for the queue to drain; and the time from a task becoming ready to its job
# running, against sbatch to RUNNING in squeue. Same run, alternating, medians.
#   meson test -C build --benchmark slurm -v
#   tests/bench/bench_slurm.sh ORCHFS CLUSTER_SH
# Knobs: BENCH_ROUNDS (default 3), BENCH_JOBS (default 500), BENCH_CPUS (the
# slots the cluster advertises; default 8).
set -u -o pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh" || exit 2
[ $# -eq 2 ] || { echo "usage: $0 ORCHFS CLUSTER_SH" >&2; exit 2; }
orchfs=$1 cluster=$2
rounds=${BENCH_ROUNDS:-3}
njobs=${BENCH_JOBS:-500}
mount_wait_s=10
stop_wait_s=10
bench_tmp orchfs-slbench
command -v sbatch >/dev/null || { echo "Slurm is not installed" >&2; exit 2; }

# a cluster of its own, on ports of its own
export SLURM_TEST_CPUS=${BENCH_CPUS:-8} SLURM_TEST_CTLD_PORT=26817 SLURM_TEST_SLURMD_PORT=26818
bench_stop_others() { "$cluster" stop "$tmp/cluster" >/dev/null 2>&1; }
"$cluster" start "$tmp/cluster" >/dev/null || exit 1
. "$tmp/cluster/env"
export SLURM_CONF

mkdir -p "$tmp/mnt" "$tmp/state" || exit 1
bench_orchfs "$tmp/mnt" "$tmp/state" "$tmp/orchfs.log" --runner slurm --slurm-poll-ms 200 \
	--max-workers "$njobs" || exit 1
M=$tmp/mnt

now_ms() { echo $(($(date +%s%N) / 1000000)); }
drained() { [ -z "$(squeue -h -o %i)" ]; }

# loop: jobs/s of N `sbatch --wrap true`, until the queue is empty
run_loop() {
	local t0 t1 i
	t0=$(now_ms)
	for ((i = 0; i < njobs; i++)); do
		sbatch --parsable --output=/dev/null --wrap true >/dev/null || return 1
	done
	until drained; do sleep 0.05; done
	t1=$(now_ms)
	awk -v n="$njobs" -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", n * 1000 / ms }'
}

# plan ID: tasks/s of N `true` tasks through orchfs
run_plan() {
	local id=$1 t0 t1 st i
	awk -v id="$id" -v n="$njobs" 'BEGIN { printf "{\"id\":\"%s\",\"tasks\":[", id
		for (i = 0; i < n; i++) printf "%s{\"id\":\"%s-%d\",\"command\":\"true\"}", i ? "," : "", id, i
		print "]}" }' >"$tmp/plan.json"
	t0=$(now_ms)
	cat "$tmp/plan.json" >"$M/mma/tracks/create" || return 1
	for ((i = 0; i < 60000; i++)); do
		st=$(cat "$M/mma/tracks/$id/status")
		[ "$st" == done ] || [ "$st" == failed ] && break
		sleep 0.01
	done
	t1=$(now_ms)
	[ "$st" == done ] || { echo "track $id: $st" >&2; return 1; }
	awk -v n="$njobs" -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", n * 1000 / ms }'
}

# ms from sbatch to RUNNING in squeue
latency_loop() {
	local t0 j
	t0=$(now_ms)
	j=$(sbatch --parsable --output=/dev/null --wrap 'sleep 2') || return 1
	until [ "$(squeue -h -j "$j" -o %T)" == RUNNING ]; do sleep 0.01; done
	echo $(($(now_ms) - t0))
	scancel "$j"
	until drained; do sleep 0.05; done
}

# ms from a task's plan write (ready at once) to its job RUNNING in squeue
latency_orchfs() {
	local id=$1 t0 w j
	t0=$(now_ms)
	echo "{\"id\":\"$id\",\"tasks\":[{\"id\":\"$id-t\",\"command\":\"sleep 2\"}]}" >"$M/mma/tracks/create" || return 1
	until w=$(readlink "$M/mma/tasks/$id-t/worker" 2>/dev/null) &&
		j=$(jq -r '.slurm.job_id // empty' "$M/mma/workers/${w##*/}/info.json") && [ -n "$j" ] &&
		[ "$(squeue -h -j "$j" -o %T)" == RUNNING ]; do sleep 0.01; done
	echo $(($(now_ms) - t0))
	echo "${w##*/}" >"$M/mma/workers/kill"
	until drained; do sleep 0.05; done
}

declare -A v=()
for ((r = 1; r <= rounds; r++)); do
	l=$(run_loop) || exit 1
	o=$(run_plan "p$r") || exit 1
	ll=$(latency_loop) || exit 1
	lo=$(latency_orchfs "l$r") || exit 1
	v[loop]+="$l " v[orchfs]+="$o " v[lloop]+="$ll " v[lorchfs]+="$lo "
	echo "round $r: sbatch loop $l jobs/s, orchfs $o tasks/s; ready->running: sbatch $ll ms, orchfs $lo ms"
done
echo "--- medians of $rounds rounds, $njobs jobs of true, $SLURM_TEST_CPUS slots"
l=$(bench_median %.1f "${v[loop]}")
o=$(bench_median %.1f "${v[orchfs]}")
bench_row "Slurm true jobs/s" "$o" "sbatch loop" "$l" "$(bench_ratio "$o" "$l")" \
	"$(bench_spread %.1f "${v[orchfs]}")"
l=$(bench_median %.0f "${v[lloop]}")
o=$(bench_median %.0f "${v[lorchfs]}")
bench_row "ready to RUNNING (ms)" "$o" "sbatch" "$l" "$(bench_ratio "$o" "$l")" \
	"$(bench_spread %.0f "${v[lorchfs]}")"
