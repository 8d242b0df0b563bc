#!/usr/bin/env bash
# test_install: what `meson install` makes (README, "The daemon"), installed
# with DESTDIR into a temp dir: no test file is installed; the systemd user
# unit names the installed daemon and passes systemd-analyze verify (when it
# is there); the dashboard goes to PREFIX/share/orchfs/web; and the
# installed contrib/demo.sh, run from elsewhere with no
# source tree to lean on, finds the installed daemon and its plan beside
# itself and runs the demo plan's tasks to their end; -h, --reset (which
# removes only a state directory the demo made, marked by its file `demo':
# never a real one, the default one included), and a stale mount healed; and
# the source tree's demo.sh runs the tree's build/fs/orchfs; each serves
# its own dashboard and prints its URL.
# Environment: BUILD_ROOT (the build directory to install from).
. "$(dirname "$0")/lib.sh"

[ -n "${BUILD_ROOT:-}" ] && [ -d "$BUILD_ROOT" ] || _fail_now "BUILD_ROOT is not a build directory"
command -v meson >/dev/null || _skip_or_fail "meson is missing"
[ -e /dev/fuse ] || _skip_or_fail "/dev/fuse is missing: cannot mount orchfs"
T=$(mktemp -d /tmp/orchfs-test.XXXXXX)
_TMPDIRS+=("$T")
DEST=$T/dest
DESTDIR=$DEST meson install -C "$BUILD_ROOT" --no-rebuild --quiet >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log" >&2; _fail_now "meson install failed"; }

BIN=$(find "$DEST" -path '*/bin/orchfs' -type f | head -n 1)
DEMO=$(find "$DEST" -path '*/share/orchfs/contrib/demo.sh' | head -n 1)
check "the daemon is installed (PREFIX/bin/orchfs)" test -x "$BIN"
check "demo.sh is installed (PREFIX/share/orchfs/contrib)" test -x "$DEMO"
[ -x "$BIN" ] && [ -x "$DEMO" ] || finish
PREFIX=${BIN%/bin/orchfs}
PREFIX=${PREFIX#"$DEST"}
for f in demo-plan.json pricing.json workers/fake-agent.sh workers/flaky.sh orchfs.env.example \
	python/orchfs_client.py; do
	check "contrib/$f is installed" test -e "$DEST$PREFIX/share/orchfs/contrib/$f"
done
expect_eq "no test file is installed" \
	"$(find "$DEST" \( -name 'test_*' -o -name '*_test.*' -o -name '*.in' \) -printf '%P\n')" ""
check "the man page is installed" test -e "$DEST$PREFIX/share/man/man1/orchfs.1"
for f in index.html app.js app.css dag.js plots.js; do
	check "the dashboard's $f is installed (PREFIX/share/orchfs/web)" test -f "$DEST$PREFIX/share/orchfs/web/$f"
done
check "... not twice (under contrib/)" test ! -e "$DEST$PREFIX/share/orchfs/contrib/web"
check "the README's screenshot is not installed" test ! -e "$DEST$PREFIX/share/orchfs/contrib/dashboard.png"
check "the bash completion is installed beside it" \
	grep -q 'complete -F _orchfs orchfs' "$DEST$PREFIX/share/bash-completion/completions/orchfs"

# --- the systemd user unit ---
UNIT=$DEST$PREFIX/lib/systemd/user/orchfs@.service
check "the user unit is installed (PREFIX/lib/systemd/user)" test -f "$UNIT"
check "... it runs the installed daemon, in the foreground" \
	grep -qxF "ExecStart=$PREFIX/bin/orchfs --foreground --state-dir %S/orchfs/%i \$ORCHFS_ARGS \${ORCHFS_MOUNT}" "$UNIT"
check "... Type=notify" grep -qx 'Type=notify' "$UNIT"
check "... KillMode=process" grep -qx 'KillMode=process' "$UNIT"
check "... an environment file per instance" grep -qxF 'EnvironmentFile=-%E/orchfs/%i.env' "$UNIT"
check "... no @variable@ left" eval '! grep -q "@[a-z]*@" "$UNIT"'
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$T/unit" "$T/run"
	# the unit as installed, but naming the daemon where DESTDIR put it
	sed "s|$PREFIX/bin/orchfs|$BIN|" "$UNIT" >"$T/unit/orchfs@.service"
	check "systemd-analyze verify accepts an instance of it" \
		env XDG_RUNTIME_DIR="$T/run" systemd-analyze verify --user --man=no "$T/unit/orchfs@work.service"
	sed -i "s|^ExecStart=$BIN|ExecStart=$T/nothing-here|" "$T/unit/orchfs@.service"
	check "... and would refuse one naming no daemon" eval \
		'! XDG_RUNTIME_DIR="$T/run" systemd-analyze verify --user --man=no "$T/unit/orchfs@work.service" 2>/dev/null'
else
	log "skip - systemd-analyze verify: systemd-analyze is not installed"
fi

# --- the installed demo ---
mkdir -p "$T/elsewhere"
cd "$T/elsewhere" || exit 1
M=$T/mnt
S=$T/state
_MOUNTS+=("$M")
# no ORCHFS: the demo must find the installed daemon itself; TMPDIR keeps
# flaky.sh's mark in here
demo() { env -u ORCHFS ORCHFS_MOUNT="$M" TMPDIR="$T" "$DEMO" "$@"; }
demo -h >"$T/usage" 2>&1
expect_eq "demo.sh -h: exit 0" "$?" 0
check "... prints its usage" grep -q -- '--reset' "$T/usage"
demo --bogus >/dev/null 2>&1
expect_eq "demo.sh --bogus: exit 2" "$?" 2

daemon_of() {   # the pid of the orchfs serving $M
	local d
	for d in /proc/[0-9]*; do
		{ [ "$(tr '\0' '\n' <"$d/cmdline" | tail -n 1)" == "$M" ] &&
			[ "$(tr '\0' '\n' <"$d/cmdline" | sed -n 2p)" == --pricing ]; } 2>/dev/null &&
			{ echo "${d#/proc/}"; return 0; }
	done
	return 1
}
all_done() {   # every task of the demo track done
	local t n=0
	for t in "$M"/mma/tasks/*/status; do
		[ "$(cat "$t")" == done ] || return 1
		n=$((n + 1))
	done
	[ "$n" -eq 9 ]
}

demo --state-dir "$S" --http off --ws off >"$T/demo.out" 2>&1
rc=$?
expect_eq "the installed demo.sh starts: exit 0" "$rc" 0
[ "$rc" -eq 0 ] || { cat "$T/demo.out" >&2; finish; }
PID=$(daemon_of)
_DAEMONS+=("$PID")
echo "$PID" >>"$_WATCHDOG_PIDS"
expect_eq "... running the installed daemon" "$(readlink "/proc/$PID/exe")" "$(readlink -f "$BIN")"
check "... from the installed tree (where the plan's commands resolve)" \
	test "$(readlink "/proc/$PID/cwd")" == / -o "$(readlink "/proc/$PID/cwd")" == "$(readlink -f "$DEST$PREFIX/share/orchfs")"
check "it says where the mount is" grep -qF "mount:  $M" "$T/demo.out"
check "... that the API is off" grep -q 'API: *off' "$T/demo.out"
check "... the token (none)" grep -q 'token: *none' "$T/demo.out"
check "... and how to stop" grep -qF "fusermount3 -u $M" "$T/demo.out"
check "it marked the state directory it made as the demo's" test -s "$S/demo"
expect_eq "the demo plan's 9 tasks are loaded" "$(ls "$M/mma/tasks" | wc -l)" 9
wait_for "the demo plan's tasks all run to their end (done)" 90 all_done
check "the release task ran its command" grep -q released "$M/mma/tasks/release/worker/log"
check "flaky-check failed once and passed on its retry" \
	jqe '[.workers[] | .status] == ["failed", "exited"]' "$M/mma/tasks/flaky-check/info.json"
check "workers reported usage, priced by the installed pricing.json" jqe '.total.cost_usd > 0' \
	"$M/metrics/financial.json"

demo --state-dir "$S" --http off --ws off >"$T/again.out" 2>&1
expect_eq "demo.sh again while it runs: exit 1" "$?" 1
check "... saying it is mounted and naming --reset" grep -q 'already mounted.*--reset' "$T/again.out"

# a daemon that died leaves a stale mount: the demo clears it and starts again
kill -KILL "$PID"
poll 5 eval '! kill -0 $PID'
check "after kill -9 the mount is stale" eval \
	'LC_ALL=C stat -f "$M" 2>&1 | grep -q "not connected"'
demo --state-dir "$S" --http off --ws off >"$T/stale.out" 2>&1
expect_eq "demo.sh on the stale mount: exit 0" "$?" 0
check "... saying it cleared it" grep -q 'stale mount' "$T/stale.out"
check "... and the state was kept (the track was already loaded)" grep -q 'already loaded' "$T/stale.out"
check "... and the mount answers" grep -qx running "$M/mma/pipeline/status"
PID=$(daemon_of)
_DAEMONS+=("$PID")
echo "$PID" >>"$_WATCHDOG_PIDS"

# --reset: stops it, waits, removes the state directory, starts afresh (the
# API on, this time: the dashboard is the installed one)
hp=$(free_port)
wp=$(free_port)
demo --state-dir "$S" --http "127.0.0.1:$hp" --ws "127.0.0.1:$wp" --reset >"$T/reset.out" 2>&1
expect_eq "demo.sh --reset: exit 0" "$?" 0
check "... stopped the daemon on the mount" grep -q "stopping the orchfs on $M (pid $PID)" "$T/reset.out"
check "... which has exited" eval '! kill -0 $PID 2>/dev/null'
check "... removed the state directory" grep -q "removing the state directory $S" "$T/reset.out"
NEW=$(daemon_of)
_DAEMONS+=("$NEW")
echo "$NEW" >>"$_WATCHDOG_PIDS"
check "... a new daemon serves the mount" test -n "$NEW" -a "$NEW" != "$PID"
check "... with a fresh state: the plan starts over (not all done)" eval '! all_done'
check "... in a state directory marked as the demo's again" test -s "$S/demo"
check "... printing the dashboard's URL with the token" \
	grep -qF "dashboard: http://127.0.0.1:$hp/#token=$(cat "$S/token")" "$T/reset.out"
check "... which serves the installed dashboard" \
	cmp -s <(curl -s "http://127.0.0.1:$hp/app.js") "$DEST$PREFIX/share/orchfs/web/app.js"
wait_for "... and worker ids start again at 1" 20 \
	jqe '([.workers[] | .id] | min) == 1 and (.workers | length) < 9' "$M/mma/workers.json"
# refused (EBUSY) if it lands in a burst of announcements: again, as the README says
poll 5 fusermount3 -u "$M"
poll 30 eval '! kill -0 $NEW 2>/dev/null'
check "fusermount3 -u stops it" eval '! kill -0 $NEW 2>/dev/null && ! mountpoint -q "$M"'

# from the source tree, as the README's first command runs it: build/fs/orchfs
SRC=$(cd "$(dirname "$0")/../.." && pwd -P)
if [ -x "$SRC/build/fs/orchfs" ]; then
	M2=$T/mnt2
	_MOUNTS+=("$M2")
	hp=$(free_port)
	env -u ORCHFS ORCHFS_MOUNT="$M2" TMPDIR="$T" "$SRC/contrib/demo.sh" --state-dir "$T/state2" \
		--http "127.0.0.1:$hp" --ws off >"$T/src.out" 2>&1
	expect_eq "the source tree's demo.sh starts: exit 0" "$?" 0
	M_SAVED=$M
	M=$M2
	PID2=$(daemon_of)
	M=$M_SAVED
	_DAEMONS+=("$PID2")
	expect_eq "... running the tree's build/fs/orchfs" "$(readlink "/proc/$PID2/exe")" \
		"$(readlink -f "$SRC/build/fs/orchfs")"
	check "... with the demo plan loaded" test -d "$M2/mma/tracks/demo"
	check "... and the tree's dashboard (contrib/web)" \
		cmp -s <(curl -s "http://127.0.0.1:$hp/") "$SRC/contrib/web/index.html"
	poll 5 fusermount3 -u "$M2"
else
	log "skip - the source tree's demo.sh: no $SRC/build/fs/orchfs"
fi

# --reset never removes a directory the demo did not make
mkdir -p "$T/precious"
echo keep >"$T/precious/notes"
demo --state-dir "$T/precious" --http off --ws off --reset >"$T/refuse.out" 2>&1
expect_eq "--reset on a directory the demo did not make: exit 1" "$?" 1
check "... saying why" grep -q "was not made by the demo (it has no file $T/precious/demo)" "$T/refuse.out"
check "... and it is kept" grep -qx keep "$T/precious/notes"
check "... and nothing was mounted" eval '! mountpoint -q "$M"'
# nor the default state directory of an orchfs run for real
REAL=$T/xdg/orchfs
mkdir -p "$REAL"
chmod 700 "$REAL"
echo real >"$REAL/orchfs.db"
echo real >"$REAL/orchfs.journal"
env -u ORCHFS XDG_STATE_HOME="$T/xdg" ORCHFS_MOUNT="$M" TMPDIR="$T" "$DEMO" --http off --ws off \
	--reset >"$T/refuse2.out" 2>&1
expect_eq "--reset on the default state directory, a real one: exit 1" "$?" 1
check "... saying why" grep -q "$REAL was not made by the demo" "$T/refuse2.out"
check "... and it is kept whole" eval 'grep -qx real "$REAL/orchfs.db" && grep -qx real "$REAL/orchfs.journal"'
check "... and nothing was mounted" eval '! mountpoint -q "$M"'
# a demo started on an existing state directory does not mark it
mkdir -p "$T/used"
chmod 700 "$T/used"
echo keep >"$T/used/notes"
demo --state-dir "$T/used" --http off --ws off >"$T/used.out" 2>&1
expect_eq "the demo on a directory with files in it: exit 0" "$?" 0
check "... leaves it unmarked" test ! -e "$T/used/demo"
NEW=$(daemon_of)
_DAEMONS+=("$NEW")
echo "$NEW" >>"$_WATCHDOG_PIDS"
demo --state-dir "$T/used" --http off --ws off --reset >"$T/refuse3.out" 2>&1
expect_eq "... so --reset refuses it: exit 1" "$?" 1
check "... before stopping anything" eval 'kill -0 $NEW && grep -qx running "$M/mma/pipeline/status"'
check "... and its files are kept" eval 'grep -qx keep "$T/used/notes" && test -e "$T/used/orchfs.db"'
poll 5 fusermount3 -u "$M"
poll 30 eval '! kill -0 $NEW 2>/dev/null'

finish
