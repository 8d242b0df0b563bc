#!/usr/bin/env bash
# track_lifecycle_http: the same track life as track_lifecycle.sh, through
# curl and Server-Sent Events only: nothing reads or writes the mount (the
# daemon still needs one to start). Workers report their token usage with
# curl to their $ORCHFS_API with a token the sim writes into them. A plan of
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
SIM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAME=track_lifecycle_http
PREFIX=lifeh
SHARED_PREFIX=lifeh$$ # ids that cannot clash with what the instance holds
SHARED_BY=ORCHFS_API  # a running instance: its API (and ORCHFS_TOKEN_FILE)
DAEMON_STOP=term      # SIGTERM, not fusermount3 -u: nothing uses the mount
. "$SIM_DIR/lib.sh"
if [ "$OWN" == 0 ]; then
	API=${ORCHFS_API%/}
	TOKEN_FILE=${ORCHFS_TOKEN_FILE:-}
fi
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# release_instance: what teardown gives back to a running instance, over HTTP.
release_instance() {
	local p
	[ -n "$OLD_MAX" ] && post mma/pipeline/max_workers "$OLD_MAX"
	[ -n "$PIPE_TOUCHED" ] && [ "$(get mma/pipeline/status)" != running ] && post mma/pipeline/resume resume
	for p in $(get "mma/tracks/$TRACK" | jq -r '.tasks[]? | select(.status == "running" or .status == "blocked" or .status == "ready" or .status == "held") | .id' 2>/dev/null); do
		post mma/dag/mutate "cancel $p"
	done
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

need jq
need curl
if [ "$OWN" == 1 ]; then
	need_own_daemon python3 "python3 (for a free port)"
	write_pricing
	HP=$(free_port)
	WP=$(free_port)
	while [ "$WP" == "$HP" ]; do WP=$(free_port); done
	API=http://127.0.0.1:$HP
	TOKEN_FILE=$T/state/token
	start_daemon --pricing "$T/pricing.json" --kill-grace 1 --max-workers 6 \
		--http "127.0.0.1:$HP" --ws "127.0.0.1:$WP"
	daemon_up '[ -s "$TOKEN_FILE" ] && curl -sf --max-time 2 -o /dev/null -H "Authorization: Bearer $(cat "$TOKEN_FILE")" "$API/api/mma/pipeline/status"' \
		"its API came up" "the API at $API did not answer within 5 s"
	WHERE="own daemon $ORCHFS, ws on 127.0.0.1:$WP"
else
	[ -r "$TOKEN_FILE" ] || { echo "FAIL: $NAME: ORCHFS_API needs ORCHFS_TOKEN_FILE (a readable token file)" >&2; exit 1; }
	start_watchdog
	WHERE="a running instance"
fi
AUTH="Authorization: Bearer $(cat "$TOKEN_FILE")"
announce "orchfs API at $API"
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

# --- the events, as Server-Sent Events from the start ---------------------
SEQ0=0
[ "$OWN" == 0 ] && SEQ0=$(get state | jq .seq)
curl -sN -H "$AUTH" "$API/api/events?since=$SEQ0" >"$T/sse.txt" 2>"$T/sse.err" &
BG_PIDS+=($!)

# --- the plan --------------------------------------------------------------
# Workers report their usage with curl to $ORCHFS_API, with the token the sim
# gives them (the daemon passes them no path to its own).
write_worker <<EOF
[ -n "\${ORCHFS_API:-}" ] || { echo "no ORCHFS_API" >&2; exit 3; }
curl -sf --max-time 10 -o /dev/null -H "Authorization: Bearer $(cat "$TOKEN_FILE")" \\
	--data-binary "\$line" "\$ORCHFS_API/api/mma/workers/\$ORCHFS_WORKER_ID/usage" || exit 3
EOF
write_plan "track lifecycle sim (HTTP)"

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
wait_for "after resume, b, c and f start (or are done)" 5 started_or_done b c f

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
get mma/workers >"$T/workers.json"
final_checks "$T/workers.json"

# --- the SSE stream: order against the DAG ----------------------------------
LAST=$(get state | jq .seq)
sse_last() { grep '^id: ' "$T/sse.txt" | tail -n1 | cut -c5-; }
wait_for "the SSE stream has every event up to seq $LAST" 5 eval '[ "$(sse_last)" -ge "$LAST" ]'
sed -n 's/^data: //p' "$T/sse.txt" >"$T/events.jsonl"
check "every SSE id: is its event's seq" eval \
	'[ "$(grep "^id: " "$T/sse.txt" | cut -c5- | tr "\n" " ")" == "$(jq -r .seq "$T/events.jsonl" | tr "\n" " ")" ]'
get mma/dag >"$T/dag.json"
event_checks "$T/dag.json" /api/mma/dag "a frozen"
check "events: usage.reported for every report" eval \
	'[ "$(jq -s --arg k "$TRACK" "[.[] | select(.type == \"usage.reported\")] | length" "$T/events.jsonl")" -ge "$(wc -l <"$T/usage.log")" ]'
# Last-Event-ID resumes after the given seq (a second SSE client, cut after 1 s)
R=$((LAST - 3))
curl -sN --max-time 1 -H "$AUTH" -H "Last-Event-ID: $R" "$API/api/events" >"$T/sse2.txt" 2>/dev/null
expect_eq "Last-Event-ID: $R resumes with seq $((R + 1))..$LAST" \
	"$(grep '^id: ' "$T/sse2.txt" | cut -c5- | tr '\n' ' ')" "$(seq $((R + 1)) "$LAST" | tr '\n' ' ')"

# --- money ---------------------------------------------------------------
get metrics/financial >"$T/financial.json"
money_checks "$T/financial.json" financial

# --- teardown: nothing left behind ----------------------------------------
WIDS=$(jq -r --arg k "$TRACK" '.workers[] | select(.track == $k) | .id' "$T/workers.json")
SUMMARY=$(summary "$T/financial.json")
end_checks
[ "$OWN" == 1 ] && check "nothing listens on the API port any more" eval '! curl -s --max-time 1 -o /dev/null "$API/api/state"'
echo "# $SUMMARY"
finish
