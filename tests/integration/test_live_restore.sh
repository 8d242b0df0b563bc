#!/usr/bin/env bash
# test_live_restore: workers outlive the daemon (README, "Live restore"). After
# kill -9 the next daemon adopts a running worker (same pid, same stdin, its
# exit code reported when it ends) and learns the exit of one that ended
# while no daemon was there, so its DAG goes on; 5 workers running at a kill
# -9 are all adopted and end with their own exit codes, their logs whole; a clean stop with
# --live-restore leaves workers running for the next daemon (an upgrade),
# one without stops them, and then no supervisor is left; a supervisor
# killed under a running daemon makes its workers lost, and the next spawn
# works.
. "$(dirname "$0")/lib.sh"

crash() {
	kill -KILL "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
}
supervisor() { pgrep -f -- "--supervise $S/run\$"; }
alive() { local s; s=$(proc_state "$1"); [ -n "$s" ] && [ "$s" != Z ]; }

orchfs_start --max-workers 4
cd "$M" || exit 1

# a worker that answers each line on its stdin, and exits 3 on "quit"
echoer=$(spawn 'while read -r line; do [ "$line" = quit ] && exit 3; echo "got $line"; done')
epid=$(jq -r .pid "mma/workers/$echoer/info.json")
check "a supervisor runs the workers" test -n "$(supervisor)"
check "the echoer answers" write_once "mma/workers/$echoer/stdin" $'one\n'
wait_for "its answer is in its log" 5 grep -qx "got one" "mma/workers/$echoer/log"
# a plan whose first task ends while no daemon is there
check "plan created" ctl_write mma/tracks/create \
	'{"id":"p","tasks":[{"id":"first","command":"sleep 1; echo first-done"},
	  {"id":"second","command":"echo second-done","deps":["first"]}]}'
wait_for "first runs" 5 status_is mma/tasks/first/status running
first=$(readlink mma/tasks/first/worker)
first=${first##*/}
# the scheduler's own commits are journaled in order before any later
# acknowledged write: after this one, first's start is on the disk (a crash
# before it would rightly make worker $first lost, its task started again)
check "a write acknowledged after first's start" write_once mma/pipeline/max_workers 5

cd / || exit 1
crash
check "after kill -9 the echoer still runs" alive "$epid"
sleep 1.5   # first ends meanwhile
orchfs_restart
cd "$M" || exit 1
expect_eq "the echoer was adopted" "$(cat "mma/workers/$echoer/status")" running
expect_eq "with the same pid" "$(jq -r .pid "mma/workers/$echoer/info.json")" "$epid"
check "its trace says so" grep -q worker.adopted "mma/workers/$echoer/trace"
check "its stdin is the same pipe" write_once "mma/workers/$echoer/stdin" $'two\n'
wait_for "and it answers" 5 grep -qx "got two" "mma/workers/$echoer/log"
expect_eq "first ended while no daemon was there: exited" "$(cat "mma/workers/$first/status")" exited
expect_eq "with its exit code" "$(jq .exit_code "mma/workers/$first/info.json")" 0
wait_for "so the DAG went on: second is done" 10 status_is mma/tasks/second/status done
check "second's output" grep -q second-done "$(jq -r .log "mma/workers/$(readlink mma/tasks/second/worker | sed 's|.*/||')/info.json")"
check "the echoer's end is told, exit code and all" write_once "mma/workers/$echoer/stdin" $'quit\n'
wait_for "the echoer failed (exit 3)" 5 status_is "mma/workers/$echoer/status" failed
expect_eq "exit code 3" "$(jq .exit_code "mma/workers/$echoer/info.json")" 3

# --- kill -9 with 5 workers running: all 5 adopted, each ends with its own
# exit code, its log whole ---
five=()
for n in 1 2 3 4 5; do
	five+=("$(spawn "echo before-$n; sleep 2; echo after-$n; exit $((n + 10))")")
done
wait_for "the 5 run" 5 eval 'for w in '"${five[*]}"'; do grep -q before- mma/workers/$w/log || exit 1; done'
cd / || exit 1
crash
orchfs_restart
cd "$M" || exit 1
for n in 1 2 3 4 5; do
	w=${five[$((n - 1))]}
	expect_eq "worker $w adopted" "$(cat "mma/workers/$w/status")" running
done
for n in 1 2 3 4 5; do
	w=${five[$((n - 1))]}
	wait_for "worker $w failed with exit $((n + 10))" 10 eval \
		'[ "$(jq .exit_code mma/workers/'"$w"'/info.json)" = '"$((n + 10))"' ]'
	expect_eq "its log is whole" "$(cat "mma/workers/$w/log")" "$(printf 'before-%s\nafter-%s' "$n" "$n")"
done

# --- an upgrade: a clean stop with --live-restore leaves workers running ---
cd / || exit 1
fusermount3 -u "$M"
daemon_wait_exit "$DAEMON_PID" 10
orchfs_restart --live-restore
cd "$M" || exit 1
w=$(spawn 'exec sleep 300')
wpid=$(jq -r .pid "mma/workers/$w/info.json")
cd / || exit 1
fusermount3 -u "$M"
daemon_wait_exit "$DAEMON_PID" 10
check "a clean stop with --live-restore left it running" alive "$wpid"
orchfs_restart
cd "$M" || exit 1
expect_eq "the next daemon adopted it" "$(cat "mma/workers/$w/status")" running
# without --live-restore, a clean stop stops the workers, and nothing is left
cd / || exit 1
fusermount3 -u "$M"
daemon_wait_exit "$DAEMON_PID" 10
wait_for "a clean stop without it stopped the worker" 5 eval '! alive '"$wpid"
wait_for "and no supervisor is left" 5 test -z "$(supervisor)"
orchfs_restart
cd "$M" || exit 1
expect_eq "the worker was killed" "$(cat "mma/workers/$w/status")" killed

# --- the supervisor killed under a running daemon: its workers are lost ---
w=$(spawn 'exec sleep 300')
wpid=$(jq -r .pid "mma/workers/$w/info.json")
pkill -KILL -f -- "--supervise $S/run\$"
wait_for "worker $w is lost" 5 status_is "mma/workers/$w/status" lost
wait_for "what it ran in its cgroup went with it" 5 eval '! alive '"$wpid"' || [ "$(jq -r .pipeline.isolation state.json)" = process-group ]'
kill -KILL "$wpid" 2>/dev/null
w2=$(spawn 'echo again')
wait_for "the next spawn works, under a new supervisor" 5 status_is "mma/workers/$w2/status" exited

finish
