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

# --- 3. starting over: remove_track and archive ---
ctl_write mma/tracks/create '{"id":"old","title":"Old plan","budget_usd":3,"tasks":[
  {"id":"o1","command":"echo o1"},
  {"id":"o2","command":"sleep 30","deps":["o1"]},
  {"id":"o3","command":"true","deps":["o2"]}]}'
check "track old created" jqe '.id == "old"' <<<"$RESULT"
wait_for "o2 runs" 5 status_is mma/tasks/o2/status running
wo2=$(readlink mma/tasks/o2/worker)
wo2=${wo2##*/}
before_dag=$(cat mma/dag.json)
expect_errno "archive is refused while a task of the track runs" EBUSY mma/dag/mutate 'archive old'
check "and says which" grep -q "its task o2 is running (worker $wo2)" <<<"$(last_error_message)"
expect_errno "so is remove_track" EBUSY mma/dag/mutate '{"op":"remove_track","track":"old"}'
expect_errno "an unknown track" ENOENT mma/dag/mutate 'archive nosuch'
expect_errno "a track op takes a track id" EINVAL mma/dag/mutate 'archive'
expect_eq "refusals changed nothing" "$(cat mma/dag.json)" "$before_dag"
# A cancel kills o2 at once but its worker only stops after: removing its
# task or track in the same batch would free what the worker ends into.
for batch in 'cancel o2; remove_track old' 'cancel o2; archive old' 'cancel o2; remove_task o2'; do
	expect_errno "'$batch' is refused" EBUSY mma/dag/mutate "$batch"
	check "'$batch': the worker is still stopping" \
		grep -q "o2 is killed but its worker $wo2 is still stopping" <<<"$(last_error_message)"
done
expect_eq "those batches changed nothing" "$(cat mma/dag.json)" "$before_dag"
check "o2 and its worker still run" eval 'status_is mma/tasks/o2/status running && [ "$(cat mma/workers/$wo2/status)" == running ]'
check "no archive" jqe '.tracks == []' mma/archive.json
# a worker deaf to TERM stops only at --kill-grace's KILL: until then its
# cancelled task's track stays
ctl_write mma/tracks/create '{"id":"deaf","tasks":[{"id":"d1","command":"trap \"\" TERM; echo deaf; sleep 30"}]}'
wait_for "d1 runs" 5 status_is mma/tasks/d1/status running
wd1=$(readlink mma/tasks/d1/worker)
wd1=${wd1##*/}
# its trap is set once it says so: a TERM before would end it at once
wait_for "d1 ignores TERM" 5 grep -qx deaf "mma/workers/$wd1/log"
check "cancel d1" write_once mma/dag/mutate 'cancel d1'
expect_errno "remove_track while its killed task's worker stops" EBUSY mma/dag/mutate 'remove_track deaf'
check "says so" grep -q "its task d1 is killed but its worker $wd1 is still stopping" <<<"$(last_error_message)"
wait_for "d1's worker ends at the KILL" 5 eval '[ "$(cat mma/workers/$wd1/status)" != running ]'
check "then remove_track deaf" write_once mma/dag/mutate 'remove_track deaf'
check "cancel o2" write_once mma/dag/mutate 'cancel o2'
wait_for "its worker ends" 5 eval '[ "$(cat mma/workers/$wo2/status)" != running ]'
seq3=$(jq .seq state.json)
ls mma/tracks/old mma/tasks/o1 >/dev/null
timeout 30 inotifywait -m --format '%e %w%f' mma/tracks mma/tasks >"$T/watch.ev" 2>"$T/watch.err" &
watcher=$!
poll 5 grep -q 'Watches established' "$T/watch.err"
check "archive old, atomic with another op" write_once mma/dag/mutate 'retry o2; archive old'
check "the track is out of the live tree" eval '! test -e mma/tracks/old'
check "and its tasks" eval '! test -e mma/tasks/o1 && ! test -e mma/tasks/o2 && ! test -e mma/tasks/o3'
check "tracks.json has it no more" jqe '[.tracks[] | select(.id == "old")] == []' mma/tracks.json
check "nor dag.json" jqe '[.nodes[] | select(.track == "old")] == [] and [.edges[] | select(.from == "o1")] == []' mma/dag.json
check "nor dag.dot" eval '! grep -q "o1\|old" mma/dag.dot'
check "nor state.json" jqe '([.tracks | .. | objects | select(.id? == "old")] == []) and ([.. | objects | select(.id? == "o2" and .track? == "old")] == [])' state.json
check "archive.json lists it, with its task counts by status as archived" \
	jqe '.tracks | length == 1 and .[0].id == "old" and .[0].title == "Old plan" and .[0].task_count == 3 and .[0].tasks_by_status.done == 1 and .[0].tasks_by_status.blocked == 2 and .[0].tasks_by_status.killed == 0 and .[0].budget_usd == 3 and .[0].cost_usd == 0 and (.[0].archived_at | endswith("Z"))' mma/archive.json
check "the worker's record stays, as an ended worker's" \
	jqe --arg t o2 '.task == $t and .status == "killed"' "mma/workers/$wo2/info.json"
wait_for "inotify: IN_DELETE of the track and its tasks" 3 eval 'grep -q "DELETE,ISDIR mma/tracks/old" "$T/watch.ev" && grep -q "DELETE,ISDIR mma/tasks/o1" "$T/watch.ev"'
kill "$watcher" 2>/dev/null
events_since "$seq3" >"$T/ev3"
check "events: dag.task_removed for each task, then dag.track_archived" \
	jqe -s '[.[] | select(.type == "dag.task_removed" and .data.track == "old") | .data.task] == ["o1","o2","o3"] and ([.[] | select(.type == "dag.track_archived")][0] | .channel == "dag" and .data.track == "old" and .data.tasks == 3)' "$T/ev3"
expect_errno "an archived id cannot be created again" EEXIST mma/tracks/create '{"id":"old","tasks":[]}'
check "its task ids can" ctl_write mma/tracks/create '{"id":"fresh","tasks":[{"id":"o1","command":"true"}]}'

# remove_track on the mount (line) and over HTTP (JSON); archive over HTTP
ctl_write mma/tracks/create '{"id":"tmp","tasks":[{"id":"p1","command":"true"},{"id":"p2","command":"true","deps":["p1"]}]}'
wait_for "tmp is done" 5 status_is mma/tracks/tmp/status done
check "remove_track tmp" write_once mma/dag/mutate 'remove_track tmp'
check "tmp is gone, not archived" eval '! test -e mma/tracks/tmp && ! test -e mma/tasks/p1 && jqe "[.tracks[].id] == [\"old\"]" mma/archive.json'
check "its id may be used again" ctl_write mma/tracks/create '{"id":"tmp","tasks":[{"id":"p1","command":"sleep 30"}]}'
wait_for "the new p1 runs" 5 status_is mma/tasks/p1/status running
post mma/dag/mutate '{"op":"remove_track","track":"tmp"}'
expect_eq "HTTP: remove_track of a running track is 409" "$CODE" 409
check "with EBUSY" jqe '.error.errno == "EBUSY" and .error.path == "mma/dag/mutate"' <<<"$BODY"
write_once mma/dag/mutate 'cancel p1'
wait_for "p1 is killed" 5 eval 'status_is mma/tasks/p1/status killed && [ "$(jq .running mma/workers.json)" == 0 ]'
post mma/dag/mutate '{"op":"remove_track","track":"tmp"}'
expect_eq "HTTP: remove_track" "$CODE" 200
check "answers what was applied" jqe '.applied == 1' <<<"$BODY"
get mma/tracks/tmp
expect_eq "HTTP: the removed track is 404" "$CODE" 404
post mma/dag/mutate '[{"op":"archive","track":"fresh"}]'
expect_eq "HTTP: archive" "$CODE" 200
get mma/archive
expect_eq "HTTP: GET /api/mma/archive" "$CODE" 200
check "lists both, in archive order" jqe '[.tracks[].id] == ["old","fresh"] and .tracks[1].tasks_by_status.done == 1' <<<"$BODY"
archive_before=$(cat mma/archive.json)
expect_errno "a refused write, the last before the restart" ENOENT mma/dag/mutate 'archive nosuch4'
err1=$(cat last_error)

# --- a restart after kill -9: what was acknowledged is there ---
cd / || exit 1
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
orchfs_restart
cd "$M" || exit 1
expect_eq "a restart reads back the same last_error" "$(cat last_error)" "$err1"
expect_eq "archive.json survives it" "$(cat mma/archive.json)" "$archive_before"
check "the archived tracks are not back in the live tree" \
	eval '! test -e mma/tracks/old && ! test -e mma/tracks/fresh && ! test -e mma/tasks/o2 && jqe "[.tracks[].id] == [\"capped\"]" mma/tracks.json'
check "nor the removed one" eval '! test -e mma/tracks/tmp'
expect_errno "an archived id is still taken" EEXIST mma/tracks/create '{"id":"fresh","tasks":[]}'
check "the archived task's worker record is there" jqe '.task == "o2"' "mma/workers/$wo2/info.json"
check "a removed id is free" write_once mma/tracks/create '{"id":"tmp","tasks":[]}'

finish
