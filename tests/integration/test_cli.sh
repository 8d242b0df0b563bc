#!/usr/bin/env bash
# test_cli: the orchfs command (README, "The orchfs command"; orchfs(1)) as a
# user types it, on the mount and over HTTP with the same checks: ps, spawn
# (its arguments quoted for sh), logs (by worker and by task, -f to the
# worker's end), kill, pause/freeze/resume, run --wait (its exit status is
# the track's), tracks, tasks, hold/release/retry, events (--channels,
# --json, -f --since); each failure's message on stderr and its exit status
# (errno's, as documented); no daemon; no token; --json is JSON; top in a
# real terminal (tmux) redrawn from the event stream and quit with q; the
# bash completion; a log's ?offset= over HTTP.
. "$(dirname "$0")/lib.sh"
SRC_DIR=$(cd "$(dirname "$0")/../.." && pwd)

command -v curl >/dev/null || _skip_or_fail "curl is missing"
command -v tmux >/dev/null || _skip_or_fail "tmux is missing"
orchfs_start_api --max-workers 4
cd "$T" || exit 1

# run_cli: the command with this round's way to the daemon; sets OUT, ERR, RC
run_cli() {
	OUT=$("$ORCHFS" "${VIA[@]}" "$@" 2>"$T/stderr") && RC=0 || RC=$?
	ERR=$(cat "$T/stderr")
}

round=0
for via in mount http; do
	round=$((round + 1))
	if [ "$via" = mount ]; then VIA=(--mount "$M"); else VIA=(--url "$HTTP" --token-file "$S/token"); fi
	log "# --- through the $via ---"

	# spawn prints the id; its arguments reach sh as they were typed
	run_cli spawn -- printf '%s|' "it's" 'two words' '$HOME'
	expect_eq "$via: spawn exits 0" "$RC" 0
	check "$via: spawn prints the worker's id" grep -qx '[0-9][0-9]*' <<<"$OUT"
	quoted=$OUT
	wait_for "$via: the quoted worker ends" 5 grep -qx exited "$M/mma/workers/$quoted/status"
	run_cli logs "$quoted"
	expect_eq "$via: logs ID prints the log, each argument whole" "$OUT" "it's|two words|\$HOME|"

	run_cli spawn -- sleep 30
	long=$OUT
	run_cli ps
	check "$via: ps lists the running worker" grep -q "^$long  *-  *-  *running" <<<"$OUT"
	check "$via: ps leaves out ended workers" eval "! grep -q '^$quoted ' <<<\"\$OUT\""
	run_cli ps -a
	check "$via: ps -a lists the ended one with its exit" grep -q "^$quoted .* exited .* 0$" <<<"$OUT"
	run_cli ps --json
	check "$via: ps --json is the running workers' objects" \
		jq -e --argjson id "$long" 'type == "array" and length == 1 and .[0].id == $id' <<<"$OUT"

	run_cli kill "$long" BOGUS
	expect_eq "$via: kill with an unknown signal exits 3 (EINVAL)" "$RC" 3
	check "$via: ... naming it" grep -q BOGUS <<<"$ERR"
	run_cli kill "$long" --grace soon
	expect_eq "$via: a --grace that is not seconds is a usage error (2)" "$RC" 2
	run_cli kill "$long" KILL --grace 1
	expect_eq "$via: kill exits 0" "$RC" 0
	wait_for "$via: the killed worker ends" 5 grep -qx killed "$M/mma/workers/$long/status"
	run_cli kill 99999
	expect_eq "$via: kill of an unknown worker exits 4 (ENOENT)" "$RC" 4
	expect_eq "$via: ... and says why on stderr" "$ERR" "orchfs: no worker 99999"
	run_cli kill "$long"
	expect_eq "$via: kill of an ended worker exits 6 (EBUSY)" "$RC" 6

	# logs -f follows to the worker's end, every line once
	run_cli spawn -- sh -c 'for i in 1 2 3; do echo line $i; sleep 0.3; done'
	follow=$OUT
	run_cli logs -f "$follow"
	expect_eq "$via: logs -f ends with the worker, every line once" "$OUT" $'line 1\nline 2\nline 3'

	# the pipeline
	run_cli pause
	expect_eq "$via: pause prints the new status" "$OUT" paused
	expect_eq "$via: ... which the mount shows" "$(cat "$M/mma/pipeline/status")" paused
	run_cli freeze
	expect_eq "$via: freeze" "$OUT" frozen
	run_cli resume
	expect_eq "$via: resume" "$OUT" running

	# run --wait: the track's end is the exit status
	cat >"$T/ok.json" <<EOF
{"id": "ok$round", "title": "fine", "budget_usd": 2, "tasks": [
  {"id": "ok$round-a", "command": "echo a"},
  {"id": "ok$round-b", "command": "echo b", "deps": ["ok$round-a"]}]}
EOF
	run_cli run "$T/ok.json" --wait
	expect_eq "$via: run --wait of a good plan exits 0" "$RC" 0
	expect_eq "$via: ... prints the track's id" "$OUT" "ok$round"
	check "$via: ... with a progress line that ends at done" grep -q "ok$round: done, 2/2 done" <<<"$ERR"
	cat >"$T/bad.json" <<EOF
{"id": "bad$round", "title": "fails", "tasks": [{"id": "bad$round-a", "command": "exit 3"},
  {"id": "bad$round-b", "command": "true", "deps": ["bad$round-a"]}]}
EOF
	run_cli run "$T/bad.json" --wait
	expect_eq "$via: run --wait of a failing plan exits 1" "$RC" 1
	check "$via: ... and says failed" grep -q "bad$round: failed" <<<"$ERR"
	run_cli run "$T/ok.json"
	expect_eq "$via: the same plan again exits 5 (EEXIST)" "$RC" 5
	check "$via: ... naming the track" grep -q "ok$round" <<<"$ERR"
	printf '{"id": "x",' >"$T/broken.json"
	run_cli run "$T/broken.json"
	expect_eq "$via: a plan that is not JSON exits 3 (EINVAL)" "$RC" 3
	: >"$T/empty.json"
	run_cli run "$T/empty.json"
	expect_eq "$via: an empty plan exits 3 (EINVAL)" "$RC" 3
	# 4 KiB exactly: through the mount, applied at the first read, not at write(2)
	{ printf '{"id": "pad%s", "title": "' "$round"; head -c 4096 /dev/zero | tr '\0' x; } | head -c 4095 >"$T/4k.json"
	printf '"' >>"$T/4k.json"
	expect_eq "$via: (the plan is 4096 bytes)" "$(wc -c <"$T/4k.json")" 4096
	run_cli run "$T/4k.json"
	expect_eq "$via: a bad plan of 4096 bytes exits 3 (EINVAL) too" "$RC" 3
	# --wait ends when a kill leaves the rest blocked, and when the budget stops the track
	cat >"$T/killed.json" <<PLAN
{"id": "kd$round", "title": "killed", "tasks": [{"id": "kd$round-a", "command": "sleep 30"},
  {"id": "kd$round-b", "command": "true", "deps": ["kd$round-a"]}]}
PLAN
	( sleep 1; "$ORCHFS" "${VIA[@]}" cancel "kd$round-a" ) &
	canceller=$!
	run_cli run "$T/killed.json" --wait
	wait "$canceller"
	expect_eq "$via: run --wait of a track whose task was cancelled exits 1" "$RC" 1
	cat >"$T/budget.json" <<PLAN
{"id": "bu$round", "title": "budget", "budget_usd": 0.5, "tasks": [
  {"id": "bu$round-a", "command": "echo 'model=m1 in=1000000 out=0' > \"\$ORCHFS_MOUNT/mma/workers/\$ORCHFS_WORKER_ID/usage\""},
  {"id": "bu$round-b", "command": "true", "deps": ["bu$round-a"]}]}
PLAN
	run_cli run "$T/budget.json" --wait
	expect_eq "$via: run --wait of a track its budget stops exits 1" "$RC" 1
	check "$via: ... saying over_budget" grep -q "bu$round: over_budget" <<<"$ERR"
	run_cli tasks "bu$round"
	check "$via: tasks says why a task waits (budget)" grep -q "^bu$round-b .* ready .* budget$" <<<"$OUT"

	run_cli tracks
	check "$via: tracks shows progress and cost against budget" \
		grep -q "^ok$round  *done  *2/2 100%  *0  *0  *\\\$0.0000  *\\\$2.0000  *fine" <<<"$OUT"
	run_cli tracks --json
	check "$via: tracks --json" jq -e --arg id "ok$round" 'any(.[]; .id == $id)' <<<"$OUT"
	run_cli tasks "bad$round"
	check "$via: tasks TRACK lists its tasks with deps" \
		grep -q "^bad$round-b  *bad$round  *blocked .* bad$round-a" <<<"$OUT"
	run_cli tasks nosuch
	expect_eq "$via: tasks of an unknown track exits 4" "$RC" 4
	run_cli logs "ok$round-b"
	expect_eq "$via: logs TASK is its latest worker's log" "$OUT" b

	# hold, release, retry: one mutate batch each
	run_cli hold "bad$round-b"
	expect_eq "$via: hold" "$(cat "$M/mma/tasks/bad$round-b/status")" held
	run_cli release "bad$round-b"
	expect_eq "$via: release" "$(cat "$M/mma/tasks/bad$round-b/status")" blocked
	run_cli hold nosuch
	expect_eq "$via: hold of an unknown task exits 4" "$RC" 4
	run_cli retry "ok$round-a"
	expect_eq "$via: retry of a done task exits 6 (EBUSY)" "$RC" 6
	check "$via: ... with the daemon's message" grep -q "ok$round-a" <<<"$ERR"

	# events: what is kept, up to now
	run_cli events --channels pipeline
	check "$via: events --channels prints the pipeline's changes, and ends" \
		grep -q 'pipeline pipeline.status {"from":"frozen","to":"running"}' <<<"$OUT"
	check "$via: ... and no other channel" eval "! grep -qv ' pipeline ' <<<\"\$OUT\""
	run_cli events --json --channels dag
	check "$via: events --json is the events' JSON lines" jq -se 'length > 0 and all(.[]; .channel == "dag" and (.seq | type) == "number")' <<<"$OUT"
	seq=$(jq '.events.seq' "$M/system/telemetry.json")
	timeout -k 1 5 "$ORCHFS" "${VIA[@]}" events -f --json --since "$seq" --channels workers >"$T/follow.out" &
	fpid=$!
	sleep 0.5
	"$ORCHFS" "${VIA[@]}" spawn -- true >/dev/null
	wait_for "$via: events -f --since prints what comes" 5 grep -q worker.spawned "$T/follow.out"
	kill "$fpid" 2>/dev/null
	wait "$fpid" 2>/dev/null
	run_cli events --since abc
	expect_eq "$via: a bad --since is a usage error (2)" "$RC" 2
	# a follower whose reader went away ends (SIGPIPE), as tail -f | head does
	( sleep 1; "$ORCHFS" "${VIA[@]}" spawn -- true >/dev/null; "$ORCHFS" "${VIA[@]}" spawn -- true >/dev/null ) &
	spawner=$!
	OUT=$(timeout -k 1 10 "$ORCHFS" "${VIA[@]}" events -f --channels workers | head -1)
	wait "$spawner"
	check "$via: events -f | head -1 ends with its line" grep -q worker.spawned <<<"$OUT"
done

log "# --- finding the daemon ---"
OUT=$("$ORCHFS" --mount "$T/nowhere" ps 2>&1) && RC=0 || RC=$?
expect_eq "a mount point that is not there: exit 13" "$RC" 13
mkdir -p "$T/empty"
OUT=$("$ORCHFS" --mount "$T/empty" ps 2>&1) && RC=0 || RC=$?
expect_eq "no daemon on the mount: exit 13" "$RC" 13
check "... saying how to start one" grep -q "no orchfs on $T/empty: start one with: orchfs $T/empty" <<<"$OUT"
OUT=$(ORCHFS_MOUNT= ORCHFS_URL=$HTTP ORCHFS_TOKEN= HOME=$T/empty "$ORCHFS" ps 2>&1) && RC=0 || RC=$?
expect_eq "no token: exit 8 (EACCES)" "$RC" 8
check "... saying where a token comes from" grep -q 'token-file' <<<"$OUT"
OUT=$(ORCHFS_MOUNT= ORCHFS_URL=$HTTP ORCHFS_TOKEN=$TOKEN "$ORCHFS" ps -a 2>&1) && RC=0 || RC=$?
check "\$ORCHFS_URL and \$ORCHFS_TOKEN reach the API" grep -q "^$quoted " <<<"$OUT"
OUT=$(ORCHFS_MOUNT=$M "$ORCHFS" ps -a 2>&1)
check "\$ORCHFS_MOUNT names the mount" grep -q "^$quoted " <<<"$OUT"
OUT=$("$ORCHFS" --url https://127.0.0.1:1 ps 2>&1) && RC=0 || RC=$?
check "https is refused with a way out" grep -q 'plain HTTP only' <<<"$OUT"
OUT=$("$ORCHFS" --mount "$M" ps extra 2>&1) && RC=0 || RC=$?
expect_eq "a stray argument is a usage error (2)" "$RC" 2

log "# --- status ---"
OUT=$("$ORCHFS" --mount "$M" status 2>&1) && RC=0 || RC=$?
expect_eq "status exits 0" "$RC" 0
check "status names the daemon's pid" grep -q "^orchfs .*, pid $(jq .pid "$S/daemon.json"), up " <<<"$OUT"
check "... the mount, found from it" grep -qx "mount  *$M" <<<"$OUT"
check "... the state dir" grep -qx "state dir  *$S" <<<"$OUT"
check "... the listeners" grep -qx "http  *$HTTP" <<<"$OUT"
check "... the token's path" grep -qx "token  *$S/token" <<<"$OUT"
OUT=$("$ORCHFS" --state-dir "$S" status --json)
check "status --json, by state dir, has the uptime" jq -e '.uptime_s >= 0 and .mount == env.M' <<<"$OUT"
OUT=$("$ORCHFS" --state-dir "$T/empty" status 2>&1) && RC=0 || RC=$?
expect_eq "status of a state dir no daemon runs on: exit 13" "$RC" 13
check "... saying so" grep -q "no orchfs runs on $T/empty" <<<"$OUT"

OUT=$("$ORCHFS" --url "$HTTP" --token-file "$S/token" status 2>&1) && RC=0 || RC=$?
check "status --url asks the API" grep -q "^orchfs at $HTTP, up " <<<"$OUT"
check "... and tells the pipeline" grep -qx "pipeline  *running" <<<"$OUT"

log "# --- mistakes ---"
OUT=$("$ORCHFS" --mount "$M" psx 2>&1) && RC=0 || RC=$?
expect_eq "a mistyped command: exit 2" "$RC" 2
check "... naming it" grep -q 'unknown command "psx"' <<<"$OUT"
OUT=$("$ORCHFS" --mount "$M" ps -x 2>&1) && RC=0 || RC=$?
expect_eq "an unknown option: exit 2" "$RC" 2
check "... in the command's words" grep -q '^orchfs: unknown option -x' <<<"$OUT"
OUT=$("$ORCHFS" --url 127.0.0.1:1 ps 2>&1) && RC=0 || RC=$?
expect_eq "a URL without its scheme: exit 2" "$RC" 2
OUT=$("$ORCHFS" --url "$HTTP" --token-file "$T/no-such-token" ps 2>&1) && RC=0 || RC=$?
expect_eq "a token file that is not there: exit 8 (EACCES)" "$RC" 8
OUT=$("$ORCHFS" --mount "$M" events --channels bogus 2>&1) && RC=0 || RC=$?
expect_eq "an unknown channel: exit 2" "$RC" 2
OUT=$("$ORCHFS" --mount "$M" top --json 2>&1) && RC=0 || RC=$?
expect_eq "top --json: exit 2, top is for a terminal" "$RC" 2
cat >"$T/j.json" <<PLAN
{"id": "js", "title": "json", "tasks": [{"id": "js-a", "command": "true"}]}
PLAN
OUT=$("$ORCHFS" --mount "$M" --json run "$T/j.json" --wait 2>/dev/null)
check "run --wait --json prints the track as it ended" jq -e '.id == "js" and .status == "done"' <<<"$OUT"

log "# --- a log's rest over HTTP ---"
code=$(curl -s -o "$T/rest" -w '%{http_code}' -H "$AUTH" "$HTTP/api/mma/workers/$quoted/log?offset=5")
expect_eq "GET log?offset=5: 200" "$code" 200
expect_eq "... the log from its 6th byte" "$(cat "$T/rest")" "two words|\$HOME|"
code=$(curl -s -o "$T/rest" -w '%{http_code}' -H "$AUTH" "$HTTP/api/mma/workers/$quoted/log?offset=999")
expect_eq "an offset past the end: 200 and nothing" "$code:$(wc -c <"$T/rest")" "200:0"
code=$(curl -s -o "$T/rest" -w '%{http_code}' -H "$AUTH" "$HTTP/api/mma/workers.json?offset=5")
expect_eq "offset on a document: 400" "$code" 400
check "... with the error object" jq -e '.error.errno == "EINVAL"' "$T/rest"

log "# --- top, in a real terminal ---"
sock=$T/tmux
tmux -S "$sock" new-session -d -x 120 -y 30 \
	"'$ORCHFS' --mount '$M' top; echo TOP-EXIT=\$?; sleep 60"
poll 5 eval "tmux -S '$sock' capture-pane -p | grep -q 'orchfs top'"
check "top draws" eval "tmux -S '$sock' capture-pane -p | grep -q 'pipeline running'"
"$ORCHFS" --mount "$M" spawn -- sleep 20 >"$T/topw"
wait_for "top shows a worker that starts" 5 \
	eval "tmux -S '$sock' capture-pane -p | grep -q '^$(cat "$T/topw") '"
check "... and the tracks with their progress" \
	eval "tmux -S '$sock' capture-pane -p | grep -q '^ok1 .*done .*\\[#*\\] 2/2'"
"$ORCHFS" --mount "$M" pause >/dev/null
wait_for "top shows the pipeline paused" 5 eval "tmux -S '$sock' capture-pane -p | grep -q 'pipeline paused'"
echo 3 >"$M/mma/pipeline/max_workers"
wait_for "top shows a new max_workers" 5 eval "tmux -S '$sock' capture-pane -p | grep -q 'workers 1/3'"
check "no line is wider than the terminal" eval "tmux -S '$sock' capture-pane -p | awk 'length > 120 { bad = 1 } END { exit bad }'"
"$ORCHFS" --mount "$M" kill "$(cat "$T/topw")" KILL
wait_for "top drops the worker when it ends" 5 \
	eval "! tmux -S '$sock' capture-pane -p | grep -q '^$(cat "$T/topw") '"
tmux -S "$sock" send-keys q
wait_for "q quits top, exit 0" 5 eval "tmux -S '$sock' capture-pane -p | grep -q 'TOP-EXIT=0'"
tmux -S "$sock" kill-server 2>/dev/null

log "# --- bash completion ---"
complete_words() {
	bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _orchfs; echo "${COMPREPLY[*]}"' \
		_ "$SRC_DIR/contrib/orchfs.bash-completion" "$@"
}
export ORCHFS_MOUNT=$M
expect_eq "the commands complete" "$(complete_words orchfs ki)" kill
check "logs completes worker ids and tasks" grep -qw "$quoted" <<<"$(complete_words orchfs logs '')"
check "... and tasks" grep -qw ok1-a <<<"$(complete_words orchfs logs '')"
expect_eq "tasks completes tracks" "$(complete_words orchfs tasks ok)" "ok1 ok2"
expect_eq "options complete per command" "$(complete_words orchfs run --w)" --wait
unset ORCHFS_MOUNT

log "# --- a daemon that died ---"
dead=$DAEMON_PID
kill -9 "$dead"
poll 5 eval "! mountpoint -q '$M' || ! ls '$M' >/dev/null 2>&1"
OUT=$("$ORCHFS" --state-dir "$S" status 2>&1) && RC=0 || RC=$?
expect_eq "status of a killed daemon (not reaped yet): exit 13" "$RC" 13
check "... saying its pid is gone" grep -q "pid $dead is gone" <<<"$OUT"
OUT=$("$ORCHFS" --mount "$M" status 2>&1) && RC=0 || RC=$?
expect_eq "status on its stale mount: exit 13" "$RC" 13
check "... saying the mount is stale" grep -q "the daemon serving $M is gone (a stale mount)" <<<"$OUT"
OUT=$("$ORCHFS" --mount "$M" ps 2>&1) && RC=0 || RC=$?
expect_eq "ps on the stale mount: exit 13" "$RC" 13

finish
