# lib.sh: sourced by every integration test. It mounts a real orchfs in a
# mktemp -d directory, gives small assertion helpers, and cleans up on exit.
#   . "$(dirname "$0")/lib.sh"
#   orchfs_start --max-workers 2        # exports M (mount), S (state dir), T (temp dir)
#   check "spawn works" test -d "$M/mma/workers/1"
#   expect_eq "status" "$(cat "$M/mma/pipeline/status")" running
#   expect_errno "bad JSON" EINVAL "$M/mma/workers/spawn" '{bad'
#   wait_for "worker 1 exits" 5 grep -qx exited "$M/mma/workers/1/status"
#   finish                               # prints "N passed, M failed"
# Environment: ORCHFS (daemon binary), CI=true (a missing FUSE fails instead
# of skipping with 77), ORCHFS_TEST_TIMEOUT (watchdog seconds, default 120).

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ORCHFS=${ORCHFS:-$LIB_DIR/../../build/fs/orchfs}
TEST_NAME=$(basename "$0" .sh)

PASSED=0
FAILED=0
FAILED_NAMES=()
# Every daemon started by orchfs_start: temp dir, mount, pid.
_TMPDIRS=()
_MOUNTS=()
_DAEMONS=()
_WATCHDOG=
_API_ARGS=()

# Prices for the pricing file every daemon gets (USD per million tokens).
# Integer micro-dollars per Mtok are kept beside them for exact arithmetic.
PRICING_JSON='{"m1":{"input_per_mtok":3,"output_per_mtok":15,"cache_read_per_mtok":0.3,"cache_write_per_mtok":3.75},"m2":{"input_per_mtok":0.8,"output_per_mtok":4},"gold":{"input_per_mtok":100000}}'
declare -A PRICE_MICRO=(
	[m1.in]=3000000 [m1.out]=15000000 [m1.cache_read]=300000 [m1.cache_write]=3750000
	[m2.in]=800000 [m2.out]=4000000 [m2.cache_read]=0 [m2.cache_write]=0
	[gold.in]=100000000000 [gold.out]=0 [gold.cache_read]=0 [gold.cache_write]=0
)

log() { printf '%s\n' "$*"; }

pass() {
	PASSED=$((PASSED + 1))
	log "ok   - $1"
}

fail() {
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$1")
	log "FAIL - $1${2:+: $2}"
}

# check NAME CMD...: passes when CMD succeeds.
check() {
	local name=$1
	shift
	if "$@"; then
		pass "$name"
		return 0
	fi
	fail "$name" "command failed: $*"
	return 1
}

# expect_eq NAME GOT WANT
expect_eq() {
	if [ "$2" == "$3" ]; then
		pass "$1"
		return 0
	fi
	fail "$1" "got [$2], want [$3]"
	return 1
}

# wait_for DESC TIMEOUT_S CMD...: polls CMD every 50 ms until it succeeds or
# TIMEOUT_S seconds have passed. Counts as one check.
wait_for() {
	local desc=$1 timeout=$2
	shift 2
	local steps=$(awk -v t="$timeout" 'BEGIN { printf "%d", t * 20 }') i=0
	while :; do
		if "$@" 2>/dev/null; then
			pass "$desc"
			return 0
		fi
		if [ "$i" -ge "$steps" ]; then
			fail "$desc" "not true within ${timeout}s: $*"
			return 1
		fi
		sleep 0.05
		i=$((i + 1))
	done
}

# poll TIMEOUT_S CMD...: like wait_for but silent and not counted.
poll() {
	local timeout=$1
	shift
	local steps=$(awk -v t="$timeout" 'BEGIN { printf "%d", t * 20 }') i=0
	until "$@" 2>/dev/null; do
		[ "$i" -ge "$steps" ] && return 1
		sleep 0.05
		i=$((i + 1))
	done
}

http_status_of() {
	case $1 in
	EINVAL) echo 400 ;; ENOENT) echo 404 ;; EEXIST | EBUSY | ELOOP) echo 409 ;;
	EFBIG) echo 413 ;; EACCES | EPERM) echo 403 ;; EIO) echo 500 ;; EOVERFLOW) echo 422 ;;
	ENOTSUP) echo 405 ;;
	*) echo "?" ;;
	esac
}

# The mount-relative path of FILE ("mma/dag/mutate").
mount_path() {
	local abs=$1
	case $abs in /*) ;; *) abs=$PWD/$abs ;; esac
	printf '%s\n' "${abs#"$M"/}"
}

# write_fd FD CONTENT: CONTENT in one write() to the open descriptor FD.
# bash's printf and echo builtins flush at every newline, one write() per
# line, so content with an inner newline goes through a temporary file and
# cat, which writes what it read in one call; content of one line (with or
# without its newline) is written with bash's printf. (The newline count is
# taken with tr: bash's own pattern matching is slow on a 1 MiB string.)
write_fd() {
	local fd=$1 content=$2 nl
	printf '%s' "$content" >"$T/.write_once"
	nl=$(tr -cd '\n' <"$T/.write_once" | wc -c)
	if [ "$nl" -eq 0 ] || { [ "$nl" -eq 1 ] && [ "$(tail -c1 "$T/.write_once" | od -An -tx1 | tr -d ' \n')" == 0a ]; }; then
		printf '%s' "$content" >&"$fd"
	else
		cat "$T/.write_once" >&"$fd"
	fi
}

# write_once FILE CONTENT: opens FILE (as `> FILE` does) and writes CONTENT
# in one write().
write_once() {
	local fd rc
	exec {fd}>"$1" || return 1
	write_fd "$fd" "$2"
	rc=$?
	exec {fd}>&-
	return $rc
}

# expect_errno NAME ERRNO FILE CONTENT: the write of CONTENT (one write) to
# FILE must fail, and last_error must hold the error object with that errno,
# its HTTP status, a non-empty message and FILE's path: the very object read
# back on the descriptor that failed, so a stale one from an earlier write
# cannot pass. (A file that cannot be opened for writing fails at open, with
# no descriptor to read from, and a read of the events file waits for events:
# then last_error alone.) One check.
expect_errno() {
	local name=$1 want=$2 file=$3 content=$4 why=() fd back="" opened=0
	if [ "${file##*/}" != events ] && exec {fd}<>"$file" 2>/dev/null; then
		opened=1
		if { write_fd "$fd" "$content"; } 2>/dev/null; then
			# a write of a multiple of 4 KiB is applied at this read
			IFS= read -r back <&"$fd"
			exec {fd}>&-
			if jq -e .error >/dev/null 2>&1 <<<"$back"; then :; else
				fail "$name" "the write to $file succeeded; want $want"
				return 1
			fi
		else
			IFS= read -r back <&"$fd"
			exec {fd}>&-
		fi
	elif { write_once "$file" "$content"; } 2>/dev/null; then
		fail "$name" "the write to $file succeeded; want $want"
		return 1
	fi
	local doc
	doc=$(cat "$M/last_error" 2>/dev/null)
	if [ "$opened" == 1 ] && [ "$doc" != "$back" ]; then
		why+=("last_error is not the object read back on the descriptor [${back:0:200}]")
	fi
	local errno status message path
	errno=$(jq -r '.error.errno // empty' <<<"$doc" 2>/dev/null)
	status=$(jq -r '.error.status // empty' <<<"$doc" 2>/dev/null)
	message=$(jq -r '.error.message // empty' <<<"$doc" 2>/dev/null)
	path=$(jq -r '.error.path // empty' <<<"$doc" 2>/dev/null)
	[ "$errno" == "$want" ] || why+=("errno [$errno] want [$want]")
	[ "$status" == "$(http_status_of "$want")" ] || why+=("status [$status] want [$(http_status_of "$want")]")
	[ -n "$message" ] || why+=("empty message")
	[ "$path" == "$(mount_path "$file")" ] || why+=("path [$path] want [$(mount_path "$file")]")
	if [ ${#why[@]} -eq 0 ]; then
		pass "$name ($want: $message)"
		return 0
	fi
	fail "$name" "$(
		IFS=';'
		echo "${why[*]}"
	); last_error: ${doc:0:300}"
	return 1
}

# last_error_message: the message of last_error.
last_error_message() {
	jq -r '.error.message // empty' "$M/last_error"
}

# ctl_write FILE CONTENT: opens FILE read-write, writes CONTENT in one write,
# then reads the result line back on the same descriptor into $RESULT (the
# result JSON, or the error object). Returns the write's status.
ctl_write() {
	local file=$1 content=$2 rc fd
	RESULT=
	exec {fd}<>"$file" || return 1
	{ write_fd "$fd" "$content"; } 2>/dev/null
	rc=$?
	IFS= read -r RESULT <&"$fd"
	exec {fd}>&-
	return $rc
}

# spawn CMD_OR_JSON: spawns a worker, prints its id (empty on failure).
spawn() {
	ctl_write "$M/mma/workers/spawn" "$1" && jq -r '.id' <<<"$RESULT"
}

# status_is FILE WORD: the one-word FILE reads WORD.
status_is() {
	[ "$(cat "$1" 2>/dev/null)" == "$2" ]
}

# shellcheck source=tests/proc_state.sh
. "$(dirname "${BASH_SOURCE[0]}")/../proc_state.sh"

# jqe JQ_ARGS...: jq -e, quiet: succeeds when the last output is true.
jqe() {
	jq -e "$@" >/dev/null 2>&1
}

# Worker pids (and their process groups) that carry this test's mount in
# ORCHFS_MOUNT: whatever is left of them is killed on exit.
_worker_pids() {
	local mnt=$1 f
	for f in /proc/[0-9]*/environ; do
		if { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qxF "ORCHFS_MOUNT=$mnt"; then
			f=${f#/proc/}
			echo "${f%/environ}"
		fi
	done
}

# _fail_now WHY: the test cannot go on; a failure, never a skip (only a
# machine without /dev/fuse may skip).
_fail_now() {
	echo "FAIL: $TEST_NAME: $*" >&2
	exit 1
}

_skip_or_fail() {
	if [ "${CI:-}" == "true" ]; then
		echo "FAIL: $TEST_NAME: $*" >&2
		exit 1
	fi
	echo "SKIP: $TEST_NAME: $*" >&2
	exit 77
}

# The cgroups a daemon killed with -9 left (README, "The daemon": the next
# start on its state directory removes them, but the state goes with the
# test): orchfs-KEY beside the test's own cgroup, KEY the first 12 hex of the
# state directory's SHA-256, for each state directory under the test's.
_cgroup_sweep() {
	local root own lock state cg w
	root=$(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break } }' \
		/proc/self/mountinfo | head -1)
	[ -n "$root" ] || return 0
	own=$(sed -n 's|^0::/*||p' /proc/self/cgroup)
	for lock in "${_TMPDIRS[@]/%//*/orchfs.lock}"; do
		for state in $lock; do
			[ -e "$state" ] || continue
			state=${state%/orchfs.lock}
			cg=$root${own:+/$own}/orchfs-$(printf '%s' "$state" | sha256sum | cut -c1-12)
			[ -d "$cg" ] || continue
			for w in "$cg"/w*/; do
				[ -d "$w" ] || continue
				echo 1 >"$w/cgroup.kill" 2>/dev/null
				poll 2 rmdir "$w"
			done
			rmdir "$cg" 2>/dev/null
		done
	done
}

_cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	cd / || true
	[ -n "$_WATCHDOG" ] && kill "$_WATCHDOG" 2>/dev/null
	for i in "${!_MOUNTS[@]}"; do
		local mnt=${_MOUNTS[$i]} pid=${_DAEMONS[$i]} pids
		pids=$(_worker_pids "$mnt")
		# Unmount; when that is refused (busy: a worker's cwd may be inside
		# the mount), SIGTERM makes the daemon detach the mount itself.
		if mountpoint -q "$mnt" 2>/dev/null && ! fusermount3 -u "$mnt" 2>/dev/null; then
			[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
		fi
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			# the daemon gives workers --kill-grace (1 s here) after TERM
			poll 4 eval "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null
		fi
		for p in $pids $(_worker_pids "$mnt"); do
			kill -KILL -- "-$p" 2>/dev/null
			kill -KILL "$p" 2>/dev/null
		done
		mountpoint -q "$mnt" 2>/dev/null && fusermount3 -uz "$mnt" 2>/dev/null
	done
	# The workers' supervisors outlive their daemons by design: with nothing
	# left to run they exit by themselves; what a test left is ended here,
	# as is a browser it started with its profile in its directory.
	for i in "${!_TMPDIRS[@]}"; do
		pkill -KILL -f -- "--supervise ${_TMPDIRS[$i]}/" 2>/dev/null
		pkill -KILL -f -- "--user-data-dir=${_TMPDIRS[$i]}/" 2>/dev/null
	done
	_cgroup_sweep
	# A sanitizer's report in a daemon's log fails the test, whatever else
	# passed: it is shown here, before its directory goes.
	for i in "${!_TMPDIRS[@]}"; do
		local log
		for log in "${_TMPDIRS[$i]}"/*.log; do
			[ -f "$log" ] || continue
			if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log"; then
				echo "FAIL: $TEST_NAME: a sanitizer report in $log:" >&2
				grep -E -A40 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log" | head -80 >&2
				[ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] && rc=1
			fi
		done
	done
	for i in "${!_TMPDIRS[@]}"; do
		local t=${_TMPDIRS[$i]}
		if [ -n "${KEEP_TMP:-}" ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -n "${KEEP_TMP_ON_FAIL:-}" ]; }; then
			echo "kept $t" >&2
			continue
		fi
		mountpoint -q "$t/mnt" 2>/dev/null || rm -rf "$t"
	done
	exit "$rc"
}

trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A watchdog: if the test hangs on a wedged mount, kill its daemons (which
# aborts the FUSE connection and unblocks every reader) and then the test.
_start_watchdog() {
	local me=$$ secs=${ORCHFS_TEST_TIMEOUT:-120}
	(
		trap - EXIT INT
		sleep "$secs" </dev/null >/dev/null 2>&1 &
		sp=$!
		trap 'kill $sp 2>/dev/null; exit 0' TERM
		wait $sp
		echo "TIMEOUT: $TEST_NAME ran over ${secs}s; killing its daemons" >&2
		for p in $(cat "$_WATCHDOG_PIDS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
		kill -TERM "$me" 2>/dev/null
	) </dev/null >/dev/null &
	_WATCHDOG=$!
}
_WATCHDOG_PIDS=$(mktemp /tmp/orchfs-watchdog.XXXXXX)
_TMPDIRS+=("$_WATCHDOG_PIDS")
_start_watchdog

# orchfs_start [extra daemon args]: mounts a fresh orchfs with -f in the
# background. Every daemon gets a pricing file ($T/pricing.json, PRICING_JSON)
# and --kill-grace 1; extra args come last and override. Exports M, S, T and
# DAEMON_PID (and DAEMON_LOG).
orchfs_start() {
	[ -e /dev/fuse ] || _skip_or_fail "/dev/fuse is missing: cannot mount orchfs"
	command -v fusermount3 >/dev/null || _fail_now "fusermount3 is missing"
	command -v jq >/dev/null || _fail_now "jq is missing"
	if [ ! -x "$ORCHFS" ]; then
		echo "FAIL: $TEST_NAME: no daemon at $ORCHFS (build it, or set ORCHFS)" >&2
		exit 1
	fi
	T=$(mktemp -d /tmp/orchfs-test.XXXXXX)
	_TMPDIRS+=("$T")
	M=$T/mnt
	S=$T/state
	DAEMON_LOG=$T/daemon.log
	mkdir -p "$M" "$S" "$T/work"
	printf '%s\n' "$PRICING_JSON" >"$T/pricing.json"
	# started in $T/work: the daemon's own directory, where tasks without a
	# cwd run
	# The API stays off unless orchfs_start_api asked for it: tests run in
	# parallel and would fight over the default ports.
	local api=("${_API_ARGS[@]}")
	[ ${#api[@]} -gt 0 ] || api=(--http off --ws off)
	(cd "$T/work" && exec "$ORCHFS" -f --state-dir "$S" --pricing "$T/pricing.json" \
		--kill-grace 1 "${api[@]}" "$@" "$M") >"$DAEMON_LOG" 2>&1 </dev/null &
	DAEMON_PID=$!
	_MOUNTS+=("$M")
	_DAEMONS+=("$DAEMON_PID")
	echo "$DAEMON_PID" >>"$_WATCHDOG_PIDS"
	export M S T DAEMON_PID DAEMON_LOG
	local i
	for ((i = 0; i < 100; i++)); do
		if mountpoint -q "$M" && cat "$M/mma/pipeline/status" >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			local rc=0
			wait "$DAEMON_PID" || rc=$?
			echo "--- daemon log ($DAEMON_LOG) ---" >&2
			cat "$DAEMON_LOG" >&2
			if [ "$rc" -eq 2 ]; then
				echo "FAIL: $TEST_NAME: the daemon refused its arguments: $*" >&2
				exit 1
			fi
			_fail_now "orchfs exited ($rc) before the mount came up"
		fi
		sleep 0.05
	done
	cat "$DAEMON_LOG" >&2
	_fail_now "the mount at $M did not come up within 5 s"
}

# orchfs_restart [ARGS]: starts a daemon again on this test's $S and $M
# (after a crash or an unmount), API off, and waits for its mount.
orchfs_restart() {
	(cd "$T/work" && exec "$ORCHFS" -f --state-dir "$S" --pricing "$T/pricing.json" \
		--kill-grace 1 --http off --ws off "$@" "$M") >>"$DAEMON_LOG" 2>&1 </dev/null &
	DAEMON_PID=$!
	_DAEMONS+=("$DAEMON_PID")
	_MOUNTS+=("$M")
	echo "$DAEMON_PID" >>"$_WATCHDOG_PIDS"
	poll 5 eval 'cat "$M/mma/pipeline/status" >/dev/null 2>&1'
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# orchfs_start_api [ARGS]: orchfs_start with the HTTP and WebSocket listeners on
# free loopback ports. Exports HTTP (base URL), WSURL, TOKEN and AUTH (the
# Authorization header line for curl -H).
orchfs_start_api() {
	local hp wp
	hp=$(free_port)
	wp=$(free_port)
	while [ "$wp" == "$hp" ]; do wp=$(free_port); done
	_API_ARGS=(--http "127.0.0.1:$hp" --ws "127.0.0.1:$wp")
	orchfs_start "$@"
	_API_ARGS=()
	HTTP=http://127.0.0.1:$hp
	WSURL=ws://127.0.0.1:$wp
	HTTP_PORT=$hp
	WS_PORT=$wp
	TOKEN=$(cat "$S/token" 2>/dev/null)
	AUTH="Authorization: Bearer $TOKEN"
	export HTTP WSURL HTTP_PORT WS_PORT TOKEN AUTH
}

# daemon_wait_exit PID TIMEOUT_S: waits (bounded) for a daemon started by
# orchfs_start to exit and sets DAEMON_RC to its exit status, or "timeout".
# Not in $(...): only this shell can wait for its own child.
daemon_wait_exit() {
	local pid=$1 timeout=$2
	DAEMON_RC=timeout
	poll "$timeout" eval "! kill -0 $pid" || return 1
	DAEMON_RC=0
	wait "$pid" || DAEMON_RC=$?
}

# writes_at_once FILE WRITERS EACH: WRITERS shells at once, each writing its
# number (1..WRITERS) to FILE EACH times with `printf > FILE`; prints how many
# writes were refused (0: every one acknowledged).
writes_at_once() {
	local file=$1 n=$2 each=$3 i p pids=() refused=$T/.refused.$$
	: >"$refused"
	for i in $(seq 1 "$n"); do
		(for _ in $(seq 1 "$each"); do printf '%d\n' "$i" >"$file" || echo >>"$refused"; done) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	wc -l <"$refused"
}

# relay_checks [PREFIX] <<<"$out": a Python checker's output as this test's
# checks: its "PASS name" and "FAIL name why" lines count, any other is logged.
relay_checks() {
	local line
	while IFS= read -r line; do
		case $line in
		PASS\ *) pass "${1:+$1: }${line#PASS }" ;;
		FAIL\ *) fail "${1:+$1: }${line#FAIL }" ;;
		*) [ -n "$line" ] && log "$line" ;;
		esac
	done
}

# chromium_require: Debian's chromium and a python3 with websockets (the
# browser tests' DevTools client, cdp.py), or the test is skipped (failed
# under CI). A browser started with --user-data-dir under $T ends with the
# test (_cleanup).
chromium_require() {
	PY=/usr/bin/python3
	if ! [ -x "$PY" ] || ! "$PY" -c 'import websockets' 2>/dev/null; then
		_skip_or_fail "no $PY with the websockets module"
	fi
	if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
		_skip_or_fail "chromium is missing (contrib/install-deps.sh installs it)"
	fi
}

finish() {
	echo "$PASSED passed, $FAILED failed"
	if [ "$FAILED" -gt 0 ]; then
		local n
		for n in "${FAILED_NAMES[@]}"; do echo "  failed: $n"; done >&2
		exit 1
	fi
	exit 0
}
