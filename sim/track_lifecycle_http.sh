#!/usr/bin/env bash
# track_lifecycle_http: the same track life as track_lifecycle.sh, through
# curl and Server-Sent Events only: nothing reads or writes the mount (the
# daemon still needs one to start). Workers report their token usage with
# curl to their $ORCHFS_API with the token from $ORCHFS_TOKEN_FILE. A plan of
# 9 tasks with a diamond (a -> b,c -> d); GET /api/events?since=N followed
# from the start; add_task (JSON), add_dep, a cycle refused with 409 ELOOP, an
# atomic batch refused whole; freeze (worker processes in state T), pause
# (nothing new starts), kill a worker, retry a failed and a killed task, a
# task with retries=1; then every final status, the event order against the
# DAG, Last-Event-ID resumption and the cost in /api/metrics/financial.
#
#   sim/track_lifecycle_http.sh          # own daemon ($ORCHFS, else ../build/fs/orchfs)
#                                        # with --http and --ws on free loopback ports
#   ORCHFS_API=http://127.0.0.1:8999 ORCHFS_TOKEN_FILE=~/.local/state/orchfs/token \
#     sim/track_lifecycle_http.sh        # a running orchfs instead
#
# Prints a summary and a last line "N passed, M failed"; exits 0 only when
# every expectation held. Every process and mount it started is gone at exit.
set -u
export LC_ALL=C

SIM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ORCHFS=${ORCHFS:-$SIM_DIR/../build/fs/orchfs}
NAME=track_lifecycle_http
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
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- where: our own daemon, or a running one ------------------------------
T=$(mktemp -d /tmp/sim-XXXXXX)
T=$(cd "$T" && pwd -P)
OWN=1
M=
if [ -n "${ORCHFS_API:-}" ]; then
	OWN=0
	API=${ORCHFS_API%/}
	TOKEN_FILE=${ORCHFS_TOKEN_FILE:-}
	M=${ORCHFS_MOUNT:-}
	P=lifeh$$      # ids that cannot clash with what the instance holds
else
	M=$T/mnt
	P=lifeh
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
			# SIGTERM: the daemon stops its workers, unmounts and exits 0
			kill -TERM "$DAEMON_PID" 2>/dev/null
			poll 8 eval "! kill -0 $DAEMON_PID" || kill -KILL "$DAEMON_PID" 2>/dev/null
			DAEMON_RC=0
			wait "$DAEMON_PID" 2>/dev/null || DAEMON_RC=$?
		fi
	else
		[ -n "$OLD_MAX" ] && post mma/pipeline/max_workers "$OLD_MAX"
		[ -n "$PIPE_TOUCHED" ] && [ "$(get mma/pipeline/status)" != running ] && post mma/pipeline/resume resume
		for p in $(get "mma/tracks/$TRACK" | jq -r '.tasks[]? | select(.status == "running" or .status == "blocked" or .status == "ready" or .status == "held") | .id' 2>/dev/null); do
			post mma/dag/mutate "cancel $p"
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

# get PATH: the body of GET /api/PATH (CODE: the HTTP status).
get() {
	CODE=$(curl -sS --max-time 10 -o "$T/get.body" -w '%{http_code}' -H "$AUTH" "$API/api/$1")
	cat "$T/get.body"
}
# post PATH BODY: POST /api/PATH with BODY; RESULT is the response body, CODE
# its status. Succeeds on 200.
post() {
	RESULT=$(printf '%s' "$2" | curl -sS --max-time 10 -o - -w '\n%{http_code}' -H "$AUTH" \
		--data-binary @- "$API/api/$1")
	CODE=${RESULT##*$'\n'}
	RESULT=${RESULT%$'\n'*}
	RESULT=${RESULT%$'\n'}
	[ "$CODE" == 200 ]
}
post_file() {
	RESULT=$(curl -sS --max-time 10 -o - -w '\n%{http_code}' -H "$AUTH" --data-binary @"$2" "$API/api/$1")
	CODE=${RESULT##*$'\n'}
	RESULT=${RESULT%$'\n'*}
	RESULT=${RESULT%$'\n'}
	[ "$CODE" == 200 ]
}
# expect_refused NAME ERRNO STATUS PATH BODY: the POST fails with STATUS and
# the error object naming ERRNO, and GET /api/last_error holds the same.
expect_refused() {
	local n=$1 want=$2 st=$3 path=$4 body=$5 le
	if post "$path" "$body"; then
		fail "$n" "the POST succeeded; want $st $want"
		return
	fi
	get last_error >"$T/last_error.json"
	le=$(cat "$T/last_error.json")
	if [ "$CODE" == 200 ] && jqe --arg e "$want" --argjson s "$st" '.error.errno == $e and .error.status == $s' <<<"$RESULT" &&
		jqe --argjson r "$RESULT" '. == $r' <<<"$le"; then
		pass "$n ($st $want: $(jq -r .error.message <<<"$le"))"
	else
		fail "$n" "response [$RESULT], last_error [$le]"
	fi
}

command -v jq >/dev/null || skip_or_fail "jq is missing"
command -v curl >/dev/null || skip_or_fail "curl is missing"
if [ "$OWN" == 1 ]; then
	[ -e /dev/fuse ] || skip_or_fail "/dev/fuse is missing"
	command -v fusermount3 >/dev/null || skip_or_fail "fusermount3 is missing"
	command -v python3 >/dev/null || skip_or_fail "python3 (for a free port) is missing"
	[ -x "$ORCHFS" ] || { echo "FAIL: $NAME: no daemon at $ORCHFS (build it, or set ORCHFS)" >&2; exit 1; }
	mkdir -p "$M" "$T/state" "$T/work"
	cat >"$T/pricing.json" <<'PRICES'
{"m1":{"input_per_mtok":3,"output_per_mtok":15,"cache_read_per_mtok":0.3,"cache_write_per_mtok":3.75},
 "m2":{"input_per_mtok":0.8,"output_per_mtok":4}}
PRICES
	HP=$(free_port)
	WP=$(free_port)
	while [ "$WP" == "$HP" ]; do WP=$(free_port); done
	API=http://127.0.0.1:$HP
	TOKEN_FILE=$T/state/token
	start_watchdog
	(cd "$T/work" && exec "$ORCHFS" -f --state-dir "$T/state" --pricing "$T/pricing.json" \
		--kill-grace 1 --max-workers 6 --http "127.0.0.1:$HP" --ws "127.0.0.1:$WP" "$M") \
		>"$T/daemon.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	echo "$DAEMON_PID" >"$T/daemon.pid"
	if ! poll 5 eval '[ -s "$TOKEN_FILE" ] && curl -sf --max-time 2 -o /dev/null -H "Authorization: Bearer $(cat "$TOKEN_FILE")" "$API/api/mma/pipeline/status"'; then
		cat "$T/daemon.log" >&2
		kill -0 "$DAEMON_PID" 2>/dev/null || skip_or_fail "orchfs exited before its API came up"
		skip_or_fail "the API at $API did not answer within 5 s"
	fi
	WHERE="own daemon $ORCHFS, ws on 127.0.0.1:$WP"
else
	[ -r "$TOKEN_FILE" ] || { echo "FAIL: $NAME: ORCHFS_API needs ORCHFS_TOKEN_FILE (a readable token file)" >&2; exit 1; }
	start_watchdog
	WHERE="a running instance"
fi
AUTH="Authorization: Bearer $(cat "$TOKEN_FILE")"
echo "# $NAME: orchfs API at $API ($WHERE), track $TRACK"
check "GET /api/mma/pipeline/status answers 200" eval 'get mma/pipeline/status >/dev/null; [ "$CODE" == 200 ]'
check "no token: 401" eval '[ "$(curl -s -o /dev/null -w "%{http_code}" "$API/api/state")" == 401 ]'
if [ "$OWN" == 0 ]; then
	OLD_MAX=$(get mma/pipeline/max_workers)
	[ "$OLD_MAX" -lt 6 ] && post mma/pipeline/max_workers 6
fi

task() { get "mma/tasks/$P-$1/status"; }
task_is() { [ "$(task "$1")" == "$2" ]; }
worker_of() { get "mma/tasks/$P-$1" | jq -r '.workers[-1].id // empty'; }
pid_of() { get "mma/workers/$1" | jq -r '.pid'; }
wstatus_is() { [ "$(get "mma/workers/$1/status")" == "$2" ]; }
track_is() { [ "$(get "mma/tracks/$TRACK/status")" == "$1" ]; }
gate() { : >"$T/gate.$P-$1"; }

# --- the events, as Server-Sent Events from the start ---------------------
SEQ0=0
[ "$OWN" == 0 ] && SEQ0=$(get state | jq .seq)
curl -sN -H "$AUTH" "$API/api/events?since=$SEQ0" >"$T/sse.txt" 2>"$T/sse.err" &
BG_PIDS+=($!)

# --- the plan --------------------------------------------------------------
# One attempt of a task: report usage with curl to $ORCHFS_API (and note it
# for the cost check), then per mode wait for a gate file, fail on the first
# attempt (flaky), or sleep until killed on the first attempt (long).
cat >"$T/w.sh" <<'WORKER'
#!/bin/sh
# w.sh NAME MODEL IN OUT CACHE_READ MODES: one attempt of a sim task.
name=$1 model=$2 in=$3 out=$4 cr=$5 modes=,$6, dir=$(dirname "$0")
line="model=$model in=$in out=$out cache_read=$cr"
[ -n "${ORCHFS_API:-}" ] && [ -r "${ORCHFS_TOKEN_FILE:-}" ] || { echo "no ORCHFS_API or token" >&2; exit 3; }
curl -sf --max-time 10 -o /dev/null -H "Authorization: Bearer $(cat "$ORCHFS_TOKEN_FILE")" \
	--data-binary "$line" "$ORCHFS_API/api/mma/workers/$ORCHFS_WORKER_ID/usage" || exit 3
echo "$ORCHFS_WORKER_ID $line" >>"$dir/usage.log"
case $modes in *,gate,*) while [ ! -e "$dir/gate.$name" ]; do sleep 0.05; done ;; esac
case $modes in *,flaky,*) [ -e "$dir/mark.$name" ] || { : >"$dir/mark.$name"; echo "$name: failing once" >&2; exit 1; } ;; esac
case $modes in *,long,*) [ -e "$dir/mark.$name" ] || { : >"$dir/mark.$name"; sleep 30; } ;; esac
echo "$name: done"
WORKER
w() { printf 'sh %s/w.sh %s-%s %s %s %s %s %s' "$T" "$P" "$1" "$2" "$3" "$4" "$5" "${6:-plain}"; }
t() { # t ID DEPS(comma list) RETRIES MODEL IN OUT CACHE_READ [MODES]
	local id=$1 deps=$2 retries=$3
	shift 3
	jq -nc --arg id "$P-$id" --arg deps "$deps" --arg p "$P" --argjson r "$retries" --arg cmd "$(w "$id" "$@")" \
		'{id: $id, command: $cmd, retries: $r, deps: ($deps | split(",") | map(select(. != "") | "\($p)-\(.)"))}'
}
{
	printf '{"id":"%s","title":"track lifecycle sim (HTTP)","tasks":[' "$TRACK"
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

post_file mma/tracks/create "$T/plan.json"
check "POST /api/mma/tracks/create: 200 ($CODE)" test "$CODE" == 200
check "the response is the track with its 9 tasks" jqe --arg k "$TRACK" '.id == $k and (.tasks | length) == 9' <<<"$RESULT"
expect_refused "creating it again: 409 EEXIST" EEXIST 409 mma/tracks/create "$(cat "$T/plan.json")"
wait_for "a, g and h run" 5 eval 'task_is a running && task_is g running && task_is h running'
expect_eq "b waits for a (blocked)" "$(task b)" blocked
WG=$(worker_of g)
WA=$(worker_of a)
WH=$(worker_of h)

# --- DAG mutations mid-flight ----------------------------------------------
post mma/dag/mutate "$(jq -nc --arg k "$TRACK" --arg p "$P" --arg cmd "$(w n m1 1234 321 0)" \
	'{op: "add_task", track: $k, task: {id: "\($p)-n", command: $cmd, deps: ["\($p)-d"]}}')"
check "add_task (JSON) adds n, which waits for d" test "$CODE" == 200
expect_eq "n is blocked" "$(task n)" blocked
post mma/dag/mutate "add_dep $P-x $P-n"
check "add_dep x n is applied" jqe '.applied == 1' <<<"$RESULT"
expect_eq "x's deps now list a and n" "$(get "mma/tasks/$P-x/deps" | sort | tr '\n' ' ')" "$P-a $P-n "
expect_refused "add_dep a d (a cycle) is refused" ELOOP 409 mma/dag/mutate "add_dep $P-a $P-d"
check "the ELOOP message names the cycle" eval 'get last_error | jq -r .error.message | grep -q cycle'
expect_eq "a's deps are unchanged (none)" "$(get "mma/tasks/$P-a/deps")" ""
expect_refused "the batch 'hold x; add_dep a nope' is refused whole" ENOENT 404 mma/dag/mutate "hold $P-x; add_dep $P-a $P-nope"
expect_eq "after the refused batch, x is not held" "$(task x)" blocked

# --- kill a worker ----------------------------------------------------------
post mma/workers/kill "{\"id\":$WG,\"signal\":\"TERM\",\"grace_s\":1}"
check "kill worker $WG (task g), JSON form" test "$CODE" == 200
wait_for "worker $WG is killed" 5 wstatus_is "$WG" killed
wait_for "task g is killed" 3 task_is g killed
expect_eq "a killed task does not fail the track" "$(get "mma/tracks/$TRACK/status")" active

# --- freeze, then resume ----------------------------------------------------
PIPE_TOUCHED=1
post mma/pipeline/pause freeze
check "freeze answers the pipeline frozen" jqe '.status == "frozen"' <<<"$RESULT"
expect_eq "GET pipeline/status: frozen" "$(get mma/pipeline/status)" frozen
PA=$(pid_of "$WA")
PH=$(pid_of "$WH")
wait_for "frozen: a's worker (pid $PA) is in state T" 3 eval '[ "$(proc_state "$PA")" == T ]'
wait_for "frozen: h's worker (pid $PH) is in state T" 3 eval '[ "$(proc_state "$PH")" == T ]'
post mma/pipeline/resume resume
check "resume answers the pipeline running" jqe '.status == "running"' <<<"$RESULT"
wait_for "resumed: a's worker runs again (not T)" 3 eval 's=$(proc_state "$PA"); [ -n "$s" ] && [ "$s" != T ]'
wait_for "resumed: h's worker runs again (not T)" 3 eval 's=$(proc_state "$PH"); [ -n "$s" ] && [ "$s" != T ]'

# --- pause: nothing new starts ---------------------------------------------
post mma/pipeline/pause pause
expect_eq "GET pipeline/status: paused" "$(get mma/pipeline/status)" paused
NW=$(get mma/workers | jq '.total')
gate a
wait_for "a (started before the pause) finishes: done" 5 task_is a done
sleep 0.6
check "while paused, b, c and f are ready and not started" eval 'task_is b ready && task_is c ready && task_is f ready'
expect_eq "while paused, no worker was started" "$(get mma/workers | jq '.total')" "$NW"
post mma/pipeline/resume resume
wait_for "after resume, b, c and f start (or are done)" 5 eval \
	'for x in b c f; do case $(task $x) in running | done) ;; *) exit 1 ;; esac; done'

# --- retry the killed task; let h, f, d, n, x finish ----------------------
post mma/dag/mutate "{\"op\":\"retry\",\"task\":\"$P-g\"}"
check "retry g (killed), JSON form, is applied" test "$CODE" == 200
gate h
wait_for "g, its second attempt, is done" 5 task_is g done
wait_for "f fails once and retries itself (retries=1): done" 5 task_is f done
wait_for "b, c, d, n, x, h are done" 10 eval '(for x in b c d n x h; do task_is $x done || exit 1; done)'
wait_for "e runs" 5 task_is e running

# --- a task that fails with no retries, then retry by hand ------------------
gate e
wait_for "e fails (retries 0)" 5 task_is e failed
wait_for "the track is failed: nothing else can run" 3 track_is failed
post mma/dag/mutate "retry $P-e"
check "retry e (failed) is applied" test "$CODE" == 200
wait_for "the track is done (bounded wait)" 10 track_is done

# --- final statuses -------------------------------------------------------
for x in $ALL; do expect_eq "task $x is done" "$(task "$x")" done; done
get mma/workers >"$T/workers.json"
wstat() { jq -r --arg t "$P-$1" '[.workers[] | select(.task == $t) | .status] | join(" ")' "$T/workers.json"; }
expect_eq "g's workers: killed, then exited" "$(wstat g)" "killed exited"
expect_eq "e's workers: failed, then exited" "$(wstat e)" "failed exited"
expect_eq "f's workers: failed, then exited" "$(wstat f)" "failed exited"
for x in a b c d h n x; do expect_eq "$x ran once" "$(wstat "$x")" exited; done

# --- the SSE stream: order against the DAG ----------------------------------
LAST=$(get state | jq .seq)
sse_last() { grep '^id: ' "$T/sse.txt" | tail -n1 | cut -c5-; }
wait_for "the SSE stream has every event up to seq $LAST" 5 eval '[ "$(sse_last)" -ge "$LAST" ]'
sed -n 's/^data: //p' "$T/sse.txt" >"$T/events.jsonl"
check "every SSE id: is its event's seq" eval \
	'[ "$(grep "^id: " "$T/sse.txt" | cut -c5- | tr "\n" " ")" == "$(jq -r .seq "$T/events.jsonl" | tr "\n" " ")" ]'
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
get mma/dag >"$T/dag.json"
check "the DAG from the events equals /api/mma/dag's edges for this track" eval \
	'[ "$(jq -c ".deps | to_entries | map(.value[] as \$d | [\$d, .key]) | sort" "$T/check.json")" == \
	   "$(jq -c --arg k "$TRACK" "[.nodes[] | select(.track == \$k) | .id] as \$ids | [.edges[] | select(.to as \$t | \$ids | index(\$t)) | [.from, .to]] | sort" "$T/dag.json")" ]'
PAUSE_SEQ=$(jq -r 'select(.type == "pipeline.status" and .data.to == "paused") | .seq' "$T/events.jsonl" | tail -n1)
RESUME_SEQ=$(jq -r --argjson p "${PAUSE_SEQ:-0}" 'select(.type == "pipeline.status" and .seq > $p and .data.to == "running") | .seq' "$T/events.jsonl" | head -n1)
check "events: paused (seq $PAUSE_SEQ) then running (seq $RESUME_SEQ)" test -n "$PAUSE_SEQ" -a -n "$RESUME_SEQ"
check "events: no worker.spawned between pause and resume" jqe -s --argjson a "${PAUSE_SEQ:-0}" --argjson b "${RESUME_SEQ:-0}" \
	'[.[] | select(.type == "worker.spawned" and .seq > $a and .seq < $b)] == []' "$T/events.jsonl"
check "events: a frozen pipeline.status" jqe -s \
	'([.[] | select(.type == "pipeline.status") | .data.to] | index("frozen")) != null' "$T/events.jsonl"
check "events: an ELOOP refusal left no dag.dep_added a -> d" jqe -s --arg a "$P-a" \
	'[.[] | select(.type == "dag.dep_added" and .data.task == $a)] == []' "$T/events.jsonl"
check "events: x was never held" jqe -s --arg x "$P-x" \
	'[.[] | select(.type == "task.status" and .data.task == $x and .data.to == "held")] == []' "$T/events.jsonl"
check "events: g's worker.exited says killed" jqe -s --argjson w "$WG" \
	'[.[] | select(.type == "worker.exited" and .data.id == $w) | .data.status] == ["killed"]' "$T/events.jsonl"
check "events: usage.reported for every report" eval \
	'[ "$(jq -s --arg k "$TRACK" "[.[] | select(.type == \"usage.reported\")] | length" "$T/events.jsonl")" -ge "$(wc -l <"$T/usage.log")" ]'
# Last-Event-ID resumes after the given seq (a second SSE client, cut after 1 s)
R=$((LAST - 3))
curl -sN --max-time 1 -H "$AUTH" -H "Last-Event-ID: $R" "$API/api/events" >"$T/sse2.txt" 2>/dev/null
expect_eq "Last-Event-ID: $R resumes with seq $((R + 1))..$LAST" \
	"$(grep '^id: ' "$T/sse2.txt" | cut -c5- | tr '\n' ' ')" "$(seq $((R + 1)) "$LAST" | tr '\n' ' ')"

# --- money ---------------------------------------------------------------
# Prices are USD per million tokens, taken from /api/metrics/financial as
# integer micro-dollars per Mtok. A model's cost is its total tokens x price,
# rounded once to the micro-dollar; a model without a price costs 0; the
# total is the sum over models.
get metrics/financial >"$T/financial.json"
jq -r '.prices | to_entries[] | "\(.key) \(.value.input_per_mtok * 1000000 | round) \(.value.output_per_mtok * 1000000 | round) \(.value.cache_read_per_mtok * 1000000 | round) \(.value.cache_write_per_mtok * 1000000 | round)"' \
	"$T/financial.json" >"$T/prices.txt"
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
GOT=$(jq "$SCOPE.cost_usd * 1000000 | round" "$T/financial.json")
expect_eq "financial ${SCOPE#.} cost_usd is the reported usage at the given prices (micro-dollars)" "$GOT" "$WANT"
expect_eq "usage reports: one per attempt ($(wc -l <"$T/usage.log") attempts)" \
	"$(jq "$SCOPE.reports" "$T/financial.json")" "$(wc -l <"$T/usage.log")"
while read -r m i o c; do
	expect_eq "model $m: tokens as reported" "$(jq -r --arg m "$m" "$SCOPE.models[\$m] | \"\(.input_tokens) \(.output_tokens) \(.cache_read_tokens)\"" "$T/financial.json")" \
		"${i#in=} ${o#out=} ${c#cache_read=}"
done <"$T/usage.sum"
check "model m9 has no price: priced false, cost 0" jqe "$SCOPE.models.m9 | .priced == false and (.cost_usd | tonumber) == 0" "$T/financial.json"
expect_eq "the track's cost equals it too" "$(jq ".tracks[\"$TRACK\"].cost_usd * 1000000 | round" "$T/financial.json")" "$WANT"

# --- teardown: nothing left behind ----------------------------------------
WIDS=$(jq -r --arg k "$TRACK" '.workers[] | select(.track == $k) | .id' "$T/workers.json")
SUMMARY=$(printf 'track %s: %s tasks done, %s workers, %s events (seq %s..%s), cost $%s' "$TRACK" \
	"$(echo $ALL | wc -w)" "$(echo $WIDS | wc -w)" "$(wc -l <"$T/events.jsonl")" \
	"$(jq .first "$T/check.json")" "$(jq .last "$T/check.json")" "$(jq -r "$SCOPE.cost_usd" "$T/financial.json")")
teardown
check "no worker process of this sim is left" test -z "$(leftover_pids)"
if [ "$OWN" == 1 ]; then
	check "the mount is gone" eval '! is_mounted "$M"'
	expect_eq "the daemon exited 0 after SIGTERM" "${DAEMON_RC:-none}" 0
	check "nothing listens on the API port any more" eval '! curl -s --max-time 1 -o /dev/null "$API/api/state"'
fi
echo "# $SUMMARY"
echo "# ran in $((($(date +%s%N) - START_NS) / 1000000)) ms"
for n in "${FAILED_NAMES[@]}"; do echo "#   failed: $n"; done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
