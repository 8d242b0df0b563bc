#!/usr/bin/env bash
# test_dag: tracks and the DAG through tracks/create and dag/mutate: deps run
# in order, the worker symlink, retries (3 workers, then failed) and the retry
# op, timeouts (failed, timed_out), priorities with one worker slot, hold,
# release, skip, cancel, remove_task, add_dep, remove_dep, add_task (JSON),
# cycle refusal naming the cycle, atomic batches (line and JSON forms: a
# failing second op leaves dag.json and tracks.json as they were), track
# statuses, dag.json and dag.dot.
. "$(dirname "$0")/lib.sh"

orchfs_start --max-workers 4
cd "$M" || exit 1

st() { cat "mma/tasks/$1/status" 2>/dev/null; }
st_is() { [ "$(st "$1")" == "$2" ]; }
nworkers() { jq '.workers | length' "mma/tasks/$1/info.json"; }
worker_of() { jq -r '.worker' "mma/tasks/$1/info.json"; }
mutate() { ctl_write mma/dag/mutate "$1"; }
create() { ctl_write mma/tracks/create "$1"; }
pause() { ctl_write mma/pipeline/pause pause; }
resume() { ctl_write mma/pipeline/resume resume; }

# --- a chain runs in dep order ---
create '{"id":"chain","title":"Chain","tasks":[
  {"id":"c3","command":"echo c3","deps":["c2"]},
  {"id":"c1","command":"echo c1"},
  {"id":"c2","command":"echo c2","deps":["c1"]}]}'
check "create a chain (a task listed before its dep)" jqe '.id == "chain" and (.tasks | length) == 3' <<<"$RESULT"
wait_for "the chain's last task is done" 10 st_is c3 done
w1=$(worker_of c1) w2=$(worker_of c2) w3=$(worker_of c3)
check "deps ran first: worker ids c1 < c2 < c3" test "$w1" -lt "$w2" -a "$w2" -lt "$w3"
check "c2 started after c1 ended" \
	jqe -n --slurpfile a "mma/workers/$w1/info.json" --slurpfile b "mma/workers/$w2/info.json" '$b[0].started_at >= $a[0].ended_at'
expect_eq "readlink tasks/c2/worker" "$(readlink mma/tasks/c2/worker)" "../../workers/$w2"
check "the symlink leads to its log" grep -qx c2 mma/tasks/c2/worker/log
wait_for "a track whose tasks are all done is done" 3 status_is mma/tracks/chain/status done

# --- retries: 3 attempts, then failed; the retry op requeues ---
create "{\"id\":\"rt\",\"tasks\":[{\"id\":\"flaky\",\"command\":\"echo attempt; test -e $T/flag\",\"retries\":2}]}"
check "create a task with retries 2" jqe '.tasks[0].retries == 2' <<<"$RESULT"
wait_for "the failing task ends failed" 10 st_is flaky failed
expect_eq "it had 3 workers (1 + 2 retries)" "$(nworkers flaky)" 3
check "all 3 workers failed with exit 1" jqe '[.workers[] | .status + ":" + (.exit_code | tostring)] == ["failed:1","failed:1","failed:1"]' mma/tasks/flaky/info.json
check "retries_left is 0" jqe '.retries_left == 0' mma/tasks/flaky/info.json
wait_for "its track is failed" 3 status_is mma/tracks/rt/status failed
touch "$T/flag"
mutate "retry flaky"
check "retry T is applied" jqe '.applied == 1' <<<"$RESULT"
check "after retry it is no longer failed" eval '! st_is flaky failed'
wait_for "the retried task runs again and is done" 10 st_is flaky done
expect_eq "the retry made a 4th worker" "$(nworkers flaky)" 4
wait_for "its track is done again" 3 status_is mma/tracks/rt/status done

# --- timeouts ---
create '{"id":"to","tasks":[{"id":"slow","command":"sleep 30","timeout_s":1}]}'
wait_for "a task over its timeout_s is failed" 8 st_is slow failed
ws=$(worker_of slow)
check "its worker is failed with timed_out true" \
	jqe '.status == "failed" and .timed_out == true and .timeout_s == 1' "mma/workers/$ws/info.json"
check "its worker's trace has worker.timeout" jqe -s 'map(.type) | index("worker.timeout") != null' "mma/workers/$ws/trace"

# --- hold and release ---
pause
create '{"id":"hr","tasks":[{"id":"h1","command":"echo held-ran"}]}'
mutate "hold h1"
expect_eq "hold T: held" "$(st h1)" held
resume
sleep 0.5
expect_eq "a held task does not start" "$(st h1)/$(nworkers h1)" held/0
mutate '{"op":"release","task":"h1"}'
check "JSON release is applied" jqe '.applied == 1' <<<"$RESULT"
wait_for "a released task runs to done" 5 st_is h1 done

# --- skip satisfies dependents ---
pause
create '{"id":"sk","tasks":[{"id":"s1","command":"exit 1"},{"id":"s2","command":"echo s2-ran","deps":["s1"]}]}'
expect_eq "s2 waits for s1" "$(st s2)" blocked
mutate "skip s1"
expect_eq "skip T: skipped" "$(st s1)" skipped
expect_eq "a skipped dep satisfies: s2 ready" "$(st s2)" ready
resume
wait_for "s2 runs and is done" 5 st_is s2 done
expect_eq "the skipped task never ran" "$(nworkers s1)" 0
wait_for "a track of done and skipped tasks is done" 3 status_is mma/tracks/sk/status done

# --- cancel: a running task and a ready one ---
create '{"id":"cx","tasks":[{"id":"x1","command":"sleep 30"}]}'
wait_for "x1 runs" 5 st_is x1 running
wx=$(worker_of x1)
mutate "cancel x1"
check "cancel T is applied" jqe '.applied == 1' <<<"$RESULT"
expect_eq "a cancelled running task is killed" "$(st x1)" killed
wait_for "its worker is killed" 5 status_is "mma/workers/$wx/status" killed
pause
create '{"id":"cx2","tasks":[{"id":"x2","command":"true"}]}'
mutate "cancel x2"
expect_eq "a cancelled ready task is killed" "$(st x2)/$(nworkers x2)" killed/0
resume

# --- remove_task ---
mutate "remove_task x2"
check "remove_task T is applied" jqe '.applied == 1' <<<"$RESULT"
check "the removed task is gone from tasks/" test ! -e mma/tasks/x2
check "the removed task is gone from dag.json" jqe '[.nodes[].id] | index("x2") == null' mma/dag.json
check "its track counts no task" jqe '.task_count == 0' mma/tracks/cx2/info.json

# --- add_dep, remove_dep (line and JSON) ---
pause
create '{"id":"dp","tasks":[{"id":"d1","command":"echo d1"},{"id":"d2","command":"echo d2"}]}'
mutate "add_dep d2 d1"
expect_eq "add_dep T D: T's deps list D" "$(cat mma/tasks/d2/deps)" d1
expect_eq "add_dep T D: T waits" "$(st d2)" blocked
check "dag.json has the new edge" jqe '.edges | index({"from":"d1","to":"d2"}) != null' mma/dag.json
mutate '{"op":"remove_dep","task":"d2","dep":"d1"}'
expect_eq "remove_dep: the deps file is empty" "$(cat mma/tasks/d2/deps)" ""
expect_eq "remove_dep: T is ready again" "$(st d2)" ready
mutate '{"op":"add_dep","task":"d2","dep":"d1"}'
expect_eq "JSON add_dep" "$(cat mma/tasks/d2/deps)" d1

# --- add_task (JSON) ---
mutate '{"op":"add_task","track":"dp","task":{"id":"d3","command":"echo added-task","deps":["d2"],"title":"Added","priority":2,"env":{"X":"1"}}}'
check "add_task is applied" jqe '.applied == 1 and (.seq | type == "number")' <<<"$RESULT"
check "the added task belongs to its track" jqe '.track == "dp" and .title == "Added" and .deps == ["d2"] and .priority == 2 and .env.X == "1"' mma/tasks/d3/info.json
check "the track lists it" jqe '[.tasks[].id] == ["d1","d2","d3"]' mma/tracks/dp/info.json
resume
wait_for "the added task runs after its deps" 8 st_is d3 done
check "its log has its output" grep -qx added-task mma/tasks/d3/worker/log

# --- cycles are refused, naming the cycle ---
pause
create '{"id":"cy","tasks":[{"id":"y1","command":"true"},{"id":"y2","command":"true","deps":["y1"]},{"id":"y3","command":"true","deps":["y2"]}]}'
expect_errno "add_dep making a cycle is ELOOP" ELOOP mma/dag/mutate "add_dep y1 y3"
msg=$(last_error_message)
check "the message names the cycle as dag.dot draws edges: y3 -> y1 -> y2 -> y3" \
	grep -qF 'y3 -> y1 -> y2 -> y3' <<<"$msg"
check "whose edges dag.dot has (y1 -> y2, y2 -> y3)" eval \
	'grep -qF "\"y1\" -> \"y2\"" mma/dag.dot && grep -qF "\"y2\" -> \"y3\"" mma/dag.dot'
expect_errno "a dep on itself is ELOOP" ELOOP mma/dag/mutate '{"op":"add_dep","task":"y2","dep":"y2"}'
expect_eq "the refused edge was not added" "$(cat mma/tasks/y1/deps)" ""

# --- atomic batches ---
dag0=$(cat mma/dag.json)
tracks0=$(cat mma/tracks.json)
expect_errno "line batch: second op unknown task -> ENOENT" ENOENT mma/dag/mutate $'hold y1\nhold nosuch\n'
check "the message says nothing was changed" grep -q 'nothing was changed' <<<"$(last_error_message)"
expect_eq "the first op of the refused batch was not applied" "$(st y1)" ready
expect_errno "JSON batch: second op EEXIST" EEXIST mma/dag/mutate \
	'[{"op":"hold","task":"y1"},{"op":"add_task","track":"cy","task":{"id":"y2","command":"true"}}]'
expect_errno "JSON batch: add_task then a cycle -> ELOOP" ELOOP mma/dag/mutate \
	'[{"op":"add_task","track":"cy","task":{"id":"y4","command":"true","deps":["y3"]}},{"op":"add_dep","task":"y1","dep":"y4"}]'
check "the task added by the refused batch does not exist" test ! -e mma/tasks/y4
expect_errno "line batch: remove_dep then a bad op -> EBUSY" EBUSY mma/dag/mutate $'remove_dep y3 y2\nrelease y1'
expect_eq "the refused remove_dep left the edge" "$(cat mma/tasks/y3/deps)" y2
expect_eq "dag.json is identical after the refused batches" "$(cat mma/dag.json)" "$dag0"
expect_eq "tracks.json is identical after the refused batches" "$(cat mma/tracks.json)" "$tracks0"
mutate $'hold y1\n# a comment\nhold y2\n'
check "a good batch of two lines applies both" jqe '.applied == 2' <<<"$RESULT"
expect_eq "both ops of the good batch applied" "$(st y1) $(st y2)" "held held"
mutate '[{"op":"release","task":"y1"},{"op":"release","task":"y2"}]'
check "a JSON array batch applies both" jqe '.applied == 2' <<<"$RESULT"
resume
wait_for "the cycle track finishes" 8 status_is mma/tracks/cy/status done

# --- views ---
check "dag.dot is a digraph" grep -q digraph mma/dag.dot
check "dag.dot has edge y1 -> y2" grep -q '"y1" -> "y2"' mma/dag.dot
check "dag.dot colours nodes" grep -q 'fillcolor=' mma/dag.dot
check "dag.json nodes carry status and track" jqe 'all(.nodes[]; has("status") and has("track"))' mma/dag.json
check "tracks.json shows each track's status" \
	jqe '[.tracks[] | select(.id == "chain" or .id == "sk") | .status] == ["done","done"]' mma/tracks.json
check "tracks.json counts tasks by status" jqe '(.tracks[] | select(.id == "chain") | .tasks_by_status.done) == 3' mma/tracks.json
check "a track with a killed task is not done" eval '! status_is mma/tracks/cx/status done'

# --- the kernel keeps entries and attributes; a change still shows at once ---
# (entries of tasks are cached for long: a removed id that comes back is a
# new task, and a size the kernel holds follows the announced change)
pause
create '{"id":"kc","tasks":[{"id":"kc1","command":"echo first"}]}'
expect_eq "a new task's command" "$(jq -r .command mma/tasks/kc1/info.json)" "echo first"
size_blocked=$(stat -c %s mma/tasks/kc1/status)
expect_eq "stat gives the size of what is read (ready)" "$size_blocked" "$(wc -c <mma/tasks/kc1/status)"
echo 'remove_task kc1' >mma/dag/mutate
check "a removed task is gone at once" test ! -e mma/tasks/kc1
ctl_write mma/dag/mutate '{"op":"add_task","track":"kc","task":{"id":"kc1","command":"echo second"}}'
expect_eq "added again under its old id: the new task's command" \
	"$(jq -r .command mma/tasks/kc1/info.json)" "echo second"
resume
wait_for "kc1 runs to done" 5 status_is mma/tasks/kc1/status done
wait_for "stat follows: the size of \"done\"" 2 eval '[ "$(stat -c %s mma/tasks/kc1/status)" = 5 ]'

# --- priorities, on a daemon with --max-workers 1 ---
orchfs_start --max-workers 1
cd "$M" || exit 1
pause
create '{"id":"prio","tasks":[
  {"id":"p-low","command":"sleep 0.1"},
  {"id":"p-mid","command":"sleep 0.1","priority":5},
  {"id":"p-high","command":"sleep 0.1","priority":10},
  {"id":"p-mid2","command":"sleep 0.1","priority":5},
  {"id":"p-neg","command":"sleep 0.1","priority":-3}]}'
check "while paused, the ready tasks wait" jqe '[.tasks[].status] | all(. == "ready")' mma/tracks/prio/info.json
resume
wait_for "all priority tasks are done" 10 status_is mma/tracks/prio/status done
order=$(for t in p-low p-mid p-high p-mid2 p-neg; do echo "$(worker_of $t) $t"; done | sort -n | awk '{ printf "%s ", $2 }')
expect_eq "start order: priority, then creation order" "$order" "p-high p-mid p-mid2 p-low p-neg "
check "one at a time: each started after the previous ended" \
	jqe '[.workers | sort_by(.id) | .[] | [.started_at, .ended_at]] | . as $w | all(range(1; length); $w[.][0] >= $w[. - 1][1])' mma/workers.json

finish
