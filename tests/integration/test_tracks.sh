#!/usr/bin/env bash
# test_tracks: why a task does not start (info.json's "waiting", and
# track.budget_exhausted), last_error's time across a restart, and starting
# over with remove_track and archive (README, "Control grammar"), on the
# mount and over HTTP, before and after a restart.
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null || _skip_or_fail "curl is missing"
orchfs_start_api --max-workers 2
cd "$M" || exit 1

# GET /api/PATH into $BODY, the status into $CODE.
get() {
	CODE=$(curl -s --max-time 10 -o "$T/resp.body" -w '%{http_code}' -H "$AUTH" "$HTTP/api/$1")
	BODY=$(cat "$T/resp.body")
}
# POST BODY to /api/PATH, the same way.
post() {
	CODE=$(curl -s --max-time 10 -o "$T/resp.body" -w '%{http_code}' -H "$AUTH" \
		--data-binary "$2" "$HTTP/api/$1")
	BODY=$(cat "$T/resp.body")
}
waiting() { jq -c '.waiting' "mma/tasks/$1/info.json"; }
reason_is() { [ "$(jq -r '.waiting.reason' "mma/tasks/$1/info.json")" == "$2" ]; }

# --- 1. why a task waits ---
seq0=$(jq .seq state.json)
# events_since SEQ: every event after SEQ, one a line
events_since() {
	local fd
	exec {fd}<>events
	echo "since $1" >&"$fd"
	timeout 0.5 cat <&"$fd"
	exec {fd}>&-
}
ctl_write mma/tracks/create '{"id":"capped","budget_usd":0.000001,"tasks":[
  {"id":"spender","command":"printf \"model=m1 in=1 out=1\\n\" > \"$ORCHFS_MOUNT/mma/workers/$ORCHFS_WORKER_ID/usage\" && sleep 0.3"},
  {"id":"after","command":"echo after-ran","deps":["spender"]}]}'
check "a track with a tiny budget" jqe '.budget_usd == 0.000001' <<<"$RESULT"
check "add gate, held" write_once mma/dag/mutate '[{"op":"add_task","track":"capped","task":{"id":"gate","command":"true"}},{"op":"hold","task":"gate"}]'
check "a held task says so" jqe '.waiting.reason == "held" and (.waiting.message | test("release"))' mma/tasks/gate/info.json
wait_for "the spender runs or is done" 5 eval 'status_is mma/tasks/spender/status running || status_is mma/tasks/spender/status done'
if status_is mma/tasks/spender/status running; then
	check "a blocked task names the dep it waits for" \
		jqe '.waiting.reason == "deps" and .waiting.tasks == ["spender"] and (.waiting.message | test("spender \\(running\\)"))' mma/tasks/after/info.json
	check "a running task waits for nothing" jqe '.waiting == null' mma/tasks/spender/info.json
fi
wait_for "the spender is done" 5 status_is mma/tasks/spender/status done
wait_for "the track is over its budget" 3 status_is mma/tracks/capped/status over_budget
expect_eq "its dependent is ready, as documented" "$(cat mma/tasks/after/status)" ready
check "and says it waits for the budget" \
	jqe '.waiting.reason == "budget" and .waiting.message == "track capped spent $0.000018 of its $0.000001 budget; raise mma/tracks/capped/budget to go on" and .waiting.spent_usd == 0.000018 and .waiting.budget_usd == 0.000001' mma/tasks/after/info.json
check "a done task waits for nothing" jqe '.waiting == null' mma/tasks/spender/info.json
events_since "$seq0" >"$T/ev1"
check "with the track, what it spent and its budget" \
	jqe -s '[.[] | select(.type == "track.budget_exhausted")] | length == 1 and .[0].channel == "dag" and .[0].data == {"track":"capped","spent_usd":0.000018,"budget_usd":0.000001}' "$T/ev1"
# pausing: the budget still comes first; max_workers when nothing else holds
check "hand workers fill max_workers" eval 'spawn "sleep 30" >/dev/null && spawn "sleep 30" >/dev/null'
check "pause" write_once mma/pipeline/pause pause
check "the budget is said before the pause" reason_is after budget
ctl_write mma/tracks/capped/budget 1
check "raising the budget succeeds" jqe '.status != "over_budget"' <<<"$RESULT"
check "then the pause is the reason" \
	jqe '.waiting.reason == "paused" and (.waiting.message | test("paused"))' mma/tasks/after/info.json
check "resume" write_once mma/pipeline/resume x
check "then max_workers is" \
	jqe '.waiting.reason == "max_workers" and .waiting.message == "2 workers run, max_workers is 2"' mma/tasks/after/info.json
check "status stays the documented word" status_is mma/tasks/after/status ready
check "more workers" write_once mma/pipeline/max_workers 4
wait_for "with room and budget it runs" 5 status_is mma/tasks/after/status done
check "and waits for nothing" jqe '.waiting == null' mma/tasks/after/info.json
events_since "$seq0" >"$T/ev1"
expect_eq "one budget_exhausted per crossing" "$(grep -c track.budget_exhausted "$T/ev1")" 1
for w in $(jq -r '.workers[] | select(.status == "running" and .task == null) | .id' mma/workers.json); do
	write_once mma/workers/kill "$w KILL"
done

# --- 2. last_error has a time, and outlives a restart ---
expect_errno "a refused mutation" ENOENT mma/dag/mutate 'hold nosuch'
err1=$(cat last_error)
check "last_error has the time as events tell it" \
	jqe '.error.ts | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$")' <<<"$err1"
check "and it is now" jqe --arg now "$(date -u +%Y-%m-%dT%H)" '.error.ts | startswith($now)' <<<"$err1"
post mma/dag/mutate 'hold nosuch2'
check "over HTTP the error object has it too" jqe '.error.errno == "ENOENT" and (.error.ts | endswith("Z"))' <<<"$BODY"
expect_eq "and last_error is that object" "$(cat last_error)" "$BODY"
sleep 0.01
expect_errno "a refused mutation, last before the restart" ENOENT mma/dag/mutate 'hold nosuch3'
err1=$(cat last_error)

# --- a restart after kill -9: what was acknowledged is there ---
cd / || exit 1
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
orchfs_restart
cd "$M" || exit 1
expect_eq "a restart reads back the same last_error" "$(cat last_error)" "$err1"

finish
