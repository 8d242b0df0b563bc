#!/usr/bin/env bash
# test_errors: every errno row of the README's "Errors" through the mount: EINVAL,
# ENOENT, EEXIST, EBUSY, ELOOP, EFBIG (a write of 1 MiB) and EACCES (a write
# to a read-only file). Each failed write must fail, and last_error must hold
# the error object (errno, HTTP status, message, path); the same object reads
# back on the descriptor that failed; bad input changes nothing (the views are
# identical before and after); the daemon is still up after all of it. Then
# commands written in pieces (cat, bash's printf), applied once and whole.
. "$(dirname "$0")/lib.sh"

orchfs_start --max-workers 2
cd "$M" || exit 1

# --- some state to refuse things against ---
ctl_write mma/tracks/create '{"id":"er","budget_usd":5,"tasks":[{"id":"e1","command":"sleep 30"},{"id":"e2","command":"true","deps":["e1"]}]}'
check "setup: track er created" jqe '.id == "er"' <<<"$RESULT"
wait_for "setup: e1 runs" 5 status_is mma/tasks/e1/status running
ctl_write mma/pipeline/pause pause
ctl_write mma/tracks/create '{"id":"eb","tasks":[{"id":"b1","command":"true"},{"id":"b2","command":"true","deps":["b1"]}]}'
check "setup: track eb created (paused)" jqe '.id == "eb"' <<<"$RESULT"
ended=$(spawn true)
wait_for "setup: a worker that has ended" 5 status_is "mma/workers/$ended/status" exited
running=$(jq -r '.worker' mma/tasks/e1/info.json)
printf 'int main(void) { return 0; }\n' >"$T/ok.c"
ctl_write context/inject "$T/ok.c"
check "setup: a context entry" jqe '.name == "ok.c"' <<<"$RESULT"

# Everything a refused write must leave as it was. workers.json minus the
# running worker's runtime_s, which moves with the clock.
views() {
	cat mma/dag.json mma/tracks.json metrics/financial.json mma/pipeline/status mma/pipeline/max_workers
	jq -c 'del(.workers[].runtime_s)' mma/workers.json
	jq -c '.entries' context/state.json
	cat mma/tracks/er/budget
}
before=$(views)
seq_before=$(jq '.seq' state.json)

# --- the error object reads back on the descriptor whose write failed ---
exec 3<>mma/workers/kill
if printf '999' >&3 2>/dev/null; then wrote=ok; else wrote=failed; fi
IFS= read -r back <&3
exec 3>&-
expect_eq "a kill of an unknown worker fails" "$wrote" failed
check "the same descriptor reads back the error object" \
	jqe '.error.errno == "ENOENT" and .error.status == 404 and .error.path == "mma/workers/kill" and (.error.message | length > 0)' <<<"$back"
expect_eq "last_error holds the same object" "$(cat last_error)" "$back"
check "the message names the worker" grep -q 999 <<<"$back"
# read to the end, the object comes once: a failed write leaves the offset at 0
exec 3<>mma/workers/kill
printf '999\n' >&3 2>/dev/null || true
whole=$(cat <&3)
exec 3>&-
expect_eq "read to its end, the descriptor gives the error object once" \
	"$(jq -c 'del(.error.ts)' <<<"$whole")" "$(jq -c 'del(.error.ts)' <<<"$back")"

# --- EINVAL: malformed command, bad JSON, bad id, wrong type ---
expect_errno "spawn: bad JSON" EINVAL mma/workers/spawn '{"command":'
check "the bad JSON message has line and column" grep -q 'line 1, column' <<<"$(last_error_message)"
expect_errno "spawn: unknown field" EINVAL mma/workers/spawn '{"command":"true","bogus":1}'
expect_errno "spawn: command of the wrong type" EINVAL mma/workers/spawn '{"command":5}'
expect_errno "spawn: empty command" EINVAL mma/workers/spawn '{"command":""}'
expect_errno "spawn: relative cwd" EINVAL mma/workers/spawn '{"command":"true","cwd":"rel/dir"}'
expect_errno "mutate: bad task id" EINVAL mma/dag/mutate 'hold Bad!Id'
expect_errno "mutate: unknown operation" EINVAL mma/dag/mutate 'frobnicate e1'
expect_errno "mutate: wrong arity" EINVAL mma/dag/mutate 'add_dep e1'
expect_errno "mutate: op of the wrong type" EINVAL mma/dag/mutate '{"op":7,"task":"e1"}'
expect_errno "mutate: add_task in line form" EINVAL mma/dag/mutate 'add_task e9'
expect_errno "max_workers: not a number" EINVAL mma/pipeline/max_workers 'lots'
expect_errno "max_workers: zero" EINVAL mma/pipeline/max_workers '0'
expect_errno "budget: negative" EINVAL mma/tracks/er/budget '-1'
expect_errno "budget: not a number" EINVAL mma/tracks/er/budget 'ten'
expect_errno "usage: bad count" EINVAL "mma/workers/$running/usage" 'model=m1 in=abc out=1'
expect_errno "usage: missing out" EINVAL "mma/workers/$running/usage" '{"model":"m1","input_tokens":1}'
expect_errno "usage: negative count" EINVAL "mma/workers/$running/usage" '{"model":"m1","input_tokens":-5,"output_tokens":1}'
expect_errno "kill: bad worker id" EINVAL mma/workers/kill 'abc'
expect_errno "kill: unknown signal" EINVAL mma/workers/kill "$running NOSUCHSIG"
expect_errno "kill: bad grace" EINVAL "mma/workers/$running/kill" 'TERM grace=soon'
expect_errno "create: not JSON" EINVAL mma/tracks/create 'make me a track'
expect_errno "create: bad track id" EINVAL mma/tracks/create '{"id":"Bad Id","tasks":[]}'
expect_errno "create: tasks of the wrong type" EINVAL mma/tracks/create '{"id":"zz","tasks":{}}'
expect_errno "create: retries of the wrong type" EINVAL mma/tracks/create '{"id":"zz","tasks":[{"id":"z1","command":"true","retries":"two"}]}'
expect_errno "inject: path of the wrong type" EINVAL context/inject '{"path":1}'
expect_errno "inject: path and text" EINVAL context/inject '{"path":"/etc/hostname","text":"x"}'
expect_errno "remove: bad name" EINVAL context/remove '.hidden'

# --- ENOENT: unknown worker, task, track, context entry ---
expect_errno "kill: unknown worker" ENOENT mma/workers/kill '999'
expect_errno "mutate: unknown task" ENOENT mma/dag/mutate 'hold nosuch'
expect_errno "mutate: unknown dep" ENOENT mma/dag/mutate 'add_dep e2 nosuch'
expect_errno "mutate: add_task to an unknown track" ENOENT mma/dag/mutate '{"op":"add_task","track":"nosuch","task":{"id":"n1","command":"true"}}'
expect_errno "spawn: unknown task" ENOENT mma/workers/spawn '{"command":"true","task":"nosuch"}'
expect_errno "spawn: unknown track" ENOENT mma/workers/spawn '{"command":"true","track":"nosuch"}'
expect_errno "create: a dep on an unknown task" ENOENT mma/tracks/create '{"id":"zz","tasks":[{"id":"z1","command":"true","deps":["nosuch"]}]}'
expect_errno "remove: unknown context entry" ENOENT context/remove 'nosuch'
expect_errno "inject: no such file" ENOENT context/inject "$T/does-not-exist.c"

# --- EEXIST: id already taken ---
expect_errno "create: the track exists" EEXIST mma/tracks/create '{"id":"er","tasks":[]}'
expect_errno "create: a task id taken in another track" EEXIST mma/tracks/create '{"id":"zz","tasks":[{"id":"e1","command":"true"}]}'
expect_errno "create: a task id twice in the plan" EEXIST mma/tracks/create '{"id":"zz","tasks":[{"id":"z1","command":"true"},{"id":"z1","command":"true"}]}'
expect_errno "add_task: the id exists" EEXIST mma/dag/mutate '{"op":"add_task","track":"er","task":{"id":"e2","command":"true"}}'

# --- EBUSY: not allowed in the current state ---
expect_errno "kill: a worker that has ended" EBUSY mma/workers/kill "$ended"
expect_errno "workers/ID/kill: a worker that has ended" EBUSY "mma/workers/$ended/kill" 'KILL'
expect_errno "stdin: a worker that has ended" EBUSY "mma/workers/$ended/stdin" 'hello'
expect_errno "remove_task: a running task" EBUSY mma/dag/mutate 'remove_task e1'
check "the message says it is running" grep -q running <<<"$(last_error_message)"
expect_errno "remove_task: a task others depend on" EBUSY mma/dag/mutate 'remove_task b1'
check "the message names the dependent" grep -q b2 <<<"$(last_error_message)"
expect_errno "retry: a task that has not failed" EBUSY mma/dag/mutate 'retry b1'
expect_errno "release: a task that is not held" EBUSY mma/dag/mutate 'release b1'
expect_errno "skip: a running task" EBUSY mma/dag/mutate 'skip e1'
expect_errno "spawn: a task that is running" EBUSY mma/workers/spawn '{"command":"true","task":"e1"}'

# --- ELOOP: a DAG change that would make a cycle ---
expect_errno "add_dep: a cycle" ELOOP mma/dag/mutate 'add_dep b1 b2'
check "the message names the cycle as dag.dot draws it: b2 -> b1 -> b2" grep -qF 'b2 -> b1 -> b2' <<<"$(last_error_message)"
expect_errno "add_dep: a task on itself" ELOOP mma/dag/mutate 'add_dep b1 b1'
expect_errno "create: a plan with a cycle" ELOOP mma/tracks/create '{"id":"zz","tasks":[{"id":"z1","command":"true","deps":["z2"]},{"id":"z2","command":"true","deps":["z1"]}]}'

# --- EFBIG: a write over the limit (1 MiB - 4 KiB through the mount) ---
# One write(2) each, from a buffer at any alignment: the kernel cuts it in
# pieces and the daemon must refuse the first piece, not run it.
head -c 1048576 /dev/zero | tr '\0' a >"$T/big"
if dd if="$T/big" of=mma/dag/mutate bs=1M count=1 status=none 2>/dev/null; then wrote=ok; else wrote=failed; fi
check "a 1 MiB write (dd, one page-aligned write) is EFBIG" \
	eval '[ $wrote == failed ] && jqe ".error.errno == \"EFBIG\" and .error.status == 413" last_error'
for off in 1 100 4095; do
	if python3 -c 'import os, sys
buf = bytearray(int(sys.argv[2]) + 1044481)
view = memoryview(buf)[int(sys.argv[2]):]
view[:] = b"a" * len(view)
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, view)' mma/dag/mutate "$off" 2>/dev/null; then wrote=ok; else wrote=failed; fi
	check "a write one byte over the limit at buffer offset $off is EFBIG" \
		eval '[ $wrote == failed ] && jqe ".error.errno == \"EFBIG\"" last_error'
done
head -c 1044480 /dev/zero | tr '\0' ' ' >"$T/limit"
printf 'hold e9' | dd of="$T/limit" conv=notrunc status=none
if dd if="$T/limit" of=mma/dag/mutate bs=1044480 count=1 status=none 2>/dev/null; then wrote=ok; else wrote=failed; fi
check "a write of exactly the limit is taken whole (ENOENT for its one op)" \
	eval '[ $wrote == failed ] && jqe ".error.errno == \"ENOENT\"" last_error'

# --- EACCES: writing a read-only file ---
expect_errno "write to README" EACCES README 'hello'
expect_errno "write to state.json" EACCES state.json '{}'
expect_errno "write to mma/workers.json" EACCES mma/workers.json '{}'
expect_errno "write to pipeline/status" EACCES mma/pipeline/status 'paused'
expect_errno "write to a task's status" EACCES mma/tasks/e1/status 'done'
expect_errno "write to a worker's log" EACCES "mma/workers/$running/log" 'forged'

# --- bytes that are not UTF-8, and NUL (README, "Errors") ---
expect_errno "a command that is not UTF-8" EINVAL mma/workers/spawn $'echo \xff\xfe'
expect_errno "a JSON command that is not UTF-8" EINVAL mma/workers/spawn $'{"command":"echo \xc3("}'
expect_errno "an overlong encoding" EINVAL mma/workers/spawn $'echo \xc0\xaf'
expect_errno "a UTF-16 surrogate, encoded" EINVAL mma/workers/spawn $'echo \xed\xa0\x80'
expect_errno "a title that is not UTF-8" EINVAL mma/tracks/create $'{"id":"u8","title":"\xff","tasks":[]}'
expect_errno "\\u0000 in a JSON command" EINVAL mma/workers/spawn '{"command":"true\u0000junk"}'
expect_errno "\\u0000 in a JSON mutation" EINVAL mma/dag/mutate '{"op":"hold","task":"e1\u0000"}'
expect_errno "a lone surrogate escape" EINVAL mma/workers/spawn '{"command":"echo \udc00"}'
check "the error object of a bad byte is UTF-8 JSON" \
	sh -c 'iconv -f UTF-8 -t UTF-8 "$1" >/dev/null && jq -e .error "$1" >/dev/null' _ last_error

# --- nothing changed ---
after=$(views)
expect_eq "every view is identical after the refused writes" "$after" "$before"
check "no event was published by refused writes" jqe --argjson s "$seq_before" '.seq == $s' state.json
expect_eq "the paused pipeline is still paused" "$(cat mma/pipeline/status)" paused
check "no context entry was added or removed" jqe '[.entries[].name] == ["ok.c"]' context/state.json
check "the daemon is still up" kill -0 "$DAEMON_PID"
check "the mount still answers" status_is mma/tasks/e1/status running

# --- a command written in pieces is applied once, whole (README, "Errors") ---
# cat writes 128 KiB at a time, bash's printf 4 KiB: a plan of 3,000 tasks
# (about 170 KiB) goes in two pieces, a long line in several
awk 'BEGIN { printf "{\"id\":\"pieces\",\"tasks\":["
	for (i = 0; i < 3000; i++) printf "%s{\"id\":\"pc%d\",\"command\":\"true\",\"title\":\"a task with a title long enough\"}", i ? "," : "", i
	print "]}" }' >"$T/pieces.json"
check "the plan is over 128 KiB" test "$(stat -c %s "$T/pieces.json")" -gt 131072
check "cat of it to tracks/create succeeds" sh -c 'cat "$1" >mma/tracks/create' _ "$T/pieces.json"
check "and creates the track with all 3,000 tasks" jqe '.tasks | length == 3000' mma/tracks/pieces/info.json
line=$(printf '{"op":"release","task":"pc1","note":"%s"}' "$(head -c 10000 /dev/zero | tr '\0' x)")
if printf '%s' "$line" >mma/dag/mutate 2>/dev/null; then wrote=ok; else wrote=failed; fi
check "a 10 KB line from bash's printf (4 KiB pieces) is one command (EINVAL for its unknown field)" \
	eval '[ $wrote == failed ] && jqe ".error.errno == \"EINVAL\" and (.error.message | test(\"note\"))" last_error'
head -c 8192 /dev/zero | tr '\0' ' ' >"$T/page2"
printf 'hold nosuch' | dd of="$T/page2" conv=notrunc status=none
if dd if="$T/page2" of=mma/dag/mutate bs=8192 count=1 status=none 2>"$T/dd.err"; then wrote=ok; else wrote=failed; fi
check "a command of exactly 8 KiB is applied at close, and close reports its error" \
	eval '[ $wrote == failed ] && grep -qi "closing" "$T/dd.err" && jqe ".error.errno == \"ENOENT\"" last_error'


# --- unmounting right after a large change works the first time ---
sed 's/"pieces"/"pieces2"/; s/"pc/"pd/g' "$T/pieces.json" >"$T/pieces2.json"
cd / || exit 1
check "a second 3,000-task plan is created" sh -c 'cat "$1" >"$2/mma/tracks/create"' _ "$T/pieces2.json" "$M"
check "fusermount3 -u at once after it succeeds (nothing of orchfs holds the mount)" fusermount3 -u "$M"
wait_for "and the daemon exits" 5 eval '! kill -0 $DAEMON_PID 2>/dev/null'

finish
