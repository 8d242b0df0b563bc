#!/usr/bin/env bash
# track_lifecycle: a headless simulation of one track's whole life through the
# mount alone (cat, echo, inotifywait; no curl). It writes a plan of 9 tasks
# whose DAG has a diamond (a -> b,c -> d), watches with `inotifywait -m -r` and
# with `cat events` (since 0), lets workers report token usage through their
# own mma/workers/ID/usage, mutates the DAG mid-flight (JSON add_task, add_dep,
# a cycle refused with ELOOP, an atomic batch refused whole), freezes (worker
# processes in state T), pauses (nothing new starts), kills a worker, retries a
# failed and a killed task (and one with retries=1 retries itself), waits for
# the track to be done, then checks every final status, the event order
# against the DAG, what inotifywait saw, and the cost in financial.json to the
# micro-dollar.
#
#   sim/track_lifecycle.sh                       # own daemon: $ORCHFS, else ../build/fs/orchfs
#   ORCHFS=/tmp/b2/fs/orchfs sim/track_lifecycle.sh
#   ORCHFS_MOUNT=~/orchfs sim/track_lifecycle.sh # a running orchfs instead
#
# Prints a summary and a last line "N passed, M failed"; exits 0 only when
# every expectation held. Every process and mount it started is gone at exit.
set -u
SIM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAME=track_lifecycle
PREFIX=life
SHARED_PREFIX=life$$ # ids that cannot clash with what the instance holds
. "$SIM_DIR/lib.sh"

need jq
need inotifywait "inotifywait (inotify-tools)"
if [ "$OWN" == 1 ]; then
	need_own_daemon
	write_pricing
	# SIM_RUNNER=slurm (sim/slurm_lifecycle.sh): every task a Slurm job
	runner=()
	[ "${SIM_RUNNER:-local}" == slurm ] && runner=(--runner slurm --slurm-poll-ms 200)
	start_daemon --pricing "$T/pricing.json" --kill-grace 1 --max-workers 6 --http off --ws off \
		"${runner[@]}"
	wait_mount
else
	attach_mount
	[ "$OLD_MAX" -lt 6 ] && echo 6 >"$M/mma/pipeline/max_workers"
fi
announce

# expect_refused NAME ERRNO FILE CONTENT: the write fails, the descriptor
# reads back the error object with ERRNO, and last_error holds the same.
expect_refused() {
	local n=$1 want=$2 file=$3 content=$4 le
	if ctl "$file" "$content"; then
		fail "$n" "the write succeeded; want $want"
		return
	fi
	le=$(cat "$M/last_error")
	if jqe --arg e "$want" '.error.errno == $e' <<<"$RESULT" && [ "$le" == "$RESULT" ]; then
		pass "$n ($want: $(jq -r .error.message <<<"$le"))"
	else
		fail "$n" "read back [$RESULT], last_error [$le]"
	fi
}
task() { cat "$M/mma/tasks/$P-$1/status" 2>/dev/null; }
task_is() { [ "$(task "$1")" == "$2" ]; }
worker_of() { jq -r '.workers[-1].id // empty' "$M/mma/tasks/$P-$1/info.json" 2>/dev/null; }
pid_of() { jq -r '.pid' "$M/mma/workers/$1/info.json" 2>/dev/null; }

# --- watchers: inotifywait over the whole mount, and the events stream ----
SEQ0=0
[ "$OWN" == 0 ] && SEQ0=$(jq .seq "$M/state.json")
inotifywait -m -r --format '%e %w%f' "$M" >"$T/inotify.log" 2>"$T/inotify.err" &
BG_PIDS+=($!)
poll 10 grep -q 'Watches established' "$T/inotify.err" ||
	fail "inotifywait sets its watches" "$(cat "$T/inotify.err")"
(exec 3<>"$M/events" && printf 'since %s\n' "$SEQ0" >&3 && exec cat <&3) >"$T/events.jsonl" 2>"$T/events.err" &
BG_PIDS+=($!)

# --- the plan --------------------------------------------------------------
# Workers report their usage through the mount.
write_worker <<'EOF'
echo "$line" >"$ORCHFS_MOUNT/mma/workers/$ORCHFS_WORKER_ID/usage" || exit 3
EOF
write_plan "track lifecycle sim"

ctl_file "$M/mma/tracks/create" "$T/plan.json"
check "the plan is created (one write of $(wc -c <"$T/plan.json") bytes)" test $? -eq 0
check "create reads back the track with its 9 tasks" jqe --arg k "$TRACK" '.id == $k and (.tasks | length) == 9' <<<"$RESULT"
wait_for "a, g and h run" 5 eval 'task_is a running && task_is g running && task_is h running'
expect_eq "b waits for a (blocked)" "$(task b)" blocked
WG=$(worker_of g)
WA=$(worker_of a)
WH=$(worker_of h)
# a Slurm job is `pending` while queued; the kill and the freeze below are
# about workers that run
all_run() {
	local x
	for x in "$@"; do status_is "$M/mma/workers/$x/status" running || return 1; done
}
wait_for "their workers run (not queued)" 30 all_run "$WG" "$WA" "$WH"

# --- DAG mutations mid-flight ----------------------------------------------
ctl "$M/mma/dag/mutate" "$(jq -nc --arg k "$TRACK" --arg p "$P" --arg cmd "$(w n m1 1234 321 0)" \
	'{op: "add_task", track: $k, task: {id: "\($p)-n", command: $cmd, deps: ["\($p)-d"]}}')"
check "add_task (JSON) adds n, which waits for d" test $? -eq 0
expect_eq "n is blocked" "$(task n)" blocked
ctl "$M/mma/dag/mutate" "add_dep $P-x $P-n"
check "add_dep x n is applied" jqe '.applied == 1' <<<"$RESULT"
check "x's deps now list a and n" eval '[ "$(sort "$M/mma/tasks/$P-x/deps" | tr "\n" " ")" == "$P-a $P-n " ]'
expect_refused "add_dep a d (a cycle) is refused" ELOOP "$M/mma/dag/mutate" "add_dep $P-a $P-d"
check "the ELOOP message names the cycle" eval 'jq -r .error.message "$M/last_error" | grep -q cycle'
check "a's deps are unchanged (none)" test ! -s "$M/mma/tasks/$P-a/deps"
expect_refused "the batch 'hold x; add_dep a nope' is refused whole" ENOENT "$M/mma/dag/mutate" "hold $P-x; add_dep $P-a $P-nope"
expect_eq "after the refused batch, x is not held" "$(task x)" blocked

# --- kill a worker ----------------------------------------------------------
ctl "$M/mma/workers/kill" "$WG TERM grace=1"
check "kill worker $WG (task g)" test $? -eq 0
wait_for "worker $WG is killed" 5 status_is "$M/mma/workers/$WG/status" killed
wait_for "task g is killed" 3 task_is g killed
expect_eq "a killed task does not fail the track" "$(cat "$M/mma/tracks/$TRACK/status")" active

# --- freeze, then resume ----------------------------------------------------
PIPE_TOUCHED=1
ctl "$M/mma/pipeline/pause" freeze
check "freeze reads back frozen" jqe '.status == "frozen"' <<<"$RESULT"
expect_eq "pipeline/status is frozen" "$(cat "$M/mma/pipeline/status")" frozen
# stopped WORKER: its process in state T, or, a Slurm job, SUSPENDED
stopped() {
	if [ "${SIM_RUNNER:-local}" == slurm ]; then
		jqe '.slurm.state == "SUSPENDED"' "$M/mma/workers/$1/info.json"
	else
		[ "$(proc_state "$(pid_of "$1")")" == T ]
	fi
}
# going WORKER: running again
going() {
	if [ "${SIM_RUNNER:-local}" == slurm ]; then
		jqe '.slurm.state == "RUNNING"' "$M/mma/workers/$1/info.json"
	else
		local s
		s=$(proc_state "$(pid_of "$1")")
		[ -n "$s" ] && [ "$s" != T ]
	fi
}
wait_for "frozen: a's worker $WA is stopped" 3 stopped "$WA"
wait_for "frozen: h's worker $WH is stopped" 3 stopped "$WH"
ctl "$M/mma/pipeline/resume" resume
check "resume reads back running" jqe '.status == "running"' <<<"$RESULT"
wait_for "resumed: a's worker runs again" 3 going "$WA"
wait_for "resumed: h's worker runs again" 3 going "$WH"

# --- pause: nothing new starts ---------------------------------------------
ctl "$M/mma/pipeline/pause" pause
expect_eq "pipeline/status is paused" "$(cat "$M/mma/pipeline/status")" paused
NW=$(jq '.total' "$M/mma/workers.json")
gate a
wait_for "a (started before the pause) finishes: done" 5 task_is a done
sleep 0.6
check "while paused, b, c and f are ready and not started" eval 'task_is b ready && task_is c ready && task_is f ready'
expect_eq "while paused, no worker was started" "$(jq '.total' "$M/mma/workers.json")" "$NW"
ctl "$M/mma/pipeline/resume" resume
wait_for "after resume, b, c and f start (or are done)" 5 started_or_done b c f

# --- retry the killed task; let h, f, d, n, x finish ----------------------
ctl "$M/mma/dag/mutate" "retry $P-g"
check "retry g (killed) is applied" test $? -eq 0
gate h
wait_for "g, its second attempt, is done" 5 task_is g done
wait_for "f fails once and retries itself (retries=1): done" 5 task_is f done
wait_for "b, c, d, n, x, h are done" 10 eval '(for x in b c d n x h; do task_is $x done || exit 1; done)'
wait_for "e runs" 5 task_is e running

# --- a task that fails with no retries, then retry by hand ------------------
gate e
wait_for "e fails (retries 0)" 5 task_is e failed
wait_for "the track is failed: nothing else can run" 3 status_is "$M/mma/tracks/$TRACK/status" failed
ctl "$M/mma/dag/mutate" "retry $P-e"
check "retry e (failed) is applied" test $? -eq 0
wait_for "the track is done (bounded wait)" 10 status_is "$M/mma/tracks/$TRACK/status" done

# --- final statuses -------------------------------------------------------
final_checks "$M/mma/workers.json"
expect_eq "readlink tasks/e/worker is its last attempt" "$(readlink "$M/mma/tasks/$P-e/worker")" \
	"../../workers/$(worker_of e)"

# --- the events stream: order against the DAG ------------------------------
LAST=$(jq .seq "$M/state.json")
wait_for "cat events has every event up to seq $LAST" 5 eval \
	'[ "$(tail -n1 "$T/events.jsonl" | jq .seq 2>/dev/null)" -ge "$LAST" ]'
event_checks "$M/mma/dag.json" dag.json "a frozen and a running"

# --- inotify ----------------------------------------------------------------
kill "${BG_PIDS[0]}" 2>/dev/null
sed "s|^\([^ ]*\) $M/|\1 |" "$T/inotify.log" >"$T/inotify.rel"
WIDS=$(jq -r --arg k "$TRACK" '.workers[] | select(.track == $k) | .id' "$M/mma/workers.json")
missing=
for id in $WIDS; do grep -qx "CREATE,ISDIR mma/workers/$id" "$T/inotify.rel" || missing+=" $id"; done
check "inotifywait saw CREATE of every worker dir ($(echo $WIDS | wc -w) workers)${missing:+; missing:$missing}" test -z "$missing"
missing=
for x in $ALL; do grep -qx "MODIFY mma/tasks/$P-$x/status" "$T/inotify.rel" || missing+=" $x"; done
check "inotifywait saw MODIFY of every task's status file${missing:+; missing:$missing}" test -z "$missing"
check "inotifywait saw CREATE of the task dir n (add_task)" grep -qx "CREATE,ISDIR mma/tasks/$P-n" "$T/inotify.rel"
check "inotifywait saw MODIFY of mma/pipeline/status" grep -qx "MODIFY mma/pipeline/status" "$T/inotify.rel"
check "inotifywait saw MODIFY of metrics/financial.json" grep -qx "MODIFY metrics/financial.json" "$T/inotify.rel"

# --- money ---------------------------------------------------------------
money_checks "$M/metrics/financial.json" financial.json

# --- teardown: nothing left behind ----------------------------------------
SUMMARY=$(summary "$M/metrics/financial.json")
end_checks
echo "# $SUMMARY"
finish
