#!/usr/bin/env bash
# test_inotify: the README's "Watching for change" as inotifywait and tail -f see it. The daemon's own
# changes must reach watchers: MODIFY of status files and documents, CREATE
# and DELETE of workers, tasks and context entries, a growing worker log, a
# burst of writes whose last value is never lost, last_error (which changes
# without an event), and nothing at all for system/telemetry.json. It also
# prints the median latency from a write to the MODIFY it causes.
. "$(dirname "$0")/lib.sh"

command -v inotifywait >/dev/null || _skip_or_fail "inotifywait (inotify-tools) is missing"
orchfs_start --max-workers 2
cd "$M" || exit 1

# watch_start NAME INOTIFYWAIT_ARGS...: inotifywait -m in the background, one
# "EVENTS NAME" line per event into $T/NAME.ev; returns once its watches are
# set. Every watcher is bounded by timeout, whatever happens to the test.
declare -A WATCHERS
watch_start() {
	local name=$1
	shift
	timeout 55 inotifywait -m --format '%e %f' "$@" >"$T/$name.ev" 2>"$T/$name.err" &
	WATCHERS[$name]=$!
	poll 5 grep -q 'Watches established' "$T/$name.err" ||
		fail "watcher $name starts" "$(cat "$T/$name.err")"
}
watch_stop() {
	kill "${WATCHERS[$1]}" 2>/dev/null
	wait "${WATCHERS[$1]}" 2>/dev/null
}
# has_event NAME LINE: watcher NAME printed exactly LINE.
has_event() { grep -qx -- "$2" "$T/$1.ev"; }
# count_event NAME LINE: how many times.
count_event() { grep -cx -- "$2" "$T/$1.ev"; }
at_least() { [ "$(count_event "$1" "$2")" -ge "$3" ]; }

# --- what nobody can be watching costs no call on the mount ---
# First, on the fresh mount: nobody has looked into mma/tasks or mma/workers,
# so no watch can be there, and the new tasks' and workers' directories are
# not announced (each announcement is a mkdir the FUSE handlers count as an
# "other" op). Once mma/tasks is looked at, its new directories are.
other_ops() { jq .fuse.other.count system/telemetry.json; }
# track_of NAME N: a track of N `true` tasks, to its end
track_of() {
	local i tasks=""
	for ((i = 0; i < $2; i++)); do tasks+="${i:+,}{\"id\":\"$1-$i\",\"command\":\"true\"}"; done
	printf '{"id":"%s","tasks":[%s]}\n' "$1" "${tasks#,}" >mma/tracks/create || return 1
	wait_for "track $1 ends" 30 grep -qx done "mma/tracks/$1/status"
}
before=$(other_ops)
track_of quiet 20
after=$(other_ops)
check "20 tasks nobody looks at: their entries are not announced ($((after - before)) calls)" \
	test $((after - before)) -le 4
ls mma/tasks mma/workers >/dev/null
before=$(other_ops)
track_of heard 20
after=$(other_ops)
check "20 tasks in a directory looked at: each entry is announced ($((after - before)) calls)" \
	test $((after - before)) -ge 40

# Watched from the start: telemetry changes ten times a second and is never announced.
watch_start tele -e modify -e create -e delete system

# --- pipeline/status after pause and resume ---
watch_start pipe -e modify mma/pipeline
echo >mma/pipeline/pause
wait_for "pause: MODIFY of mma/pipeline/status" 2 has_event pipe "MODIFY status"
echo >mma/pipeline/resume
wait_for "resume: a second MODIFY of mma/pipeline/status" 2 at_least pipe "MODIFY status" 2
check "max_workers, unchanged, is not announced" eval '! has_event pipe "MODIFY max_workers"'
watch_stop pipe

# --- a task's status as it runs and ends ---
echo >mma/pipeline/pause
ctl_write mma/tracks/create '{"id":"nt","tasks":[{"id":"t1","command":"sleep 0.4"}]}'
check "a track with task t1 is created (paused: t1 waits)" jqe '.id == "nt"' <<<"$RESULT"
watch_start task -e modify mma/tasks/t1
echo >mma/pipeline/resume
wait_for "t1 runs and is done" 5 status_is mma/tasks/t1/status done
wait_for "MODIFY of tasks/t1/status when it runs and when it ends" 2 at_least task "MODIFY status" 2
check "MODIFY of tasks/t1/info.json too" has_event task "MODIFY info.json"
watch_stop task

# --- a task directory goes ---
watch_start tasks -e delete -e create mma/tasks
echo 'remove_task t1' >mma/dag/mutate
wait_for "remove_task: DELETE,ISDIR t1 on mma/tasks" 2 has_event tasks "DELETE,ISDIR t1"
ctl_write mma/dag/mutate '{"op":"add_task","track":"nt","task":{"id":"t2","command":"true"}}'
wait_for "add_task: CREATE,ISDIR t2 on mma/tasks" 2 has_event tasks "CREATE,ISDIR t2"
watch_stop tasks

# --- a worker directory appears ---
wait_for "t2 runs and is done" 5 status_is mma/tasks/t2/status done
watch_start workers -e create mma/workers
w=$(spawn 'sleep 0.1')
check "spawn gives an id" test -n "$w"
wait_for "spawn: CREATE,ISDIR $w on mma/workers" 2 has_event workers "CREATE,ISDIR $w"
check "every CREATE there is a worker directory" eval '! grep -qvx "CREATE,ISDIR [0-9]*" "$T/workers.ev"'
watch_stop workers

# --- context entries come and go ---
echo 'some context' >"$T/note.txt"
watch_start ctx -e create -e delete context/files
ctl_write context/inject "$T/note.txt as note"
check "inject succeeds" test $? -eq 0
wait_for "inject: CREATE note on context/files" 2 has_event ctx "CREATE note"
check "context/files/note reads the file" test "$(cat context/files/note)" == "some context"
ctl_write context/remove note
check "remove succeeds" test $? -eq 0
wait_for "remove: DELETE note on context/files" 2 has_event ctx "DELETE note"
check "context/files/note is gone" test ! -e context/files/note
watch_stop ctx

# --- a growing worker log ---
w=$(spawn 'for i in 1 2 3 4 5 6; do echo line $i; sleep 0.2; done')
watch_start log -e modify "mma/workers/$w/log"
wait_for "a log growing line by line gives MODIFY events on it" 3 at_least log "MODIFY " 3
wait_for "the worker exits" 3 status_is "mma/workers/$w/status" exited
watch_stop log

# --- tail -f follows a worker ---
# GNU tail counts a FUSE file system as remote and polls it once a second
# instead of using inotify, so this checks that plain `tail -f` follows the
# log's true size; the MODIFY events above are what inotify-based tools see.
w=$(spawn 'i=0; while [ $i -lt 15 ]; do i=$((i + 1)); echo tick $i; sleep 0.2; done')
timeout 1.5 tail -f "mma/workers/$w/log" >"$T/tail.out" 2>/dev/null
n=$(grep -c '^tick ' "$T/tail.out")
log "     tail -f read $n lines in 1.5 s"
check "tail -f follows a worker printing every 0.2 s (>= 3 lines in 1.5 s)" test "$n" -ge 3
check "tail -f saw them in order" test "$(grep '^tick ' "$T/tail.out" | head -1)" == "tick 1"
echo "$w" >mma/workers/kill

# --- last_error changes without an event ---
watch_start err -e modify last_error
{ write_once mma/workers/spawn '{"command":'; } 2>/dev/null
wait_for "a failed write: MODIFY of last_error" 2 has_event err "MODIFY "
watch_stop err

# --- a burst: the last change is never lost ---
# A reader reacting to every MODIFY of state.json reads max_workers again;
# its last read must be the last value written. (max_workers itself would
# show the writer's own kernel events, so state.json is the watched file.)
{
	timeout 30 inotifywait -m -e modify --format '%e' state.json 2>"$T/reader.err" &
	echo $! >"$T/reader.pid"
	wait
} | while read -r _; do
	jq -r '.pipeline.max_workers' state.json 2>/dev/null
done >"$T/reads" &
reader=$!
poll 5 grep -q 'Watches established' "$T/reader.err" || fail "the burst reader starts"
for i in $(seq 1 100); do
	echo "$i" >mma/pipeline/max_workers
done
expect_eq "max_workers is 100 after the burst" "$(cat mma/pipeline/max_workers)" 100
last_read_is() { [ "$(tail -n 1 "$T/reads")" == "$1" ]; }
wait_for "the reader's last read after the last event shows 100" 5 last_read_is 100
sleep 0.3
check "and nothing after it said otherwise" last_read_is 100
log "     the reader woke $(wc -l <"$T/reads") times for 100 writes"
# A read after a late event of the burst may already have seen 100 without the
# last announcement: a change when all is quiet proves that one arrives alone.
woke=$(wc -l <"$T/reads")
echo 101 >mma/pipeline/max_workers
woke_again() { [ "$(wc -l <"$T/reads")" -gt "$woke" ] && last_read_is 101; }
wait_for "a lone change after the burst wakes the reader, which reads it" 5 woke_again
kill "$(cat "$T/reader.pid")" 2>/dev/null
wait "$reader" 2>/dev/null

# --- one change touching more files than the hand takes at once (64) ---
# 100 waiting tasks held in one mutation: each task's directory, watched,
# hears the MODIFY of its status, whichever batch of the pass it is in.
echo >mma/pipeline/pause
tasks="" holds="" dirs=()
for i in $(seq 0 99); do
	tasks+="${tasks:+,}{\"id\":\"m$i\",\"command\":\"true\"}"
	holds+="${holds:+; }hold m$i"
	dirs+=("mma/tasks/m$i")
done
ctl_write mma/tracks/create "{\"id\":\"many\",\"tasks\":[$tasks]}"
check "a track of 100 waiting tasks" jqe '.id == "many"' <<<"$RESULT"
watch_start many -e modify "${dirs[@]}"
ctl_write mma/dag/mutate "$holds"
expect_eq "100 tasks held in one mutation" "$(cat mma/tasks/m*/status | grep -cx held)" 100
wait_for "each of the 100 task directories hears MODIFY status" 5 at_least many "MODIFY status" 100
watch_stop many
check "... once each" test "$(count_event many "MODIFY status")" -eq 100
echo >mma/pipeline/resume

# --- latency from a write to its MODIFY ---
if command -v python3 >/dev/null; then
	python3 - "$M" >"$T/latency" 2>&1 <<'EOF'
# inotify through ctypes: watch pipeline/status, alternate pause and resume,
# time each write until the MODIFY it causes.
import ctypes, os, select, statistics, sys, time
mnt = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
IN_MODIFY = 0x2
fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(mnt + "/mma/pipeline/status"), IN_MODIFY) < 0:
    print("inotify setup failed:", os.strerror(ctypes.get_errno()))
    sys.exit(1)
def drain():
    while select.select([fd], [], [], 0)[0]:
        os.read(fd, 4096)
lat = []
for i in range(20):
    time.sleep(0.05)
    drain()
    ctl = "pause" if i % 2 == 0 else "resume"
    t0 = time.monotonic()
    with open(mnt + "/mma/pipeline/" + ctl, "w") as f:
        f.write("\n")
    if not select.select([fd], [], [], 2.0)[0]:
        print("no MODIFY within 2 s after", ctl)
        sys.exit(1)
    lat.append((time.monotonic() - t0) * 1000)
print("%.1f %.1f %.1f" % (statistics.median(lat), min(lat), max(lat)))
EOF
	read -r med lo hi <"$T/latency"
	log "     latency write -> MODIFY over 20 changes: median ${med} ms (min ${lo}, max ${hi})"
	check "latency: the median is under a generous 500 ms" \
		awk -v m="$med" 'BEGIN { exit !(m + 0 > 0 && m + 0 < 500) }'
fi

watch_stop tele
check "system/telemetry.json is never announced" test ! -s "$T/tele.ev"

finish
