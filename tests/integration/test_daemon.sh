#!/usr/bin/env bash
# test_daemon: a detached daemon can be found and read (README, "The daemon"):
# STATE_DIR/orchfs.log has its start, mount, listeners, token path, each
# worker's start and end, every refused write and API refusal (never the
# token), its stop; orchfs.pid and daemon.json name it while it runs and go
# with a clean stop; a second daemon on its state directory or its mount is
# refused with the first's pid and mount, and the first is unharmed. With -f
# the log is stderr and there is no orchfs.log.
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || _skip_or_fail "curl is missing"
[ -e /dev/fuse ] || _skip_or_fail "/dev/fuse is missing: cannot mount orchfs"

TS='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'
VERSION=$("$ORCHFS" -V | awk '{print $2}')

# --- detached ---
T=$(mktemp -d /tmp/orchfs-test.XXXXXX)
_TMPDIRS+=("$T")
M=$T/mnt
S=$T/state
mkdir -p "$M" "$S" "$T/work"
chmod 700 "$S"
hp=$(free_port)
wp=$(free_port)
while [ "$wp" == "$hp" ]; do wp=$(free_port); done
_MOUNTS+=("$M")
(cd "$T/work" && "$ORCHFS" --state-dir "$S" --http "127.0.0.1:$hp" --ws "127.0.0.1:$wp" \
	--kill-grace 1 "$M") >"$T/start.out" 2>&1 </dev/null
expect_eq "the starting process exits 0 once detached" "$?" 0
export M S T
wait_for "daemon.json appears" 5 test -s "$S/daemon.json"
PID=$(cat "$S/orchfs.pid" 2>/dev/null)
_DAEMONS+=("$PID")
echo "$PID" >>"$_WATCHDOG_PIDS"
check "orchfs.pid is PID and a newline" grep -qxE '[0-9]+' "$S/orchfs.pid"
expect_eq "the pid is an orchfs" "$(cat "/proc/$PID/comm" 2>/dev/null)" orchfs
check "the pid is the process serving the mount (it holds /dev/fuse)" \
	eval "ls -l /proc/$PID/fd 2>/dev/null | grep -q /dev/fuse"
check "nothing was printed after detaching" test ! -s "$T/start.out"
TOKEN=$(cat "$S/token")
D=$(cat "$S/daemon.json")
check "daemon.json is one line of JSON" jqe . <<<"$D"
check "daemon.json: pid, version, mount, state_dir" jqe --argjson pid "$PID" --arg v "$VERSION" \
	--arg m "$M" --arg s "$S" \
	'.pid == $pid and .version == $v and .mount == $m and .state_dir == $s' <<<"$D"
check "daemon.json: http, ws, token_file, log" jqe --arg h "http://127.0.0.1:$hp" \
	--arg w "ws://127.0.0.1:$wp" --arg t "$S/token" --arg l "$S/orchfs.log" \
	'.http == $h and .ws == $w and .token_file == $t and .log == $l' <<<"$D"
now=$(date +%s)
check "daemon.json: started_at and started_unix" jqe --argjson now "$now" \
	'(.started_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"))
	 and (.started_unix | type == "number") and .started_unix <= $now and .started_unix > $now - 60
	 and (.started_at | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601) == .started_unix' <<<"$D"
check "daemon.json has no token" eval '! grep -qF "$TOKEN" "$S/daemon.json"'
expect_eq "daemon.json is 0600" "$(stat -c %a "$S/daemon.json")" 600
expect_eq "orchfs.log is 0600" "$(stat -c %a "$S/orchfs.log")" 600
check "no temporary file is left" eval '! ls "$S" | grep -q "\.tmp$"'

# a task's worker, a hand spawn that fails, a refused write, API refusals
ctl_write "$M/mma/tracks/create" '{"id":"t1","tasks":[{"id":"build","command":"true"}]}'
wait_for "task build done" 5 status_is "$M/mma/tasks/build/status" done
bad=$(spawn 'exit 3')
wait_for "worker $bad failed" 5 status_is "$M/mma/workers/$bad/status" failed
expect_errno "a refused write" EINVAL "$M/mma/workers/spawn" '{bad'
# the daemon's own read fails (offset 0 of its memory is unmapped): EIO, an
# internal failure
expect_errno "a write that fails inside" EIO "$M/context/inject" /proc/self/mem
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${TOKEN}00" \
	"http://127.0.0.1:$hp/api/state.json")
expect_eq "HTTP with a wrong token: 401" "$code" 401
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp/api/state.json?token=${TOKEN}11")
expect_eq "HTTP with a wrong token in the URL: 401" "$code" 401
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
	-H 'Host: elsewhere.example' "http://127.0.0.1:$hp/api/state.json")
expect_eq "HTTP with another Host: 403" "$code" 403
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Connection: Upgrade' \
	-H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
	-H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Protocol: orchfs.v1' \
	-H "Authorization: Bearer ${TOKEN}22" "http://127.0.0.1:$wp/")
expect_eq "a WebSocket upgrade with a wrong token: 401" "$code" 401
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
	-X POST --data 'nope' "http://127.0.0.1:$hp/api/mma/dag/mutate")
expect_eq "a refused write over HTTP" "$code" 400

L=$S/orchfs.log
has() { grep -qE "$TS $1" "$L"; }
wait_for "the worker lines are written" 5 has 'INFO worker [0-9]+ ended: failed, exit code 3'
check "every line is TIME LEVEL message" eval "! grep -vE '$TS (ERROR|WARN|INFO|DEBUG) ' '$L'"
check "log: start (version, pid, state dir)" has "INFO orchfs $VERSION starting \\(pid $PID, state dir $S\\)"
check "log: the mount" has "INFO mounted on $M\$"
check "log: the HTTP listener" has "INFO http: http://127.0.0.1:$hp\$"
check "log: the WebSocket listener" has "INFO ws: ws://127.0.0.1:$wp\$"
check "log: the token's path" has "INFO token file: $S/token\$"
check "log: a task's worker started (id, task, track, pid)" \
	has "INFO worker 1 started \\(task build, track t1, pid [1-9][0-9]*, runner local\\)"
check "log: its end (status, exit code, runtime)" \
	has "INFO worker 1 ended: exited, exit code 0, after [0-9]+\\.[0-9]{3} s \\(task build\\)"
check "log: a hand spawn's start" has "INFO worker $bad started \\(task -, track -, pid [1-9]"
check "log: its failure" has "INFO worker $bad ended: failed, exit code 3, after "
check "log: the refused write on the mount" \
	has "WARN refused write to mma/workers/spawn: EINVAL \\(400\\) "
check "log: an EIO at ERROR" \
	has "ERROR refused write to context/inject: EIO \\(500\\) cannot read /proc/self/mem"
check "log: the refused write over HTTP" has "WARN refused write to mma/dag/mutate: EINVAL \\(400\\) "
expect_eq "log: both HTTP 401s, with the peer" \
	"$(grep -cE "$TS WARN http: refused 401 to 127\\.0\\.0\\.1: " "$L")" 2
check "log: the 403, with why" \
	has "WARN http: refused 403 to 127\\.0\\.0\\.1: Host \"elsewhere\\.example\" is not"
expect_eq "log: the WebSocket 401, once" \
	"$(grep -cE "$TS WARN ws: refused 401 to 127\\.0\\.0\\.1: " "$L")" 1
check "log: never the token" eval '! grep -qF "$TOKEN" "$L"'
check "log: no debug line at the default level" eval "! grep -qE '$TS DEBUG ' '$L'"

# a second daemon on the same state directory: refused, naming the first
mkdir -p "$T/mnt2"
out=$("$ORCHFS" --state-dir "$S" --http off --ws off "$T/mnt2" 2>&1)
rc=$?
expect_eq "a second daemon on the state dir exits 1" "$rc" 1
check "it names the first's pid and mount" grep -qF \
	"orchfs: $S is in use by orchfs pid $PID on $M; stop it with: fusermount3 -u $M" <<<"$out"
check "it mounted nothing" eval '! mountpoint -q "$T/mnt2"'
expect_eq "daemon.json is unchanged" "$(cat "$S/daemon.json")" "$D"
expect_eq "orchfs.pid is unchanged" "$(cat "$S/orchfs.pid")" "$PID"
check "the first is unharmed" status_is "$M/mma/pipeline/status" running

# a second daemon on the first's mount, with a state directory of its own
mkdir -p "$T/state2"
chmod 700 "$T/state2"
out=$("$ORCHFS" --state-dir "$T/state2" --http off --ws off "$M" 2>&1)
rc=$?
expect_eq "a second daemon on the mount exits 1" "$rc" 1
check "it names the pid that serves it" grep -qF \
	"orchfs: $M is served by orchfs pid $PID (state dir $S); stop it with: fusermount3 -u $M" <<<"$out"
expect_eq "one orchfs mount there still" \
	"$(awk -v m="$M" '$5 == m' /proc/self/mountinfo | grep -c ' fuse.orchfs ')" 1
check "the first is still unharmed" status_is "$M/mma/pipeline/status" running
check "the second left no files" eval '! ls "$T/state2" | grep -qE "^(daemon.json|orchfs.pid|orchfs.log)$"'
# ... and with one that is not there yet: it is not made (nor a store in it)
out=$("$ORCHFS" --state-dir "$T/state3/sub" --http off --ws off "$M" 2>&1)
expect_eq "a second daemon on the mount, its state dir new: exits 1" "$?" 1
check "... naming the pid that serves it" grep -qF "orchfs: $M is served by orchfs pid $PID" <<<"$out"
check "... and made no state directory" test ! -e "$T/state3"

# a clean stop takes the files with it
fusermount3 -u "$M"
wait_for "the daemon exits" 10 eval "! kill -0 $PID"
check "daemon.json is gone" test ! -e "$S/daemon.json"
check "orchfs.pid is gone" test ! -e "$S/orchfs.pid"
check "log: stopping" has "INFO stopping\$"
check "log: the stop is its last line" eval "tail -n1 '$L' | grep -qE '$TS INFO stopped \\(exit status 0\\)\$'"
# nothing but log lines, to the end (a sanitizer's report would be raw text)
check "every line, to the end, is TIME LEVEL message" eval "! grep -vE '$TS (ERROR|WARN|INFO|DEBUG) ' '$L'"

# --- -f: stderr is the log ---
orchfs_start
check "-f: the start is on stderr" grep -qE "$TS INFO orchfs $VERSION starting \\(pid $DAEMON_PID, " "$DAEMON_LOG"
check "-f: the mount is on stderr" grep -qE "$TS INFO mounted on $M\$" "$DAEMON_LOG"
check "-f: the listeners are off" grep -qE "$TS INFO http: off\$" "$DAEMON_LOG"
wait_for "-f: daemon.json appears" 5 test -s "$S/daemon.json"
check "-f: daemon.json: this pid, no listeners, no token, no log file" \
	jqe --argjson pid "$DAEMON_PID" \
	'.pid == $pid and .http == null and .ws == null and .token_file == null and .log == null' \
	"$S/daemon.json"
check "-f: no orchfs.log" test ! -e "$S/orchfs.log"
fusermount3 -u "$M"
daemon_wait_exit "$DAEMON_PID" 10
expect_eq "-f: exit 0" "$DAEMON_RC" 0
check "-f: daemon.json is gone" test ! -e "$S/daemon.json"
check "-f: the stop is on stderr" grep -qE "$TS INFO stopped \\(exit status 0\\)\$" "$DAEMON_LOG"

# --log-level warn: what is refused, without the start and the workers
: >"$DAEMON_LOG"
orchfs_restart --log-level warn
w=$(spawn true)
wait_for "worker $w exited" 5 status_is "$M/mma/workers/$w/status" exited
expect_errno "a refused write at warn" EINVAL "$M/mma/workers/spawn" '{bad'
check "warn: the refusal is logged" grep -qE "$TS WARN refused write to mma/workers/spawn: " "$DAEMON_LOG"
check "warn: no info line" eval "! grep -qE '$TS INFO ' '$DAEMON_LOG'"

# a crash leaves the files, naming a pid that is gone; the next start
# writes its own
old=$DAEMON_PID
kill -KILL "$old"
wait "$old" 2>/dev/null
expect_eq "after kill -9, daemon.json still names the dead daemon" \
	"$(jq -r .pid "$S/daemon.json" 2>/dev/null)" "$old"
orchfs_restart
wait_for "the next daemon's daemon.json" 5 \
	eval '[ "$(jq -r .pid "$S/daemon.json" 2>/dev/null)" == "$DAEMON_PID" ]'
expect_eq "and its orchfs.pid" "$(cat "$S/orchfs.pid")" "$DAEMON_PID"

out=$("$ORCHFS" --log-level loud "$T/mnt2" 2>&1)
rc=$?
expect_eq "--log-level loud: exit 2" "$rc" 2
check "and says what it takes" grep -qF "error, warn, info or debug" <<<"$out"

check "--help lists --log-level" eval '"$ORCHFS" --help | grep -q -- "--log-level LEVEL"'

# -f with a stderr nobody reads (a pipe whose reader sleeps): the log drops
# what has no room, and the daemon goes on; the next line that gets through
# says how many were dropped
mkfifo "$T/stderr.pipe"
exec 7<>"$T/stderr.pipe"   # a reader that never reads: the pipe fills
mkdir -p "$T/mnt3"
"$ORCHFS" -f --state-dir "$T/state3" --http off --ws off --max-workers 8 "$T/mnt3" 2>"$T/stderr.pipe" &
slow_pid=$!
echo "$slow_pid" >>"$_WATCHDOG_PIDS"
_MOUNTS+=("$T/mnt3")   # unmounted at the end whatever happens
_DAEMONS+=("$slow_pid")
poll 10 test -r "$T/mnt3/mma/pipeline/status"
plan=$(jq -cn '{id: "many", tasks: [range(1500) | {id: "m\(.)", command: "true"}]}')
check "a plan of 1500 tasks with a stalled stderr" write_once "$T/mnt3/mma/tracks/create" "$plan"
wait_for "its 1500 tasks all end: logging never stalls the scheduler" 120 \
	grep -qx done "$T/mnt3/mma/tracks/many/status"
timeout 2 cat <&7 >"$T/stderr.out"   # the reader wakes: room again
echo 'sleep 0' >"$T/mnt3/mma/workers/spawn"   # a line after the room came back
sleep 0.5
timeout 1 cat <&7 >>"$T/stderr.out"
check "the next line through tells how many were dropped" \
	grep -qE "$TS WARN [0-9]+ lines dropped: the log's reader was too slow" "$T/stderr.out"
fusermount3 -u "$T/mnt3"
wait "$slow_pid"
exec 7>&-

finish
