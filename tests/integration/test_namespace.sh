#!/usr/bin/env bash
# test_namespace: the tree of the README's "The namespace" as a user sees it with ls, cat,
# jq and readlink: the top-level files (state.json with seq and every section,
# last_error, README), the mma/ tree (pipeline, workers, tracks, tasks, dag),
# context/, metrics/financial.json, system/telemetry.json; one-word files end
# in a newline; documents are snapshots fixed at open; result read-back on the
# same descriptor; the tasks/ID/worker symlink; objects that do not exist;
# seekdir to any offset; the threads 300 readers needed end after them.
. "$(dirname "$0")/lib.sh"

orchfs_start --max-workers 2
cd "$M" || exit 1

listed() { ls -1a "$1" 2>/dev/null | grep -qxF -- "$2"; }
ends_nl() { [ "$(tail -c1 "$1" | od -An -tx1 | tr -d ' \n')" == 0a ]; }
is_json() { jqe . "$1" >/dev/null 2>&1; }

# --- the root ---
for f in state.json last_error README mma context metrics system; do
	check "root lists $f" listed . "$f"
done
check "state.json is a file" test -f state.json
check "mma is a directory" test -d mma
check "README names the control files" \
	grep -q 'mma/workers/spawn' README
check "README gives the mutate grammar" grep -q 'add_dep T D' README
check "README names context/inject" grep -q 'context/inject' README
check "last_error is one JSON document with an error key" jqe 'has("error")' last_error
check "state.json is JSON" is_json state.json
seq0=$(jq -r '.seq' state.json)
check "state.json carries a numeric seq" jqe '.seq | type == "number"' state.json
for k in pipeline tracks tasks workers context metrics telemetry; do
	check "state.json has $k" jqe --arg k "$k" 'has($k)' state.json
done

# --- mma/ and the pipeline ---
for f in pipeline workers.json workers tracks.json tracks tasks dag.json dag.dot dag; do
	check "mma lists $f" listed mma "$f"
done
for f in status max_workers pause resume; do
	check "mma/pipeline lists $f" listed mma/pipeline "$f"
done
check "mma/dag lists mutate" listed mma/dag mutate
check "mma/workers lists spawn" listed mma/workers spawn
check "mma/workers lists kill" listed mma/workers kill
check "mma/tracks lists create" listed mma/tracks create
expect_eq "pipeline/status reads running" "$(cat mma/pipeline/status)" running
check "pipeline/status ends in a newline" ends_nl mma/pipeline/status
expect_eq "pipeline/max_workers reads --max-workers" "$(cat mma/pipeline/max_workers)" 2
check "pipeline/max_workers ends in a newline" ends_nl mma/pipeline/max_workers
check "workers.json starts empty" jqe '.workers == [] and .running == 0' mma/workers.json
check "tracks.json starts empty" jqe '.tracks == []' mma/tracks.json
check "dag.json starts empty" jqe '.nodes == [] and .edges == []' mma/dag.json

# --- a track, through the read-back of its create ---
plan='{"id":"ns","title":"Namespace","budget_usd":2.5,"tasks":[
 {"id":"a","command":"echo a-ran"},
 {"id":"b","command":"echo b-started; sleep 30","deps":["a"]},
 {"id":"c","command":"true","deps":["b"],"title":"Third"}]}'
ctl_write mma/tracks/create "$plan"
check "tracks/create succeeds" test $? -eq 0
expect_eq "create reads back the track id" "$(jq -r '.id' <<<"$RESULT")" ns
expect_eq "create reads back the track's tasks" "$(jq -r '.tasks | length' <<<"$RESULT")" 3
check "tracks/ lists ns" listed mma/tracks ns
for f in status info.json budget; do
	check "tracks/ns lists $f" listed mma/tracks/ns "$f"
done
check "tracks.json lists ns with 3 tasks" jqe '.tracks[0].id == "ns" and .tracks[0].task_count == 3' mma/tracks.json
check "tracks/ns/info.json has its title and tasks" \
	jqe '.title == "Namespace" and ([.tasks[].id] == ["a","b","c"])' mma/tracks/ns/info.json
check "tracks/ns/budget reads 2.5 USD" awk '{ exit !($1 == 2.5) }' mma/tracks/ns/budget
check "tracks/ns/budget ends in a newline" ends_nl mma/tracks/ns/budget
for t in a b c; do
	check "tasks/ lists $t" listed mma/tasks "$t"
done
for f in status info.json deps; do
	check "tasks/b lists $f" listed mma/tasks/b "$f"
done
expect_eq "tasks/b/deps lists its dep" "$(cat mma/tasks/b/deps)" a
expect_eq "tasks/a/deps is empty" "$(cat mma/tasks/a/deps)" ""
check "tasks/c/info.json has title, deps and command" \
	jqe '.title == "Third" and .deps == ["b"] and .command == "true" and .track == "ns"' mma/tasks/c/info.json

wait_for "task a is done" 5 status_is mma/tasks/a/status done
wait_for "task b is running" 5 status_is mma/tasks/b/status running
check "task status ends in a newline" ends_nl mma/tasks/a/status
expect_eq "task c is blocked" "$(cat mma/tasks/c/status)" blocked
check "track status reads active" status_is mma/tracks/ns/status active

# --- the worker symlink ---
check "tasks/a lists worker once it ran" listed mma/tasks/a worker
check "tasks/a/worker is a symlink" test -L mma/tasks/a/worker
wa=$(jq -r '.worker' mma/tasks/a/info.json)
wb=$(jq -r '.worker' mma/tasks/b/info.json)
expect_eq "readlink tasks/a/worker" "$(readlink mma/tasks/a/worker)" "../../workers/$wa"
expect_eq "readlink tasks/b/worker" "$(readlink mma/tasks/b/worker)" "../../workers/$wb"
expect_eq "the symlink resolves: tasks/a/worker/status" "$(cat mma/tasks/a/worker/status)" exited
check "a task that never ran has no worker link" test ! -e mma/tasks/c/worker -a ! -L mma/tasks/c/worker

# --- a worker's directory ---
for f in status info.json log trace usage stdin kill; do
	check "workers/$wa lists $f" listed "mma/workers/$wa" "$f"
done
check "workers/ lists both workers" eval "listed mma/workers $wa && listed mma/workers $wb"
expect_eq "workers/$wa/status" "$(cat "mma/workers/$wa/status")" exited
check "worker status ends in a newline" ends_nl "mma/workers/$wa/status"
check "workers/$wa/info.json names task, track and exit code" \
	jqe '.task == "a" and .track == "ns" and .exit_code == 0 and .status == "exited" and (.pid | type == "number")' "mma/workers/$wa/info.json"
check "workers/$wa/log holds its output" grep -qx a-ran "mma/workers/$wa/log"
check "workers/$wa/trace is JSON lines" jqe -s 'length > 0' "mma/workers/$wa/trace"
check "workers/$wa/trace has worker.spawned and worker.exited" \
	jqe -s 'map(.type) | index("worker.spawned") != null and index("worker.exited") != null' "mma/workers/$wa/trace"
check "workers/$wa/trace lines carry seq" jqe -s 'all(.[]; .seq | type == "number")' "mma/workers/$wa/trace"
check "workers/$wa/usage starts at zero" jqe '.input_tokens == 0 and .output_tokens == 0' "mma/workers/$wa/usage"
check "tasks/a/info.json lists its worker" jqe --argjson w "$wa" '.workers[0].id == $w and .status == "done"' mma/tasks/a/info.json
check "workers.json lists 2 workers, 1 running" jqe '(.workers | length) == 2 and .running == 1' mma/workers.json

# --- dag.json and dag.dot ---
check "dag.json has 3 nodes with status" \
	jqe '[.nodes[] | .id + ":" + .status] == ["a:done","b:running","c:blocked"]' mma/dag.json
check "dag.json has the edges dep -> task" \
	jqe '.edges | map(.from + ">" + .to) | sort == ["a>b","b>c"]' mma/dag.json
check "dag.dot is a digraph" grep -q digraph mma/dag.dot
check "dag.dot has the edge a -> b" grep -q '"a" -> "b"' mma/dag.dot

# --- context/, metrics/, system/ ---
for f in state.json aggregate files inject remove; do
	check "context lists $f" listed context "$f"
done
check "context/state.json has entries, skeleton_cache, aggregate" \
	jqe '.entries == [] and has("skeleton_cache") and has("aggregate")' context/state.json
check "metrics lists financial.json" listed metrics financial.json
check "financial.json has total, tracks, workers" \
	jqe 'has("total") and (.tracks | has("ns")) and has("workers") and (.total | has("cost_usd"))' metrics/financial.json
check "system lists telemetry.json" listed system telemetry.json
check "telemetry.json has loop, process and fuse sections" \
	jqe '(.loop | type == "object") and (.process | type == "object") and (.fuse | type == "object")' system/telemetry.json
check "telemetry counts FUSE reads" jqe '.fuse.read.count > 0' system/telemetry.json
check "telemetry has uptime and loop ticks" jqe '(.uptime_s | type == "number") and .loop.count > 0' system/telemetry.json
check "telemetry reports process CPU and RSS" jqe '(.process.cpu_s | type == "number") and .process.rss_bytes > 0' system/telemetry.json

# --- state.json carries everything ---
check "state.json: seq moved on" jqe --argjson s "$seq0" '.seq > $s' state.json
check "state.json: tracks" jqe '[.tracks[].id] == ["ns"]' state.json
check "state.json: tasks" jqe '[.tasks[].id] == ["a","b","c"]' state.json
check "state.json: workers" jqe '(.workers | length) == 2' state.json
check "state.json: pipeline" jqe '.pipeline.status == "running" and .pipeline.max_workers == 2' state.json
check "state.json: metrics" jqe '.metrics.total | has("input_tokens")' state.json
check "state.json: context" jqe '.context | has("entries")' state.json
check "state.json: telemetry" jqe '.telemetry | has("loop")' state.json

# --- snapshots ---
check "state.json read 7 bytes at a time is one JSON document" \
	eval 'dd if=state.json bs=7 status=none | jqe .seq >/dev/null'
exec 4<mma/pipeline/status
ctl_write mma/pipeline/pause pause
IFS= read -r snap <&4
exec 4<&-
expect_eq "an open document keeps its snapshot after a change" "$snap" running
expect_eq "a new open sees the change" "$(cat mma/pipeline/status)" paused
ctl_write mma/pipeline/resume resume
exec 4<mma/tasks/c/info.json
ctl_write mma/dag/mutate "hold c"
check "mutate hold c succeeds" jqe '.applied == 1' <<<"$RESULT"
check "an open info.json keeps its snapshot (blocked)" eval 'jqe ".status == \"blocked\"" <&4'
exec 4<&-
check "a new open of info.json sees held" jqe '.status == "held"' mma/tasks/c/info.json

# --- things that are not there ---
check "cat of an unknown task fails" eval '! cat mma/tasks/nosuch/status 2>/dev/null'
check "ls of an unknown worker fails" eval '! ls mma/workers/99 >/dev/null 2>&1'
check "ls of an unknown track fails" eval '! ls mma/tracks/nosuch >/dev/null 2>&1'
check "a bad worker id is not a worker" eval '! ls mma/workers/01 >/dev/null 2>&1'
for bad in +1 ' 1' '1 ' -1 0x1 1e0; do
	check "\"$bad\" is not worker 1" eval '! ls "mma/workers/$bad" >/dev/null 2>&1'
done
check "... while 1 is" test -d mma/workers/1
check "an unknown file at the root does not exist" test ! -e nosuch

# --- seekdir to any number: no garbage entries (offsets are our cookies) ---
# readdir(3) after seekdir(3) asks the filesystem for that offset as it is
seek_names() { # seek_names DIR OFFSET...: the names read after each seekdir
	/usr/bin/python3 - "$@" <<'EOF'
import ctypes, sys
class Dirent(ctypes.Structure):
    _fields_ = [("ino", ctypes.c_uint64), ("off", ctypes.c_int64), ("reclen", ctypes.c_ushort),
                ("type", ctypes.c_ubyte), ("name", ctypes.c_char * 256)]
libc = ctypes.CDLL(None, use_errno=True)
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = [ctypes.c_void_p]
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
libc.closedir.argtypes = [ctypes.c_void_p]
d = libc.opendir(sys.argv[1].encode())
for off in sys.argv[2:]:
    libc.seekdir(d, int(off))
    while True:
        e = libc.readdir(d)
        if not e:
            break
        print(e.contents.name.decode("utf-8", "replace"))
libc.closedir(d)
EOF
}
listing=$( (echo .; echo ..; ls -A mma) | sort -u)
got=$(seek_names mma 0 1 2 3 5 7 13 24 25 31 100 4095 65536 9223372036854775807 | sort -u)
expect_eq "seekdir anywhere reads only real entries" "$got" "$listing"
expect_eq "seekdir to 0 reads the whole listing" "$(seek_names mma 0 | sort)" "$listing"


# --- a crowd of readers leaves no crowd of threads behind ---
threads() { ls "/proc/$DAEMON_PID/task" | wc -l; }
t0=$(threads)
readers=()
for i in $(seq 300); do
	{ cat state.json mma/workers.json mma/dag.json >/dev/null; } &
	readers+=($!)
done
wait "${readers[@]}"
few_threads() { [ "$(threads)" -le $((t0 + 8)) ]; }
wait_for "after 300 readers, at most 8 idle threads more than before ($t0)" 5 few_threads

finish
