#!/bin/sh
# demo: mounts orchfs (default ~/orchfs) and loads the demo plan, so there is
# something to look at. Runs from the source tree (after `ninja -C build`:
# build/fs/orchfs) or installed (PREFIX/share/orchfs/contrib/demo.sh, with
# PREFIX/bin/orchfs); the daemon runs from the directory holding contrib/, so
# the plan's commands (sh contrib/workers/...) resolve in both.
#   contrib/demo.sh                  # then: cat ~/orchfs/mma/pipeline/status,
#                                    # or open the dashboard URL it prints
#   contrib/demo.sh --reset          # stop it, forget its state, start afresh
#                                    # (only a state directory the demo made)
#   contrib/demo.sh --state-dir /var/tmp/demo --http off --ws off
#   fusermount3 -u ~/orchfs          # stops it
# Environment: ORCHFS_MOUNT (the mount, default ~/orchfs), ORCHFS (the daemon).
set -eu

usage() {
	cat <<EOF
usage: $0 [--state-dir DIR] [--http ADDR:PORT|off] [--ws ADDR:PORT|off] [--reset]
Mounts orchfs on \$ORCHFS_MOUNT (default ~/orchfs) and loads the demo plan.
  --state-dir DIR        the daemon's state directory (default: the daemon's,
                         \$XDG_STATE_HOME/orchfs, else ~/.local/state/orchfs)
  --http ADDR:PORT|off   the HTTP/SSE listener (default 127.0.0.1:8999)
  --ws ADDR:PORT|off     the WebSocket listener (default 127.0.0.1:9000)
  --reset                stop the daemon on the mount, remove the state
                         directory and start the demo afresh; only a state
                         directory the demo made (it holds the file \`demo',
                         written when the demo starts orchfs on a directory
                         that did not exist or was empty), never one orchfs
                         was run on for real
  -h, --help             this text
Environment: ORCHFS_MOUNT (the mount point), ORCHFS (the daemon's binary).
EOF
}

die() {
	echo "demo: $*" >&2
	exit 1
}

# a path given relative to where we were started, made absolute before cd
absolute() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$PWD/$1" ;;
	esac
}

STATE= HTTP= WS= RESET=0
while [ $# -gt 0 ]; do
	case $1 in
	--state-dir | --http | --ws)
		[ $# -ge 2 ] && [ -n "$2" ] || { usage >&2; die "$1 needs a value"; }
		case $1 in
		--state-dir) STATE=$(absolute "$2") ;;
		--http) HTTP=$2 ;;
		--ws) WS=$2 ;;
		esac
		shift 2
		;;
	--state-dir=*) STATE=$(absolute "${1#*=}"); shift ;;
	--http=*) HTTP=${1#*=}; shift ;;
	--ws=*) WS=${1#*=}; shift ;;
	--reset) RESET=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; echo "demo: unknown argument: $1" >&2; exit 2 ;;
	esac
done

SELF=$0
HERE=$(cd "$(dirname "$0")" && pwd -P)   # .../contrib
TOP=${HERE%/*}                           # what holds contrib/: the tree, or PREFIX/share/orchfs
MNT=$(absolute "${ORCHFS_MOUNT:-$HOME/orchfs}")
if [ -n "${ORCHFS:-}" ]; then
	case $ORCHFS in
	*/*) BIN=$(absolute "$ORCHFS") ;;
	*) BIN=$(command -v "$ORCHFS") || die "ORCHFS=$ORCHFS: not found in PATH" ;;
	esac
elif [ -x "$TOP/build/fs/orchfs" ]; then
	BIN=$TOP/build/fs/orchfs          # the source tree, built
elif [ -x "$TOP/../../bin/orchfs" ]; then
	BIN=$(cd "$TOP/../../bin" && pwd -P)/orchfs   # installed: PREFIX/share/orchfs -> PREFIX/bin
elif BIN=$(command -v orchfs); then
	:
else
	die "no orchfs binary: build it (ninja -C build), install it, or set ORCHFS"
fi
[ -x "$BIN" ] || die "$BIN is not an executable"
for f in demo-plan.json pricing.json workers/fake-agent.sh; do
	[ -e "$HERE/$f" ] || die "$HERE/$f is missing"
done
# the daemon's own default, for --reset and the token's path
STATE_SHOWN=${STATE:-${XDG_STATE_HOME:-${HOME:-/tmp}/.local/state}/orchfs}

# A mount whose daemon died answers "Transport endpoint is not connected";
# the daemon clears it too, but mkdir and mountpoint below would fail first.
heal_stale() {
	err=$(LC_ALL=C stat -f -c %T "$MNT" 2>&1 >/dev/null) && return 0
	case $err in
	*"not connected"*)
		echo "demo: $MNT is a stale mount (its daemon died); unmounting it"
		fusermount3 -u -z "$MNT"
		;;
	esac
}

# The pid of the orchfs serving MNT (the daemon, not its workers' supervisor), if ours to see.
daemon_pid() {
	for d in /proc/[0-9]*; do
		[ "$(cat "$d/comm" 2>/dev/null)" = orchfs ] || continue
		args=$({ tr '\0' '\n' <"$d/cmdline"; } 2>/dev/null) || continue
		# its helpers run the same binary: the notifier's names the mount too
		case $(printf '%s\n' "$args" | sed -n 2p) in --notify-hand | --supervise) continue ;; esac
		[ "$(printf '%s\n' "$args" | tail -n 1)" = "$MNT" ] && { echo "${d#/proc/}"; return 0; }
	done
	return 1
}

# Is STATE's lock free (no orchfs has it open)? Unknown counts as free.
state_free() {
	[ -e "$STATE_SHOWN/orchfs.lock" ] && command -v flock >/dev/null || return 0
	flock -n "$STATE_SHOWN/orchfs.lock" true
}

# What marks a state directory as the demo's own, for --reset: written
# only when the demo's daemon started on one that was not there (or empty).
MARK=$STATE_SHOWN/demo

heal_stale
if [ "$RESET" -eq 1 ]; then
	# before anything is stopped: a directory that is not the demo's is left as it is
	[ ! -d "$STATE_SHOWN" ] || [ -e "$MARK" ] ||
		die "$STATE_SHOWN was not made by the demo (it has no file $MARK): not removed, nothing stopped; remove it yourself if you mean to, or pick another with --state-dir"
	if mountpoint -q "$MNT"; then
		pid=$(daemon_pid || true)
		echo "demo: stopping the orchfs on $MNT${pid:+ (pid $pid)}"
		fusermount3 -u "$MNT" || die "cannot unmount $MNT: is a shell or program using it? (cd elsewhere, or: fusermount3 -uz $MNT)"
		i=0
		# its workers get TERM, then KILL after --kill-grace (5 s): wait for that
		while { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || ! state_free; do
			i=$((i + 1))
			[ "$i" -lt 300 ] || die "the orchfs on $MNT did not exit within 30 s"
			sleep 0.1
		done
	fi
	if [ -d "$STATE_SHOWN" ]; then
		state_free || die "$STATE_SHOWN is in use by another orchfs (not the one on $MNT): stop it first"
		echo "demo: removing the state directory $STATE_SHOWN"
		rm -rf "$STATE_SHOWN"
	fi
fi

mkdir -p "$MNT"
if mountpoint -q "$MNT"; then
	die "$MNT is already mounted; unmount it first (fusermount3 -u $MNT), or start afresh: $SELF --reset"
fi
# a state directory that is not there yet, or empty, is the demo's to make
FRESH=1
[ ! -d "$STATE_SHOWN" ] || [ -z "$(ls -A "$STATE_SHOWN" 2>/dev/null)" ] || FRESH=0
cd "$TOP"
set -- --pricing contrib/pricing.json
[ -z "$STATE" ] || set -- "$@" --state-dir "$STATE"
[ -z "$HTTP" ] || set -- "$@" --http "$HTTP"
[ -z "$WS" ] || set -- "$@" --ws "$WS"
# the dashboard's files beside this script: the tree's contrib/web, or
# PREFIX/share/orchfs/web installed (the installed daemon's default anyway)
WEB=
if [ -f "$HERE/web/index.html" ]; then
	WEB=$HERE/web
elif [ -f "$TOP/web/index.html" ]; then
	WEB=$TOP/web
fi
[ "$HTTP" = off ] || [ -z "$WEB" ] || set -- "$@" --web-root "$WEB"
"$BIN" "$@" "$MNT"
i=0
until [ -r "$MNT/mma/pipeline/status" ]; do
	i=$((i + 1))
	[ "$i" -lt 50 ] || die "orchfs did not come up on $MNT"
	sleep 0.1
done
# the daemon made the directory (0700) and its store: the store is the demo's
if [ "$FRESH" -eq 1 ]; then
	echo "made by contrib/demo.sh, whose --reset removes only a state directory holding this file" >"$MARK"
fi
# flaky.sh's mark of a first attempt, from an earlier demo
rm -f "${TMPDIR:-/tmp}/orchfs-flaky-$(id -u)-demo-flaky-check" 2>/dev/null || true
PLAN_SHOWN="with the demo plan running"
if [ -e "$MNT/mma/tracks/demo" ]; then
	PLAN_SHOWN="with the demo plan of an earlier start (status: $(cat "$MNT/mma/tracks/demo/status"))"
	echo "demo: the demo track is already loaded (same state directory; $SELF --reset starts afresh)"
else
	cat contrib/demo-plan.json >"$MNT/mma/tracks/create"
fi

HTTP_SHOWN=${HTTP:-127.0.0.1:8999} WS_SHOWN=${WS:-127.0.0.1:9000}
if [ "$HTTP_SHOWN" = off ] && [ "$WS_SHOWN" = off ]; then
	API="off (--http off --ws off)"
	TOKEN="none (the API is off)"
else
	API="HTTP $HTTP_SHOWN, WebSocket $WS_SHOWN"
	TOKEN=$STATE_SHOWN/token
fi
# the page with the token in its fragment, which the browser keeps to itself
DASHBOARD=
if [ "$HTTP_SHOWN" != off ] && [ -n "$WEB" ]; then
	DASHBOARD="http://$HTTP_SHOWN/"
	[ ! -r "$TOKEN" ] || DASHBOARD="$DASHBOARD#token=$(cat "$TOKEN")"
fi
CLI=$BIN
[ "$MNT" = "$HOME/orchfs" ] || CLI="$BIN --mount $MNT"
cat <<MSG
orchfs is mounted on $MNT $PLAN_SHOWN.
  mount:  $MNT
  API:    $API
  token:  $TOKEN
  state:  $STATE_SHOWN${DASHBOARD:+
  dashboard: $DASHBOARD   (open it in a browser)}
Try:
  $CLI tracks; $CLI ps -a; $CLI top   # tables of the files below
  cat $MNT/mma/pipeline/status
  jq -c '.workers[] | {id, task, status}' $MNT/mma/workers.json
  cat $MNT/mma/tasks/*/status
  jq .total $MNT/metrics/financial.json
  echo freeze > $MNT/mma/pipeline/pause; echo > $MNT/mma/pipeline/resume
Stop it with: fusermount3 -u $MNT   (or start afresh: $SELF --reset)
MSG
