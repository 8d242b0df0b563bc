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
export LC_ALL=C

SIM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ORCHFS=${ORCHFS:-$SIM_DIR/../build/fs/orchfs}
NAME=track_lifecycle
SIM_TIMEOUT=${SIM_TIMEOUT:-100}
START_NS=$(date +%s%N)

PASSED=0
FAILED=0
FAILED_NAMES=()
pass() { PASSED=$((PASSED + 1)); printf 'ok   - %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); printf 'FAIL - %s%s\n' "$1" "${2:+: $2}"; }
check() {
	local n=$1
	shift
	if "$@"; then pass "$n"; else fail "$n" "command failed: $*"; return 1; fi
}
expect_eq() { if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "got [$2], want [$3]"; fi; }
# poll TIMEOUT_S CMD...: until CMD succeeds, every 50 ms; silent.
poll() {
	local steps=$(($1 * 20)) i=0
	shift
	until "$@" 2>/dev/null; do
		[ "$i" -ge "$steps" ] && return 1
		sleep 0.05
		i=$((i + 1))
	done
}
# wait_for NAME TIMEOUT_S CMD...: poll, counted as one expectation.
wait_for() {
	local n=$1 t=$2
	shift 2
	if poll "$t" "$@"; then pass "$n"; else fail "$n" "not true within ${t}s: $*"; fi
}
jqe() { jq -e "$@" >/dev/null 2>&1; }
status_is() { [ "$(cat "$1" 2>/dev/null)" == "$2" ]; }
# is_mounted DIR: DIR is a mount point in /proc/mounts (even a dead one).
is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }
proc_state() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; }

# --- where: our own daemon, or a running one ------------------------------
T=$(mktemp -d /tmp/sim-XXXXXX)
T=$(cd "$T" && pwd -P)
OWN=1
if [ -n "${ORCHFS_MOUNT:-}" ]; then
	OWN=0
	M=$ORCHFS_MOUNT
	P=life$$       # ids that cannot clash with what the instance holds
else
	M=$T/mnt
	P=life
fi
TRACK=$P
DAEMON_PID=
BG_PIDS=()
TORN=
OLD_MAX=
WATCHDOG=
PIPE_TOUCHED=

# Workers of this sim still alive: with our own daemon every process whose
# environment has ORCHFS_MOUNT=$M; on a shared instance those of our track.
leftover_pids() {
	local f want
	if [ "$OWN" == 1 ]; then want="ORCHFS_MOUNT=$M"; else want="ORCHFS_TRACK=$TRACK"; fi
	for f in /proc/[0-9]*/environ; do
		if { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qxF "$want"; then
			f=${f#/proc/}
			echo "${f%/environ}"
		fi
	done
}

# teardown: stops what this sim started; idempotent (end of the run, or trap).
teardown() {
	[ -n "$TORN" ] && return
	TORN=1
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ "$OWN" == 1 ]; then
		if [ -n "$DAEMON_PID" ]; then
			# fusermount3 -u may be refused for a moment (EBUSY); then SIGTERM,
			# which makes the daemon unmount and stop just the same
			if is_mounted "$M"; then
				if fusermount3 -u "$M" 2>"$T/umount.err"; then
					UMOUNT_FIRST=ok
				else
					UMOUNT_FIRST=$(cat "$T/umount.err")
					poll 2 fusermount3 -u "$M" || kill -TERM "$DAEMON_PID" 2>/dev/null
				fi
			fi
			poll 8 eval "! kill -0 $DAEMON_PID" || kill -KILL "$DAEMON_PID" 2>/dev/null
			DAEMON_RC=0
			wait "$DAEMON_PID" 2>/dev/null || DAEMON_RC=$?
		fi
	else
		[ -n "$OLD_MAX" ] && echo "$OLD_MAX" >"$M/mma/pipeline/max_workers" 2>/dev/null
		local s
		s=$(cat "$M/mma/pipeline/status" 2>/dev/null)
		[ "$s" != running ] && [ -n "$PIPE_TOUCHED" ] && echo resume >"$M/mma/pipeline/resume" 2>/dev/null
		for p in $(jq -r --arg k "$TRACK" '.tasks[]? | select(.status == "running" or .status == "blocked" or .status == "ready" or .status == "held") | .id' \
			"$M/mma/tracks/$TRACK/info.json" 2>/dev/null); do
			echo "cancel $p" >"$M/mma/dag/mutate" 2>/dev/null
		done
		poll 3 eval '[ -z "$(leftover_pids)" ]'
	fi
	for p in $(leftover_pids); do
		kill -KILL -- "-$p" 2>/dev/null
		kill -KILL "$p" 2>/dev/null
	done
	[ "$OWN" == 1 ] && is_mounted "$M" && fusermount3 -uz "$M" 2>/dev/null
	[ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
}
on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	teardown
	if [ -n "${KEEP_TMP:-}" ]; then
		echo "kept $T" >&2
	elif ! is_mounted "$T/mnt"; then
		rm -rf "$T"
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

skip_or_fail() {
	if [ "${CI:-}" == true ]; then
		echo "FAIL: $NAME: $*" >&2
		exit 1
	fi
	echo "SKIP: $NAME: $*" >&2
	exit 77
}

# A watchdog: a wedged mount would block this script in a read, so it kills
# our daemon (which aborts the FUSE connection) and then the script.
start_watchdog() {
	local me=$$
	(
		trap - EXIT INT TERM
		sleep "$SIM_TIMEOUT" &
		sp=$!
		trap 'kill $sp 2>/dev/null; exit 0' TERM
		wait $sp
		echo "TIMEOUT: $NAME ran over ${SIM_TIMEOUT}s; killing its daemon" >&2
		[ -s "$T/daemon.pid" ] && kill -KILL "$(cat "$T/daemon.pid")" 2>/dev/null
		kill -TERM "$me"
	) </dev/null >/dev/null &
	WATCHDOG=$!
}

command -v jq >/dev/null || skip_or_fail "jq is missing"
command -v inotifywait >/dev/null || skip_or_fail "inotifywait (inotify-tools) is missing"
if [ "$OWN" == 1 ]; then
	[ -e /dev/fuse ] || skip_or_fail "/dev/fuse is missing"
	command -v fusermount3 >/dev/null || skip_or_fail "fusermount3 is missing"
	[ -x "$ORCHFS" ] || { echo "FAIL: $NAME: no daemon at $ORCHFS (build it, or set ORCHFS)" >&2; exit 1; }
	mkdir -p "$M" "$T/state" "$T/work"
	cat >"$T/pricing.json" <<'EOF'
{"m1":{"input_per_mtok":3,"output_per_mtok":15,"cache_read_per_mtok":0.3,"cache_write_per_mtok":3.75},
 "m2":{"input_per_mtok":0.8,"output_per_mtok":4}}
EOF
	start_watchdog
	(cd "$T/work" && exec "$ORCHFS" -f --state-dir "$T/state" --pricing "$T/pricing.json" \
		--kill-grace 1 --max-workers 6 --http off --ws off "$M") >"$T/daemon.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	echo "$DAEMON_PID" >"$T/daemon.pid"
	if ! poll 5 eval 'mountpoint -q "$M" && cat "$M/mma/pipeline/status" >/dev/null'; then
		cat "$T/daemon.log" >&2
		kill -0 "$DAEMON_PID" 2>/dev/null || skip_or_fail "orchfs exited before the mount came up"
		skip_or_fail "the mount did not come up within 5 s"
	fi
else
	start_watchdog
	[ -f "$M/state.json" ] || { echo "FAIL: $NAME: $M is not an orchfs mount" >&2; exit 1; }
	OLD_MAX=$(cat "$M/mma/pipeline/max_workers")
	[ "$OLD_MAX" -lt 6 ] && echo 6 >"$M/mma/pipeline/max_workers"
fi
if [ "$OWN" == 1 ]; then WHERE="own daemon $ORCHFS"; else WHERE="a running instance"; fi
echo "# $NAME: orchfs at $M ($WHERE), track $TRACK"

# ctl FILE CONTENT: one write of CONTENT (one line) to the control FILE, then
# the result (or the error object) read back on the same descriptor into RESULT.
ctl() {
	local fd rc
	RESULT=
	exec {fd}<>"$1" || return 1
	printf '%s\n' "$2" >&"$fd" 2>/dev/null
	rc=$?
	IFS= read -r RESULT <&"$fd"
	exec {fd}>&-
	return $rc
}
# ctl_file FILE SRC: the same with the content of the file SRC, in one write.
ctl_file() {
	local fd rc
	RESULT=
	exec {fd}<>"$1" || return 1
	cat "$2" >&"$fd" 2>/dev/null
	rc=$?
	IFS= read -r RESULT <&"$fd"
	exec {fd}>&-
	return $rc
}
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
gate() { : >"$T/gate.$P-$1"; }

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
# One attempt of a task: report usage through the mount (and note it for the
# cost check), then per mode wait for a gate file, fail on the first attempt
# (flaky), or sleep until killed on the first attempt (long).
cat >"$T/w.sh" <<'EOF'
#!/bin/sh
# w.sh NAME MODEL IN OUT CACHE_READ MODES: one attempt of a sim task.
name=$1 model=$2 in=$3 out=$4 cr=$5 modes=,$6, dir=$(dirname "$0")
line="model=$model in=$in out=$out cache_read=$cr"
echo "$line" >"$ORCHFS_MOUNT/mma/workers/$ORCHFS_WORKER_ID/usage" || exit 3
echo "$ORCHFS_WORKER_ID $line" >>"$dir/usage.log"
case $modes in *,gate,*) while [ ! -e "$dir/gate.$name" ]; do sleep 0.05; done ;; esac
case $modes in *,flaky,*) [ -e "$dir/mark.$name" ] || { : >"$dir/mark.$name"; echo "$name: failing once" >&2; exit 1; } ;; esac
case $modes in *,long,*) [ -e "$dir/mark.$name" ] || { : >"$dir/mark.$name"; sleep 30; } ;; esac
echo "$name: done"
EOF
w() { printf 'sh %s/w.sh %s-%s %s %s %s %s %s' "$T" "$P" "$1" "$2" "$3" "$4" "$5" "${6:-plain}"; }
t() { # t ID DEPS(comma list) RETRIES W-ARGS...
	local id=$1 deps=$2 retries=$3
	shift 3
	jq -nc --arg id "$P-$id" --arg deps "$deps" --arg p "$P" --argjson r "$retries" --arg cmd "$(w "$id" "$@")" \
		'{id: $id, command: $cmd, retries: $r, deps: ($deps | split(",") | map(select(. != "") | "\($p)-\(.)"))}'
}
{
	printf '{"id":"%s","title":"track lifecycle sim","tasks":[' "$TRACK"
	t a "" 0 m1 1000 200 0 gate
	echo ,; t b a 0 m1 2000 500 100
	echo ,; t c a 0 m2 3000 700 0
	echo ,; t d b,c 0 m1 1500 300 200
	echo ,; t e d 0 m2 500 100 0 gate,flaky
	echo ,; t f a 1 m2 800 150 0 flaky
	echo ,; t g "" 0 m1 100 10 0 long
	echo ,; t h "" 0 m1 700 70 0 gate
	echo ,; t x a 0 m9 999 99 0
	echo ']}'
} >"$T/plan.json"
ALL="a b c d e f g h x n"

ctl_file "$M/mma/tracks/create" "$T/plan.json"
check "the plan is created (one write of $(wc -c <"$T/plan.json") bytes)" test $? -eq 0
check "create reads back the track with its 9 tasks" jqe --arg k "$TRACK" '.id == $k and (.tasks | length) == 9' <<<"$RESULT"
wait_for "a, g and h run" 5 eval 'task_is a running && task_is g running && task_is h running'
expect_eq "b waits for a (blocked)" "$(task b)" blocked
WG=$(worker_of g)
WA=$(worker_of a)
WH=$(worker_of h)

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
PA=$(pid_of "$WA")
PH=$(pid_of "$WH")
wait_for "frozen: a's worker (pid $PA) is in state T" 3 eval '[ "$(proc_state "$PA")" == T ]'
wait_for "frozen: h's worker (pid $PH) is in state T" 3 eval '[ "$(proc_state "$PH")" == T ]'
ctl "$M/mma/pipeline/resume" resume
check "resume reads back running" jqe '.status == "running"' <<<"$RESULT"
wait_for "resumed: a's worker runs again (not T)" 3 eval 's=$(proc_state "$PA"); [ -n "$s" ] && [ "$s" != T ]'
wait_for "resumed: h's worker runs again (not T)" 3 eval 's=$(proc_state "$PH"); [ -n "$s" ] && [ "$s" != T ]'

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
wait_for "after resume, b, c and f start (or are done)" 5 eval \
	'for x in b c f; do case $(task $x) in running | done) ;; *) exit 1 ;; esac; done'

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
for x in $ALL; do expect_eq "task $x is done" "$(task "$x")" done; done
wstat() { jq -r --arg t "$P-$1" '[.workers[] | select(.task == $t) | .status] | join(" ")' "$M/mma/workers.json"; }
expect_eq "g's workers: killed, then exited" "$(wstat g)" "killed exited"
expect_eq "e's workers: failed, then exited" "$(wstat e)" "failed exited"
expect_eq "f's workers: failed, then exited" "$(wstat f)" "failed exited"
for x in a b c d h n x; do expect_eq "$x ran once" "$(wstat "$x")" exited; done
expect_eq "readlink tasks/e/worker is its last attempt" "$(readlink "$M/mma/tasks/$P-e/worker")" \
	"../../workers/$(worker_of e)"

# --- the events stream: order against the DAG ------------------------------
LAST=$(jq .seq "$M/state.json")
wait_for "cat events has every event up to seq $LAST" 5 eval \
	'[ "$(tail -n1 "$T/events.jsonl" | jq .seq 2>/dev/null)" -ge "$LAST" ]'
CHECK_JQ='
reduce .[] as $e ({deps: {}, trk: {}, wt: {}, dst: {}, st: {}, spawns: {}, allow: {}, retries: {},
                   viol: [], dbl: [], gaps: 0, first: null, last: null};
  $e.data as $d
  | (if .last != null and $e.seq != .last + 1 then .gaps += 1 else . end)
  | .first = (.first // $e.seq) | .last = $e.seq
  | if $e.type == "dag.task_added" then .deps[$d.task] = {} | .trk[$d.task] = $d.track
    elif $e.type == "dag.task_removed" then .deps |= del(.[$d.task])
    elif $e.type == "dag.dep_added" then .deps[$d.task][$d.dep] = $e.seq
    elif $e.type == "dag.dep_removed" then .deps[$d.task] |= del(.[$d.dep])
    elif $e.type == "task.status" then
      .st[$d.task] = $d.to
      | if ($d.from == "failed" or $d.from == "killed") and ($d.to == "blocked" or $d.to == "ready")
        then .allow[$d.task] = "manual" else . end
    elif $e.type == "task.retry" then .allow[$d.task] = "auto" | .retries[$d.task] += 1
    elif $e.type == "worker.spawned" and $d.task != null then
      $d.task as $t
      | [(.deps[$t] // {}) | keys[]] as $ks
      | [$ks[] as $k | select((.dst[$k] // "none") != "exited" and .st[$k] != "skipped")
         | {dep: $k, dep_worker: (.dst[$k] // "never ran")}] as $bad
      | (if ($bad | length) > 0 then .viol += [{seq: $e.seq, task: $t, bad: $bad}] else . end)
      | (if (.spawns[$t] // 0) > 0 and .allow[$t] == null then .dbl += [{seq: $e.seq, task: $t}] else . end)
      | .spawns[$t] += 1 | .allow |= del(.[$t]) | .dst[$t] = "running" | .wt[$d.id | tostring] = $t
    elif $e.type == "worker.exited" then
      .wt[$d.id | tostring] as $t | if $t != null then .dst[$t] = $d.status else . end
    else . end)
| . as $r | {first, last, gaps, spawns, retries,
   viol: [.viol[] | select($r.trk[.task] == $track)], dbl: [.dbl[] | select($r.trk[.task] == $track)],
   deps: (.deps | with_entries(select($r.trk[.key] == $track)) | map_values(keys))}'
jq -s --arg track "$TRACK" "$CHECK_JQ" "$T/events.jsonl" >"$T/check.json"
check "the event stream is contiguous from seq $((SEQ0 + 1)) (no gap)" jqe --argjson s "$((SEQ0 + 1))" '.gaps == 0 and .first == $s' "$T/check.json"
check "no task's worker spawned before all its deps' last worker exited with status exited" \
	jqe '.viol == []' "$T/check.json" || jq -c '.viol' "$T/check.json"
check "no task ran twice without a retry (task.retry or retry by hand) between" \
	jqe '.dbl == []' "$T/check.json" || jq -c '.dbl' "$T/check.json"
check "spawns per task from the events: a1 b1 c1 d1 e2 f2 g2 h1 n1 x1" jqe --arg p "$P" \
	'[.spawns | to_entries[] | select(.key | startswith($p + "-")) | "\(.key | ltrimstr($p + "-"))\(.value)"] | sort | join(" ") == "a1 b1 c1 d1 e2 f2 g2 h1 n1 x1"' "$T/check.json"
check "one task.retry event, for f" jqe --arg f "$P-f" '[.retries | to_entries[] | select(.key | startswith("'"$P"'-"))] == [{key: $f, value: 1}]' "$T/check.json"
check "the DAG from the events equals dag.json's edges for this track" eval \
	'[ "$(jq -c ".deps | to_entries | map(.value[] as \$d | [\$d, .key]) | sort" "$T/check.json")" == \
	   "$(jq -c --arg k "$TRACK" "[.nodes[] | select(.track == \$k) | .id] as \$ids | [.edges[] | select(.to as \$t | \$ids | index(\$t)) | [.from, .to]] | sort" "$M/mma/dag.json")" ]'
ev_seq() { jq -r --arg a "$1" --arg b "$2" 'select(.type == $a and (.data.to == $b or .data.task == $b)) | .seq' "$T/events.jsonl"; }
PAUSE_SEQ=$(jq -r 'select(.type == "pipeline.status" and .data.to == "paused") | .seq' "$T/events.jsonl" | tail -n1)
RESUME_SEQ=$(jq -r --argjson p "${PAUSE_SEQ:-0}" 'select(.type == "pipeline.status" and .seq > $p and .data.to == "running") | .seq' "$T/events.jsonl" | head -n1)
check "events: paused (seq $PAUSE_SEQ) then running (seq $RESUME_SEQ)" test -n "$PAUSE_SEQ" -a -n "$RESUME_SEQ"
check "events: no worker.spawned between pause and resume" jqe -s --argjson a "${PAUSE_SEQ:-0}" --argjson b "${RESUME_SEQ:-0}" \
	'[.[] | select(.type == "worker.spawned" and .seq > $a and .seq < $b)] == []' "$T/events.jsonl"
check "events: a frozen and a running pipeline.status" jqe -s \
	'([.[] | select(.type == "pipeline.status") | .data.to] | index("frozen")) != null' "$T/events.jsonl"
check "events: an ELOOP refusal left no dag.dep_added a -> d" jqe -s --arg a "$P-a" \
	'[.[] | select(.type == "dag.dep_added" and .data.task == $a)] == []' "$T/events.jsonl"
check "events: x was never held" jqe -s --arg x "$P-x" \
	'[.[] | select(.type == "task.status" and .data.task == $x and .data.to == "held")] == []' "$T/events.jsonl"
check "events: g's worker.exited says killed" jqe -s --argjson w "$WG" \
	'[.[] | select(.type == "worker.exited" and .data.id == $w) | .data.status] == ["killed"]' "$T/events.jsonl"

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
# Prices are USD per million tokens, taken from financial.json as integer
# micro-dollars per Mtok. A model's cost is its total tokens x price, rounded
# once to the micro-dollar; a model without a price costs 0; the total is the
# sum over models.
jq -r '.prices | to_entries[] | "\(.key) \(.value.input_per_mtok * 1000000 | round) \(.value.output_per_mtok * 1000000 | round) \(.value.cache_read_per_mtok * 1000000 | round) \(.value.cache_write_per_mtok * 1000000 | round)"' \
	"$M/metrics/financial.json" >"$T/prices.txt"
# usage.log lines: "WORKER model=M in=N out=N cache_read=N"
WANT=$(awk '
	FNR == NR { pin[$1] = $2; pout[$1] = $3; pcr[$1] = $4; next }
	{ split($2, a, "="); m = a[2]; split($3, a, "="); i[m] += a[2]; split($4, a, "="); o[m] += a[2]; split($5, a, "="); c[m] += a[2]; n++ }
	END {
		for (m in i) {
			pico = i[m] * pin[m] + o[m] * pout[m] + c[m] * pcr[m]
			total += int((pico + 500000) / 1000000)
			printf "%s in=%d out=%d cache_read=%d\n", m, i[m], o[m], c[m] > "/dev/stderr"
		}
		printf "%d\n", total
	}' "$T/prices.txt" "$T/usage.log" 2>"$T/usage.sum")
if [ "$OWN" == 1 ]; then SCOPE=.total; else SCOPE=".tracks[\"$TRACK\"]"; fi
GOT=$(jq "$SCOPE.cost_usd * 1000000 | round" "$M/metrics/financial.json")
expect_eq "financial.json ${SCOPE#.} cost_usd is the reported usage at the given prices (micro-dollars)" "$GOT" "$WANT"
expect_eq "usage reports: one per attempt ($(wc -l <"$T/usage.log") attempts)" \
	"$(jq "$SCOPE.reports" "$M/metrics/financial.json")" "$(wc -l <"$T/usage.log")"
while read -r m i o c; do
	expect_eq "model $m: tokens as reported" "$(jq -r --arg m "$m" "$SCOPE.models[\$m] | \"\(.input_tokens) \(.output_tokens) \(.cache_read_tokens)\"" "$M/metrics/financial.json")" \
		"${i#in=} ${o#out=} ${c#cache_read=}"
done <"$T/usage.sum"
check "model m9 has no price: priced false, cost 0" jqe "$SCOPE.models.m9 | .priced == false and (.cost_usd | tonumber) == 0" "$M/metrics/financial.json"
TRACK_COST=$(jq ".tracks[\"$TRACK\"].cost_usd * 1000000 | round" "$M/metrics/financial.json")
expect_eq "the track's cost equals it too" "$TRACK_COST" "$WANT"

# --- teardown: nothing left behind ----------------------------------------
SUMMARY=$(printf 'track %s: %s tasks done, %s workers, %s events (seq %s..%s), cost $%s' "$TRACK" \
	"$(echo $ALL | wc -w)" "$(echo $WIDS | wc -w)" "$(wc -l <"$T/events.jsonl")" \
	"$(jq .first "$T/check.json")" "$(jq .last "$T/check.json")" "$(jq -r "$SCOPE.cost_usd" "$M/metrics/financial.json")")
teardown
check "no worker process of this sim is left" test -z "$(leftover_pids)"
if [ "$OWN" == 1 ]; then
	expect_eq "fusermount3 -u unmounts at the first try" "${UMOUNT_FIRST:-not tried}" ok
	check "the mount is gone" eval '! is_mounted "$M"'
	expect_eq "the daemon exited 0" "${DAEMON_RC:-none}" 0
fi
echo "# $SUMMARY"
echo "# ran in $((($(date +%s%N) - START_NS) / 1000000)) ms"
for n in "${FAILED_NAMES[@]}"; do echo "#   failed: $n"; done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
