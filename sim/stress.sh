#!/usr/bin/env bash
# stress: a 1,000-task random DAG on one orchfs with --max-workers 8. Each
# task depends on 0-3 earlier tasks (so the plan is acyclic), runs `true` or
# `exit 0`, and about 2% fail once and succeed on their retry (retries=1, a
# marker file). The plan is created in one write (`cat plan.json >
# mma/tracks/create`); while it runs the DAG is mutated (add_dep and
# remove_dep among tasks not started yet, hold some and release them once
# everything else is done, add tasks with JSON add_task). Then the whole event
# history (`since 0` on the events file) is checked: no task's worker spawned
# before each of its deps (at that seq, after dag.dep_added/dep_removed) had
# its last worker exit with status exited, no task ran twice without a retry
# between, never more than 8 workers at once, the DAG from the events equals
# dag.json. It prints tasks/s and, in the same run, a baseline of 1,000
# sequential posix_spawn + waitpid of `sh -c true`, and their ratio.
#
#   sim/stress.sh                        # own daemon: $ORCHFS, else ../build/fs/orchfs
#   SIM_SEED=42 sim/stress.sh            # another random DAG (default seed 1;
#                                        # SIM_SEED=random: a new one each run)
#   ORCHFS_MOUNT=~/orchfs sim/stress.sh  # a running orchfs instead
#
# Prints a summary and a last line "N passed, M failed"; exits 0 only when
# every expectation held. Every process and mount it started is gone at exit.
set -u
SIM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAME=stress
PREFIX=s
SHARED_PREFIX=st$$x # ids that cannot clash with what the instance holds
# A fixed seed by default, so that tasks/s compares across runs and commits.
SIM_SEED=${SIM_SEED:-1}
[ "$SIM_SEED" == random ] && SIM_SEED=$(($(date +%s%N) / 1000 % 1000000))
NTASKS=1000
MAXW=8
. "$SIM_DIR/lib.sh"

need jq
need python3 "python3 (for the posix_spawn baseline)"
if [ "$OWN" == 1 ]; then
	need_own_daemon
	start_daemon --kill-grace 1 --max-workers 8 --http off --ws off
	wait_mount
else
	attach_mount
	echo 8 >"$M/mma/pipeline/max_workers"
fi
announce
echo "# seed $SIM_SEED (SIM_SEED=$SIM_SEED reproduces this DAG)"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- the events, from the start ---------------------------------------------
SEQ0=0
[ "$OWN" == 0 ] && SEQ0=$(jq .seq "$M/state.json")
(exec 3<>"$M/events" && printf 'since %s\n' "$SEQ0" >&3 && exec cat <&3) >"$T/events.jsonl" 2>"$T/events.err" &
BG_PIDS+=($!)

# --- the plan: task i depends on 0-3 of tasks 0..i-1 -------------------------
# Half of the deps are among the 20 tasks before (long chains), half anywhere.
mkdir -p "$T/mk"
awk -v n="$NTASKS" -v seed="$SIM_SEED" -v p="$P" -v k="$TRACK" -v mk="$T/mk" -v flaky="$T/flaky.txt" -v edges="$T/edges.txt" '
BEGIN {
	srand(seed)
	printf "{\"id\":\"%s\",\"title\":\"stress sim\",\"tasks\":[\n", k
	for (i = 0; i < n; i++) {
		nd = int(rand() * 4)
		if (nd > i) nd = i
		deps = ""
		depth[i] = 1
		split("", used)
		for (j = 0; j < nd; j++) {
			if (rand() < 0.5) { lo = i - 20; if (lo < 0) lo = 0; d = lo + int(rand() * (i - lo)) }
			else d = int(rand() * i)
			if (d in used) continue
			used[d] = 1
			if (depth[d] + 1 > depth[i]) depth[i] = depth[d] + 1
			deps = deps (deps == "" ? "" : ",") "\"" p d "\""
			print p d, p i > edges
		}
		r = rand()
		if (r < 0.02) {
			cmd = "[ -e " mk "/" p i " ] || { : >" mk "/" p i "; exit 1; }"
			print p i > flaky
			extra = ",\"retries\":1"
		} else {
			cmd = r < 0.51 ? "true" : "exit 0"
			extra = ""
		}
		printf "%s{\"id\":\"%s%d\",\"command\":\"%s\",\"deps\":[%s]%s}\n", i ? "," : "", p, i, cmd, deps, extra
	}
	print "]}"
	for (i = 0; i < n; i++) {
		if (depth[i] > longest) longest = depth[i]
	}
	print longest > (edges ".depth")
}' >"$T/plan.json"
touch "$T/flaky.txt" "$T/edges.txt"
NFLAKY=$(wc -l <"$T/flaky.txt")
NEDGES=$(wc -l <"$T/edges.txt")
PLAN_BYTES=$(wc -c <"$T/plan.json")
DEPTH=$(cat "$T/edges.txt.depth")
check "the plan ($NTASKS tasks, $NEDGES deps, longest chain $DEPTH, $NFLAKY flaky; $PLAN_BYTES bytes) fits one write of cat (128 KiB)" test "$PLAN_BYTES" -lt 131072

# The pipeline is paused while the plan goes in and its holds are placed:
# close(2) of a plan this large returns once its inotify announcements are
# made (README, "The daemon"), and on a slow build the plan could be done by then.
T0=$(now_ms)
echo >"$M/mma/pipeline/pause"
cat "$T/plan.json" >"$M/mma/tracks/create"
check "cat plan.json > mma/tracks/create succeeds" test $? -eq 0

# --- mutations while it runs -------------------------------------------------
# held, first thing: the last 10 tasks of the plan that wait for a dep (the
# scheduler goes in creation order, so these start last), in one batch; if a
# task started meanwhile (EBUSY refuses the batch whole), one write each.
mapfile -t HOLDC < <(awk '{ print $2 }' "$T/edges.txt" | sed "s/^$P//" | sort -un | tail -n 10 | sed "s/^/$P/")
HELD=()
REFUSED=()
HB=
for h in "${HOLDC[@]}"; do HB+="hold $h; "; done
if ctl "$M/mma/dag/mutate" "${HB%; }"; then
	HELD=("${HOLDC[@]}")
else
	for h in "${HOLDC[@]}"; do
		if ctl "$M/mma/dag/mutate" "hold $h"; then HELD+=("$h"); else REFUSED+=("$h: $(jq -r .error.message <<<"$RESULT")"); fi
	done
fi
[ ${#REFUSED[@]} -gt 0 ] && printf '#   hold refused: %s\n' "${REFUSED[@]}"
check "${#HELD[@]} tasks held (want >= 5)" test "${#HELD[@]}" -ge 5
echo >"$M/mma/pipeline/resume"

# Tasks not started yet, from the tail of the plan (the scheduler starts tasks
# in creation order, so these are the last to go).
jq -r --arg k "$TRACK" '.nodes[] | select(.track == $k and (.status == "blocked" or .status == "ready")) | .id' \
	"$M/mma/dag.json" | tail -n 300 >"$T/pending.txt"
NPEND=$(wc -l <"$T/pending.txt")
check "$NPEND tasks not started yet to mutate among (want >= 100)" test "$NPEND" -ge 100
idx() { echo "${1#"$P"}"; }
mapfile -t PEND <"$T/pending.txt"
RANDOM=$SIM_SEED
# pick: a random pending task into PICK (no subshell: it would reseed RANDOM)
pick() { PICK=${PEND[$((RANDOM % ${#PEND[@]}))]}; }

# one batch on one line: add_dep among pending tasks (later waits for
# earlier, so no cycle) and remove_dep of three of their plan deps
BATCH=
for _ in $(seq 1 30); do
	pick
	a=$PICK
	pick
	b=$PICK
	[ "$(idx "$a")" -eq "$(idx "$b")" ] && continue
	if [ "$(idx "$a")" -gt "$(idx "$b")" ]; then BATCH+="add_dep $a $b; "; else BATCH+="add_dep $b $a; "; fi
done
NRM=0
while read -r d t; do
	grep -qxF "$t" "$T/pending.txt" || continue
	BATCH+="remove_dep $t $d; "
	NRM=$((NRM + 1))
	[ "$NRM" -ge 3 ] && break
done < <(awk 'NR % 7 == 0' "$T/edges.txt" | tac)
ctl "$M/mma/dag/mutate" "${BATCH%; }"
check "one batch of $(grep -o add_dep <<<"$BATCH" | wc -l) add_dep and $NRM remove_dep is applied" jqe '.applied > 0' <<<"$RESULT" ||
	echo "#   $RESULT"

# add_task (JSON array): 5 new tasks, each after a few early tasks, and a
# pending task (later in the plan) that waits for each
ADDED=()
{
	printf '['
	for i in 1 2 3 4 5; do
		id=${P}n$i
		ADDED+=("$id")
		pick
		late=$PICK
		d1=$((RANDOM % 500))
		d2=$(((d1 + 1 + RANDOM % 499) % 500))
		d1=$P$d1 d2=$P$d2
		[ "$i" -gt 1 ] && printf ','
		printf '{"op":"add_task","track":"%s","task":{"id":"%s","command":"true","deps":["%s","%s"]}},' "$TRACK" "$id" "$d1" "$d2"
		printf '{"op":"add_dep","task":"%s","dep":"%s"}' "$late" "$id"
	done
	printf ']'
} >"$T/add.json"
ctl_file "$M/mma/dag/mutate" "$T/add.json"
check "a JSON array of 5 add_task and 5 add_dep is applied" jqe '.applied == 10' <<<"$RESULT" || echo "#   $RESULT"
ALLN=$((NTASKS + ${#ADDED[@]}))

# --- everything but the held tasks (and what waits for them) finishes -------
quiet() {
	jq -e --arg k "$TRACK" '[.nodes[] | select(.track == $k and (.status == "running" or .status == "ready"))] == []' \
		"$M/mma/dag.json" >/dev/null
}
wait_for "everything not waiting for a held task finishes" 40 quiet
NHELD_NOW=$(jq --arg k "$TRACK" '[.nodes[] | select(.track == $k and .status == "held")] | length' "$M/mma/dag.json")
expect_eq "the ${#HELD[@]} held tasks are still held" "$NHELD_NOW" "${#HELD[@]}"
BLOCKED_NOW=$(jq --arg k "$TRACK" '[.nodes[] | select(.track == $k and .status == "blocked")] | length' "$M/mma/dag.json")
REL=
for h in "${HELD[@]}"; do REL+="release $h; "; done
ctl "$M/mma/dag/mutate" "${REL%; }"
check "release of the held tasks (one batch) is applied; $BLOCKED_NOW tasks were blocked behind them" test $? -eq 0
wait_for "the track is done (bounded wait)" 40 status_is "$M/mma/tracks/$TRACK/status" done
T_DONE=$(now_ms)

# --- checks from the whole event history --------------------------------------
LAST=$(jq .seq "$M/state.json")
wait_for "the events file has every event up to seq $LAST" 10 eval \
	'[ "$(tail -n1 "$T/events.jsonl" | jq .seq 2>/dev/null)" -ge "$LAST" ]'
kill "${BG_PIDS[0]}" 2>/dev/null
summarize_events
check "$(jq .last "$T/check.json") events, contiguous from seq $((SEQ0 + 1)) (no gap)" jqe --argjson s "$((SEQ0 + 1))" '.gaps == 0 and .first == $s' "$T/check.json"
check "no task's worker spawned before all its deps' last worker exited with status exited" \
	jqe '.viol == []' "$T/check.json" || jq -c '.viol[:5]' "$T/check.json"
check "no task ran twice without a retry (task.retry or retry by hand) between" \
	jqe '.dbl == []' "$T/check.json" || jq -c '.dbl[:5]' "$T/check.json"
expect_eq "all $ALLN tasks are done" "$(jq --arg k "$TRACK" '[.nodes[] | select(.track == $k and .status == "done")] | length' "$M/mma/dag.json")" "$ALLN"
expect_eq "$ALLN tasks with a worker, one each, and two for each of the $NFLAKY flaky ones" \
	"$(jq -r --arg p "$P" '[.spawns | to_entries[] | select(.key | startswith($p)) | .value] | "\(length) \(add)"' "$T/check.json")" \
	"$ALLN $((ALLN + NFLAKY))"
expect_eq "task.retry once for each flaky task and for no other" \
	"$(jq -r --arg p "$P" '[.retries | to_entries[] | select(.key | startswith($p)) | select(.value == 1) | .key] | sort | join(" ")' "$T/check.json")" \
	"$(sort "$T/flaky.txt" | tr '\n' ' ' | sed 's/ $//')"
check "the plan's $NEDGES deps arrived as dag.dep_added events in track.created's batch" eval \
	'[ "$(jq -rs --arg k "$TRACK" "(map(select(.type == \"track.created\" and .data.track == \$k))[0].seq) as \$c | [.[] | select(.seq > \$c and .type == \"dag.dep_added\")] | .[:$NEDGES] | map(\"\(.data.dep) \(.data.task)\") | sort | join(\",\")" "$T/events.jsonl")" == "$(sort "$T/edges.txt" | paste -sd,)" ]'
check "the DAG from the events equals dag.json's edges (with the mutations)" same_dag "$M/mma/dag.json"
MAXRUN=$(jq -s --arg k "$TRACK" 'reduce (.[] | select((.type == "worker.spawned" and .data.track == $k) or .type == "worker.exited")) as $e
	({run: 0, max: 0, ours: {}};
	 if $e.type == "worker.spawned" then .ours[$e.data.id | tostring] = 1 | .run += 1 | .max = ([.max, .run] | max)
	 elif .ours[$e.data.id | tostring] then .run -= 1 else . end) | .max' "$T/events.jsonl")
check "never more than $MAXW workers at once (most: $MAXRUN)" test "$MAXRUN" -le "$MAXW"
REL_SEQ=$(jq -s -r --arg h "${HELD[0]:-none}" '[.[] | select(.type == "task.status" and .data.task == $h and .data.from == "held")][0].seq // 0' "$T/events.jsonl")
check "no held task spawned before its release" jqe -s --argjson h "$(printf '%s\n' "${HELD[@]}" | jq -R . | jq -s .)" \
	'(reduce .[] as $e ({}; if $e.type == "task.status" and ($h | index($e.data.task)) and $e.data.from == "held" then .[$e.data.task] = $e.seq else . end)) as $rel
	 | [.[] | select(.type == "worker.spawned") | .data.task as $t | select(($h | index($t)) and .seq < $rel[$t])] == []' "$T/events.jsonl"
expect_eq "state.json: as many workers of this track as worker.spawned events" \
	"$(jq --arg k "$TRACK" '[.workers[] | select(.track == $k)] | length' "$M/state.json")" \
	"$(jq -r --arg p "$P" '[.spawns | to_entries[] | select(.key | startswith($p)) | .value] | add' "$T/check.json")"
WRUNS=$(jq -r --arg p "$P" '[.spawns | to_entries[] | select(.key | startswith($p)) | .value] | add' "$T/check.json")

# --- throughput ----------------------------------------------------------
# orchfs: every task from the plan write to the track done (the hold and
# release included); the main phase: tasks done by the time only held work
# was left. Baseline: 1,000 sequential posix_spawn + waitpid of sh -c true.
ELAPSED=$((T_DONE - T0))
MAIN_DONE=$(jq -s --arg k "$TRACK" --argjson r "$REL_SEQ" '[.[] | select(.type == "task.status" and .data.track == $k and .data.to == "done" and .seq < $r)] | length' "$T/events.jsonl")
MAIN_MS=$(jq -s --arg k "$TRACK" --argjson r "$REL_SEQ" '
	def ms: (.ts[0:19] + "Z" | fromdate) * 1000 + (.ts[20:23] | tonumber);
	(map(select(.type == "track.created" and .data.track == $k))[0] | ms) as $c
	| ([.[] | select(.type == "worker.exited" and .seq < $r) | ms] | max) - $c' "$T/events.jsonl")
BASE_MS=$(python3 -c '
import os, time
t = time.perf_counter()
for _ in range(1000):
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "true"], os.environ)
    os.waitpid(pid, 0)
print(round((time.perf_counter() - t) * 1000))')
RATE=$(awk -v n="$ALLN" -v ms="$ELAPSED" 'BEGIN { printf "%.0f", n * 1000 / ms }')
MAIN_RATE=$(awk -v n="$MAIN_DONE" -v ms="$MAIN_MS" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')
BASE_RATE=$(awk -v ms="$BASE_MS" 'BEGIN { printf "%.0f", 1000 * 1000 / ms }')
check "throughput figures were measured" test "$ELAPSED" -gt 0 -a "$BASE_MS" -gt 0

# --- teardown: nothing left behind ----------------------------------------
end_checks
echo "# seed $SIM_SEED: $ALLN tasks ($WRUNS worker runs, $NFLAKY retried), longest chain $DEPTH, ${#HELD[@]} held and released, max $MAXRUN workers at once"
echo "# orchfs:   $ALLN tasks in $ELAPSED ms = $RATE tasks/s (plan write to track done, hold/release included)"
echo "#           main phase: $MAIN_DONE tasks in $MAIN_MS ms = $MAIN_RATE tasks/s (track.created to the last exit before the release)"
echo "# baseline: 1000 posix_spawn+waitpid of sh -c true in $BASE_MS ms = $BASE_RATE spawns/s"
echo "# ratio:    orchfs/baseline = $(awk -v a="$RATE" -v b="$BASE_RATE" 'BEGIN { printf "%.2f", a / b }') (main phase $(awk -v a="$MAIN_RATE" -v b="$BASE_RATE" 'BEGIN { printf "%.2f", a / b }'))"
finish
