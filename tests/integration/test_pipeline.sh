#!/usr/bin/env bash
# test_pipeline: the scheduler loop and the daemon's life cycle. max_workers
# (write, read back, 8 writers at once, and never more running than it
# allows), pause (nothing
# new starts, running workers go on), resume, freeze (the worker's process
# group is stopped: state T in /proc/PID/stat, its log does not grow, and
# after resume it runs again and finishes), then clean shutdown: unmounting
# makes the daemon exit 0 after a running worker got TERM (it writes a line
# in its trap), and SIGTERM to a second daemon does the same.
. "$(dirname "$0")/lib.sh"

orchfs_start --max-workers 2
cd "$M" || exit 1

w_is() { status_is "mma/workers/$1/status" "$2"; }
log_has() { grep -qx -- "$2" "mma/workers/$1/log"; }
# every process of process group $1 is in state $2 (T) or none is ($2 = !T)
group_state() {
	local pg=$1 want=$2 p n=0 s
	for p in $(pgrep -g "$pg"); do
		s=$(proc_state "$p")
		[ -z "$s" ] && continue
		n=$((n + 1))
		if [ "$want" == T ]; then [ "$s" == T ] || return 1; else [ "$s" != T ] || return 1; fi
	done
	[ "$n" -gt 0 ]
}
pause() { ctl_write mma/pipeline/pause "${1:-pause}"; }
resume() { ctl_write mma/pipeline/resume resume; }

# --- max_workers ---
expect_eq "max_workers reads --max-workers" "$(cat mma/pipeline/max_workers)" 2
ctl_write mma/pipeline/max_workers 1
check "writing max_workers succeeds" test $? -eq 0
check "the write reads back the pipeline" jqe '.max_workers == 1 and .status == "running"' <<<"$RESULT"
expect_eq "max_workers reads back 1" "$(cat mma/pipeline/max_workers)" 1
check "state.json shows it" jqe '.pipeline.max_workers == 1' state.json
ctl_write mma/tracks/create '{"id":"mw","tasks":[
  {"id":"m1","command":"sleep 0.3"},{"id":"m2","command":"sleep 0.3"},{"id":"m3","command":"sleep 0.3"}]}'
most=0
for i in $(seq 1 60); do
	r=$(jq '.running' mma/workers.json)
	[ "$r" -gt "$most" ] && most=$r
	status_is mma/tracks/mw/status done && break
	sleep 0.05
done
check "with max_workers 1, never more than 1 runs" test "$most" -le 1
wait_for "the 3 tasks finish one at a time" 5 status_is mma/tracks/mw/status done
ctl_write mma/pipeline/max_workers $'3\n'
expect_eq "max_workers 3 (with a newline) reads back 3" "$(cat mma/pipeline/max_workers)" 3
expect_eq "a control file says 4096 bytes, as a sysfs attribute does" \
	"$(stat -c %s mma/pipeline/max_workers)" 4096
# 8 writers of one control file at once (the kernel lets their writes run
# together): every write acknowledged, and what stays is one of them
expect_eq "200 concurrent writes, none refused" "$(writes_at_once mma/pipeline/max_workers 8 25)" 0
check "max_workers is one of the values written" grep -Eqx '[1-8]' mma/pipeline/max_workers
check "state.json agrees with it" jqe ".pipeline.max_workers == $(cat mma/pipeline/max_workers)" state.json
ctl_write mma/pipeline/max_workers 3

# --- pause: nothing new starts; running workers go on ---
early=$(spawn 'sleep 0.6; echo fine')
pause
check "pause reads back the pipeline paused" jqe '.status == "paused"' <<<"$RESULT"
expect_eq "pipeline/status reads paused" "$(cat mma/pipeline/status)" paused
ctl_write mma/tracks/create '{"id":"pz","tasks":[{"id":"p1","command":"echo p1-ran"}]}'
expect_eq "a ready task while paused" "$(cat mma/tasks/p1/status)" ready
wait_for "a worker started before the pause goes on and exits" 5 w_is "$early" exited
check "it finished its work" log_has "$early" fine
sleep 0.5
check "while paused, the ready task has not started" jqe '.status == "ready" and .workers == []' mma/tasks/p1/info.json
resume
check "resume reads back the pipeline running" jqe '.status == "running"' <<<"$RESULT"
expect_eq "pipeline/status reads running" "$(cat mma/pipeline/status)" running
wait_for "after resume the task runs and is done" 5 status_is mma/tasks/p1/status done
pause "anything at all"
expect_eq "any content pauses" "$(cat mma/pipeline/status)" paused
resume

# --- freeze: process groups are stopped, then continued ---
fw=$(spawn 'i=0; while [ $i -lt 15 ]; do i=$((i+1)); echo tick $i; sleep 0.1; done; echo finished')
wait_for "the worker to freeze is ticking" 5 log_has "$fw" "tick 1"
pid=$(jq -r '.pid' "mma/workers/$fw/info.json")
pause freeze
check "freeze reads back the pipeline frozen" jqe '.status == "frozen"' <<<"$RESULT"
expect_eq "pipeline/status reads frozen" "$(cat mma/pipeline/status)" frozen
wait_for "the frozen worker's process is stopped (state T)" 3 eval '[ "$(proc_state '"$pid"')" == T ]'
wait_for "every process of its group is stopped" 3 group_state "$pid" T
expect_eq "a frozen worker is still running" "$(cat "mma/workers/$fw/status")" running
size1=$(stat -c %s "mma/workers/$fw/log")
ctl_write mma/tracks/create '{"id":"fz","tasks":[{"id":"f1","command":"echo f1-ran"}]}'
sleep 0.6
size2=$(stat -c %s "mma/workers/$fw/log")
expect_eq "a frozen worker's log does not grow" "$size2" "$size1"
expect_eq "no task starts while frozen" "$(cat mma/tasks/f1/status)" ready
check "the frozen worker has not finished" eval '! log_has '"$fw"' finished'
resume
expect_eq "resume after freeze: running" "$(cat mma/pipeline/status)" running
wait_for "after resume its process runs again (not T)" 3 eval '[ "$(proc_state '"$pid"')" != T ] || [ ! -e /proc/'"$pid"' ]'
wait_for "the resumed worker finishes" 8 w_is "$fw" exited
check "its log has everything" eval 'log_has '"$fw"' "tick 15" && log_has '"$fw"' finished'
wait_for "the task held back by the freeze runs" 5 status_is mma/tasks/f1/status done
fw2=$(spawn 'sleep 30')
pid2=$(jq -r '.pid' "mma/workers/$fw2/info.json")
ctl_write mma/pipeline/pause '{"freeze":true}'
check "JSON {\"freeze\":true} freezes" jqe '.status == "frozen"' <<<"$RESULT"
wait_for "its worker is stopped" 3 eval '[ "$(proc_state '"$pid2"')" == T ]'
echo "$fw2 KILL" >mma/workers/kill
wait_for "a frozen worker can still be killed" 5 w_is "$fw2" killed
resume

# --- reads are never stale, across processes ---
cat >"$T/fresh.py" <<'EOF'
# A writer changes max_workers and the pipeline's status; after each
# acknowledged write another process reads both, while a third reads them
# in a loop all along: every read after the acknowledgement sees the write.
import os, subprocess, sys
M = sys.argv[1]
mw, st = M + "/mma/pipeline/max_workers", M + "/mma/pipeline/status"
loop = "import sys\nwhile True:\n    for p in sys.argv[1:]: open(p).read()\n"
check = ("import sys\nfor line in sys.stdin:\n"
         "    got = open(sys.argv[1]).read().strip() + ' ' + open(sys.argv[2]).read().strip()\n"
         "    print('ok' if got == line.strip() else 'got %s, want %s' % (got, line.strip()), flush=True)\n")
hammer = subprocess.Popen([sys.executable, "-c", loop, mw, st])
checker = subprocess.Popen([sys.executable, "-c", check, mw, st], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
def write(path, data):
    fd = os.open(path, os.O_WRONLY)
    os.write(fd, data)
    os.close(fd)
bad = []
for i in range(300):
    n, paused = i % 7 + 1, i % 2 == 1
    write(mw, b"%d\n" % n)
    write(M + "/mma/pipeline/" + ("pause" if paused else "resume"), b"\n")
    checker.stdin.write("%d %s\n" % (n, "paused" if paused else "running"))
    checker.stdin.flush()
    answer = checker.stdout.readline().strip()
    if answer != "ok":
        bad.append(answer)
hammer.kill()
checker.stdin.close()
checker.wait()
write(M + "/mma/pipeline/resume", b"\n")
write(mw, b"2\n")
print("%d stale of 300 %s" % (len(bad), bad[:3]))
EOF
out=$(timeout 60 python3 "$T/fresh.py" "$M")
check "300 writes, each read back by another process while a third reads all along: none stale ($out)" \
	test "${out%% *}" == 0

# --- clean shutdown by unmount ---
# The worker is spawned from outside the mount: a process whose cwd is inside
# the mount keeps it busy (see the last section).
cd "$T/work" || exit 1
sw=$(spawn 'trap "echo got-term; exit 0" TERM; echo armed; while :; do sleep 0.1; done')
wait_for "the shutdown worker is armed" 5 grep -qx armed "$M/mma/workers/$sw/log"
swpid=$(jq -r '.pid' "$M/mma/workers/$sw/info.json")
swlog=$(jq -r '.log' "$M/mma/workers/$sw/info.json")
pid_d=$DAEMON_PID
fusermount3 -u "$M"
check "fusermount3 -u succeeds" test $? -eq 0
daemon_wait_exit "$pid_d" 10
expect_eq "after unmount the daemon exits 0" "$DAEMON_RC" 0
check "the running worker got TERM (wrote in its trap)" grep -qx got-term "$swlog"
check "the worker is gone" eval '! kill -0 '"$swpid"' 2>/dev/null'
check "the mount is gone" eval '! mountpoint -q "$M"'

# --- clean shutdown by SIGTERM ---
orchfs_start --max-workers 2
cd "$M" || exit 1
sw=$(spawn 'trap "echo got-term; exit 0" TERM; echo armed; while :; do sleep 0.1; done')
wait_for "the second daemon's worker is armed" 5 log_has "$sw" armed
swpid=$(jq -r '.pid' "mma/workers/$sw/info.json")
swlog=$(jq -r '.log' "mma/workers/$sw/info.json")
cd "$T" || exit 1
kill -TERM "$DAEMON_PID"
daemon_wait_exit "$DAEMON_PID" 10
expect_eq "after SIGTERM the daemon exits 0" "$DAEMON_RC" 0
check "its running worker got TERM (wrote in its trap)" grep -qx got-term "$swlog"
check "that worker is gone" eval '! kill -0 '"$swpid"' 2>/dev/null'
check "the daemon unmounted itself" eval '! mountpoint -q "$M"'

# --- unmount while a worker spawned from inside the mount runs ---
# `cd MOUNT; echo CMD > mma/workers/spawn`, as the README's first ten minutes do, then
# fusermount3 -u from elsewhere must still shut the daemon down (README, "The daemon").
orchfs_start --max-workers 2
cd "$M" || exit 1
sw=$(spawn 'trap "echo got-term; exit 0" TERM; echo armed; while :; do sleep 0.1; done')
wait_for "a worker spawned from inside the mount is armed" 5 log_has "$sw" armed
swlog=$(jq -r '.log' "mma/workers/$sw/info.json")
cd "$T" || exit 1
pid_d=$DAEMON_PID
fusermount3 -u "$M" 2>/dev/null
check "fusermount3 -u succeeds while a worker spawned from inside the mount runs" test $? -eq 0
if mountpoint -q "$M"; then
	kill -TERM "$pid_d" # what the user has left: the daemon detaches the mount itself
fi
daemon_wait_exit "$pid_d" 10
expect_eq "that daemon exits 0" "$DAEMON_RC" 0
check "that worker got TERM" grep -qx got-term "$swlog"

finish
