#!/usr/bin/env bash
# test_workers: hand-spawned and task workers as a shell user drives them:
# spawn in both forms with the result read back on the same descriptor,
# status/info.json/exit codes, the ORCHFS_* environment, cwd and env, logs
# that grow while the worker runs, stdin, kill by id or per worker with
# signals and a grace (a worker trapping TERM is KILLed after the grace),
# STOP/CONT that do not end a worker, the trace, workers.json, and that
# workers run at nice 0 with the normal policy whatever the scheduler's.
. "$(dirname "$0")/lib.sh"

# the daemon's environment holds a secret its workers must not see
export ORCHFS_TEST_SECRET=hunter2 LC_TESTING=passed
# and it inherits an ignored signal (as under nohup), which its workers must not
trap '' USR2
orchfs_start --max-workers 4
trap - USR2
cd "$M" || exit 1

w_status() { cat "mma/workers/$1/status" 2>/dev/null; }
w_is() { [ "$(w_status "$1")" == "$2" ]; }
log_has() { grep -qx -- "$2" "mma/workers/$1/log"; }

# --- spawn with the result read back on the same descriptor (README, "Control grammar") ---
exec 3<>mma/workers/spawn
echo 'sleep 1' >&3
read -r r <&3
exec 3>&-
check "spawn reads back one JSON line" jqe . <<<"$r"
w1=$(jq -r '.id' <<<"$r")
expect_eq "the first worker id is 1" "$w1" 1
check "spawn result says running, with the command" \
	jqe '.status == "running" and .command == "sleep 1" and .task == null and (.pid | . > 0)' <<<"$r"
check "workers/1 exists" test -d mma/workers/1
expect_eq "workers/1/status is running" "$(w_status 1)" running
check "workers.json counts it as running" jqe '.running >= 1 and .total == 1' mma/workers.json
wait_for "worker 1 exits" 5 w_is 1 exited
check "info.json: exit_code 0, no signal, ended_at set" \
	jqe '.exit_code == 0 and .signal == null and .ended_at != null and .timed_out == false' mma/workers/1/info.json

# --- failures ---
w=$(spawn 'exit 3')
wait_for "a worker exiting 3 is failed" 5 w_is "$w" failed
check "its info.json has exit_code 3" jqe '.exit_code == 3 and .signal == null' "mma/workers/$w/info.json"

# --- JSON spawn: env, cwd, model ---
mkdir -p "$T/elsewhere"
w=$(spawn "{\"command\":\"echo foo=\$FOO; pwd\",\"env\":{\"FOO\":\"bar baz\"},\"cwd\":\"$T/elsewhere\",\"model\":\"m1\"}")
check "JSON spawn gives an id" test -n "$w"
wait_for "the JSON-spawned worker exits" 5 w_is "$w" exited
check "its env reached it" log_has "$w" "foo=bar baz"
check "it ran in its cwd" log_has "$w" "$T/elsewhere"
check "info.json has cwd and model" \
	jqe --arg d "$T/elsewhere" '.cwd == $d and .model == "m1"' "mma/workers/$w/info.json"

# --- the scheduler's priority is not the workers' (README, "Design") ---
# /proc/PID/stat after "(comm) ": field 17 is nice, field 39 the policy (0: normal)
sched_of() { awk '{ sub(/.*\) /, ""); print $17, $39 }' "$1"; }
# a task's worker, which the scheduler thread starts
cat >"$T/prio.sh" <<'EOS'
awk '{ sub(/.*\) /, ""); print $17, $39 }' /proc/$$/stat
EOS
ctl_write mma/tracks/create "{\"id\":\"prio\",\"tasks\":[{\"id\":\"prio1\",\"command\":\"sh $T/prio.sh\"}]}"
wait_for "the task reporting its priority is done" 5 status_is mma/tasks/prio1/status done
expect_eq "a task's worker runs at nice 0 with the normal policy" "$(cat mma/tasks/prio1/worker/log)" "0 0"
# no signal ignored or blocked: neither what the daemon inherited (USR2),
# nor what the supervisor ignores (PIPE) or blocks (CHLD)
w=$(spawn 'grep -E "^Sig(Ign|Blk):" /proc/self/status')
wait_for "the worker printing its signal masks exits" 5 w_is "$w" exited
expect_eq "a worker ignores and blocks no signal" "$(cat "mma/workers/$w/log")" \
	"$(printf 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000')"
sched_tid=$(grep -lx orchfs-sched /proc/"$DAEMON_PID"/task/*/comm | head -1)
if [ "$(id -u)" = 0 ]; then
	expect_eq "as root the scheduler thread is SCHED_FIFO (1), nice 0" \
		"$(sched_of "${sched_tid%/comm}/stat")" "0 1"
fi

# --- a worker that cannot start: an error, and a record that says so ---
n0=$(jq .total mma/workers.json)
expect_errno "a spawn in a directory that does not exist fails" ENOENT mma/workers/spawn \
	"{\"command\":\"true\",\"cwd\":\"$T/no-such-dir\"}"
nf=$((n0 + 1))
check "its worker is a failed record (ids go on, nothing is hidden)" \
	jqe --argjson id "$nf" '.workers[] | select(.id == $id) | .status == "failed" and .exit_code == null and .pid == 0' \
	mma/workers.json
check "its trace says why" jqe -s 'last | .type == "worker.exited" and (.data.error | test("no-such-dir"))' \
	"mma/workers/$nf/trace"
ctl_write mma/tracks/create "{\"id\":\"nostart\",\"tasks\":[{\"id\":\"ns1\",\"command\":\"true\",\"cwd\":\"$T/no-such-dir\",\"retries\":2}]}"
wait_for "a task whose worker cannot start fails, without retries" 5 status_is mma/tasks/ns1/status failed
check "... with its one attempt" jqe '(.workers | length) == 1 and .retries_left == 2' mma/tasks/ns1/info.json

# --- the ORCHFS_* environment ---
w=$(spawn 'env | grep ^ORCHFS_ | sort')
wait_for "the env worker exits" 5 w_is "$w" exited
check "ORCHFS_MOUNT is the mount" log_has "$w" "ORCHFS_MOUNT=$M"
check "ORCHFS_WORKER_ID is its id" log_has "$w" "ORCHFS_WORKER_ID=$w"
check "ORCHFS_TASK_ID is set (empty: no task)" log_has "$w" "ORCHFS_TASK_ID="
check "ORCHFS_TRACK is set (empty: no track)" log_has "$w" "ORCHFS_TRACK="
w=$(spawn 'env')
wait_for "the worker printing its environment exits" 5 w_is "$w" exited
check "a worker has PATH and HOME" eval 'log_has "$w" "PATH=$PATH" && log_has "$w" "HOME=$HOME"'
check "and the locale (LC_*)" log_has "$w" "LC_TESTING=passed"
check "but not the rest of the daemon's environment" eval '! grep -q hunter2 "mma/workers/$w/log"'
check "nor the path of the daemon's token" eval '! grep -q ^ORCHFS_TOKEN_FILE= "mma/workers/$w/log"'
env_of() { # env_of N: a JSON env of N names, on lines of its own (so that
	# write_fd writes it with cat, in one write: bash's printf would cut it)
	jq -n --argjson n "$1" '[range($n) | {key: "V\(.)", value: "x"}] | from_entries'
}
w=$(spawn "{\"command\":\"env | grep -c ^V\",\"env\":$(env_of 1024)}")
wait_for "a worker with 1,024 env names exits" 5 w_is "$w" exited
expect_eq "it got all of them" "$(cat "mma/workers/$w/log")" 1024
expect_errno "an env of 1,025 names is refused" EINVAL mma/workers/spawn "{\"command\":\"true\",\"env\":$(env_of 1025)}"
expect_errno "an env name over 128 bytes is refused" EINVAL mma/workers/spawn \
	"{\"command\":\"true\",\"env\":{\"$(printf 'N%.0s' {1..129})\":\"x\"}}"
w=$(spawn '{"command":"echo $PATH $ORCHFS_WORKER_ID","env":{"PATH":"/own","ORCHFS_WORKER_ID":"mine"}}')
wait_for "a worker overriding PATH exits" 5 w_is "$w" exited
expect_eq "its own env wins over what is passed and orchfs's" "$(cat "mma/workers/$w/log")" "/own mine"
ctl_write mma/tracks/create '{"id":"wk","tasks":[{"id":"envtask","command":"env | grep ^ORCHFS_ | sort"}]}'
check "a track with one task is created" jqe '.id == "wk"' <<<"$RESULT"
wait_for "the task's worker is done" 5 status_is mma/tasks/envtask/status done
tw=$(jq -r '.worker' mma/tasks/envtask/info.json)
check "a task worker has ORCHFS_TASK_ID" log_has "$tw" "ORCHFS_TASK_ID=envtask"
check "a task worker has ORCHFS_TRACK" log_has "$tw" "ORCHFS_TRACK=wk"
check "a task worker has ORCHFS_WORKER_ID" log_has "$tw" "ORCHFS_WORKER_ID=$tw"
check "a task worker has ORCHFS_MOUNT" log_has "$tw" "ORCHFS_MOUNT=$M"
check "a task worker's info.json names task and track" \
	jqe '.task == "envtask" and .track == "wk"' "mma/workers/$tw/info.json"

# --- logs grow, with a true size ---
w=$(spawn 'echo one; sleep 0.4; echo two; sleep 0.4; echo three')
wait_for "the log shows the first line" 3 log_has "$w" one
size1=$(stat -c %s "mma/workers/$w/log")
check "the log's size is its true size" test "$size1" -ge 4
wait_for "the log grows to the third line" 5 log_has "$w" three
size2=$(stat -c %s "mma/workers/$w/log")
check "the log's size grew" test "$size2" -gt "$size1"
expect_eq "cat log shows all its output" "$(cat "mma/workers/$w/log" | tr '\n' ' ')" "one two three "
check "the log is the file in the state directory" \
	cmp -s "mma/workers/$w/log" "$(jq -r '.log' "mma/workers/$w/info.json")"

# --- stdin ---
w=$(spawn 'read line; echo got:$line')
ctl_write "mma/workers/$w/stdin" $'hello world\n'
check "a write to stdin succeeds" test $? -eq 0
check "stdin reads back the bytes taken" jqe '.bytes == 12' <<<"$RESULT"
wait_for "the worker read its stdin" 5 log_has "$w" "got:hello world"
wait_for "the stdin worker exits" 5 w_is "$w" exited

# --- kill by id with a signal ---
w=$(spawn 'sleep 30')
echo "$w KILL" >mma/workers/kill
check "kill ID KILL succeeds" test $? -eq 0
wait_for "a KILLed worker is killed" 5 w_is "$w" killed
check "its info.json has signal KILL" jqe '.signal == "KILL" and .exit_code == null' "mma/workers/$w/info.json"
check "its trace has worker.signal" jqe -s 'map(.type) | index("worker.signal") != null' "mma/workers/$w/trace"

w=$(spawn 'sleep 30')
echo "$w" >mma/workers/kill
wait_for "kill ID (default TERM) kills" 5 w_is "$w" killed
check "its signal is TERM" jqe '.signal == "TERM"' "mma/workers/$w/info.json"

w=$(spawn 'sleep 30')
ctl_write mma/workers/kill "{\"id\":$w,\"signal\":\"INT\",\"grace_s\":1}"
check "JSON kill reads back the worker" jqe --argjson w "$w" '.id == $w' <<<"$RESULT"
wait_for "JSON kill with INT kills" 5 w_is "$w" killed
check "its signal is INT" jqe '.signal == "INT"' "mma/workers/$w/info.json"

# --- a worker that traps TERM is KILLed after the grace ---
w=$(spawn 'trap "echo caught-term" TERM; echo ready; while :; do sleep 0.1; done')
wait_for "the trapping worker is ready" 5 log_has "$w" ready
echo 'TERM grace=1' >"mma/workers/$w/kill"
check "per-worker kill TERM grace=1 succeeds" test $? -eq 0
expect_eq "within the grace it still runs" "$(w_status "$w")" running
wait_for "it caught the TERM" 5 log_has "$w" caught-term
wait_for "after the grace it is killed" 6 w_is "$w" killed
check "it ended by KILL" jqe '.signal == "KILL"' "mma/workers/$w/info.json"
check "its trace shows TERM, then KILL" \
	jqe -s '[.[] | select(.type == "worker.signal") | .data.signal] == ["TERM","KILL"]' "mma/workers/$w/trace"
# the grace, measured: from the TERM event to the KILL event (the scheduler
# looks every 100 ms; a loaded machine may add a little)
grace_ms=$(python3 -c 'import json, sys, datetime
ts = [datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ") for e in map(json.loads, open(sys.argv[1]))
      if e["type"] == "worker.signal"]
print(round((ts[1] - ts[0]).total_seconds() * 1000))' "mma/workers/$w/trace")
check "the KILL came one grace (1 s) after the TERM: ${grace_ms} ms" test "$grace_ms" -ge 1000 -a "$grace_ms" -le 1500

# --- signals that do not end a worker ---
w=$(spawn 'exec sleep 30')
pid=$(jq -r '.pid' "mma/workers/$w/info.json")
echo "$w STOP" >mma/workers/kill
wait_for "STOP stops the process (state T)" 3 eval '[ "$(proc_state '"$pid"')" == T ]'
expect_eq "a stopped worker is still running" "$(w_status "$w")" running
echo CONT >"mma/workers/$w/kill"
wait_for "CONT continues it" 3 eval '[ "$(proc_state '"$pid"')" != T ]'
echo "KILL" >"mma/workers/$w/kill"
wait_for "then KILL ends it" 5 w_is "$w" killed

# --- the trace and workers.json ---
check "worker 1's trace: spawned then exited" \
	jqe -s 'map(.type) == ["worker.spawned","worker.exited"]' mma/workers/1/trace
check "trace lines carry channel workers and data.id" \
	jqe -s 'all(.[]; .channel == "workers" and .data.id == 1)' mma/workers/1/trace
n=$(ls mma/workers | grep -c '^[0-9]*$')
check "workers.json lists every worker" jqe --argjson n "$n" '.total == $n and (.workers | length) == $n' mma/workers.json
check "workers.json ids are 1..N in order" jqe '[.workers[].id] == [range(1; .total + 1)]' mma/workers.json
check "no worker is left running" jqe '.running == 0' mma/workers.json

finish
