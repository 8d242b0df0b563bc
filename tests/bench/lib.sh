# lib.sh: the harness the benchmarks in tests/bench share, sourced by each of
# them: a temp dir and the trap that cleans it up, daemons started on a mount
# of it (orchfs with the API off, or on free loopback ports) and waited for,
# their stop (unmount, wait, SIGTERM, SIGKILL), and the median of the rounds.
# What a benchmark measures and prints stays in its own script.
#
# A script sets `orchfs` (the executable) and, before it starts a daemon,
#   mount_wait_s   seconds a daemon has to show its mount (and ready files)
#   stop_wait_s    seconds a daemon has to exit after the unmount before
#                  SIGKILL (SIGTERM at half of them)
# and may redefine bench_stop_others (what cleanup stops before the mounts'
# daemons). bench_tmp exits if it fails; the functions that can fail say why
# on stderr and return non-zero.
# shellcheck shell=bash
# shellcheck disable=SC2154 # orchfs, mount_wait_s, stop_wait_s: the script's

bench_mnts=()   # mounts to unmount at cleanup, in start order ...
bench_pids=()   # ... and the pid of the daemon of each
bench_pid=""    # the last daemon bench_start started
orch_pid=""     # the last orchfs bench_orchfs or bench_orchfs_api started
tmp=""

bench_stop_others() { :; }

# bench_tmp PREFIX: a fresh $tmp under $TMPDIR (or /tmp), removed at exit
# with everything in it, once every daemon is stopped; exits 1 if it cannot.
bench_tmp() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 1
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# bench_nap SECONDS: sleep without a fork (a read that times out on a FIFO no
# one writes), for poll loops that must not compete for the CPU with what
# they wait for; needs bench_tmp first.
bench_nap() {
	if [ -z "${bench_nap_fd:-}" ]; then
		{ [ -p "$tmp/.nap" ] || mkfifo "$tmp/.nap"; } && exec {bench_nap_fd}<>"$tmp/.nap" || return 1
	fi
	read -r -t "$1" -u "$bench_nap_fd"
	return 0
}

# bench_stop MNT PID: unmount MNT (which ends its daemon's loop), wait for
# PID to exit, SIGTERM it after stop_wait_s / 2, SIGKILL it after stop_wait_s.
bench_stop() {
	local mnt=$1 pid=$2 i
	if mountpoint -q "$mnt"; then
		fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null
	fi
	[ -n "$pid" ] || return 0
	for ((i = 0; i < stop_wait_s * 20; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		[ "$i" -eq $((stop_wait_s * 10)) ] && kill -TERM "$pid" 2>/dev/null
		sleep 0.05
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# The EXIT trap: stop everything (last started first), then remove $tmp,
# never through a mount that is still there; keeps the exit status.
bench_cleanup() {
	local rc=$? i survived=0
	trap - EXIT INT TERM
	bench_stop_others
	for ((i = ${#bench_mnts[@]} - 1; i >= 0; i--)); do
		bench_stop "${bench_mnts[$i]}" "${bench_pids[$i]}"
	done
	for ((i = 0; i < ${#bench_mnts[@]}; i++)); do
		mountpoint -q "${bench_mnts[$i]}" && survived=1
	done
	if [ "$survived" = 1 ]; then
		if [ "${#bench_mnts[@]}" -gt 1 ]; then
			echo "warning: a mount survived; leaving $tmp" >&2
		else
			echo "warning: the mount survived; leaving $tmp" >&2
		fi
	elif [ -n "$tmp" ]; then
		rm -rf --one-file-system -- "$tmp"
	fi
	exit "$rc"
}

# bench_start MNT LOG CMD...: CMD in the background, its output to LOG,
# stopped at cleanup after MNT is unmounted; its pid in bench_pid.
bench_start() {
	local mnt=$1 log=$2
	shift 2
	"$@" >"$log" 2>&1 &
	bench_pid=$!
	bench_mnts+=("$mnt")
	bench_pids+=("$bench_pid")
}

# bench_wait_mount MNT PID LOG FILE [NONEMPTY]: until MNT is a mount, FILE is
# readable (and NONEMPTY is not empty), for mount_wait_s; shows LOG if not.
bench_wait_mount() {
	local mnt=$1 pid=$2 log=$3 file=$4 nonempty=${5:-} i
	for ((i = 0; i < mount_wait_s * 20; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "daemon for $mnt exited before mounting; its log:" >&2
			cat "$log" >&2
			return 1
		fi
		if mountpoint -q "$mnt" && [ -r "$file" ] && { [ -z "$nonempty" ] || [ -s "$nonempty" ]; }; then
			return 0
		fi
		sleep 0.05
	done
	echo "no mount at $mnt (or no $file${nonempty:+, or nothing in $nonempty}) after ${mount_wait_s}s; log:" >&2
	cat "$log" >&2
	return 1
}

# bench_state STATE: a daemon's state dir, 0700 as a user's own is (else
# orchfs warns); with ORCHFS_BENCH_STATE=DIR, a copy of DIR (the scale
# benchmark's 10,000 workers, say), so a figure can be had on a long history.
bench_state() {
	if [ -n "${ORCHFS_BENCH_STATE:-}" ]; then
		cp -a "$ORCHFS_BENCH_STATE/." "$1/" || return 1
	fi
	chmod 700 "$1"
}

# bench_orchfs MNT STATE LOG [ARGS...]: $orchfs in the foreground (as
# bench_start) on MNT with the state dir STATE, --http off --ws off and ARGS,
# until its mma/pipeline/status is readable; its pid in orch_pid.
bench_orchfs() {
	local mnt=$1 state=$2 log=$3
	shift 3
	bench_state "$state" || return 1
	bench_start "$mnt" "$log" "$orchfs" -f --state-dir "$state" --http off --ws off "$@" "$mnt"
	orch_pid=$bench_pid
	bench_wait_mount "$mnt" "$orch_pid" "$log" "$mnt/mma/pipeline/status"
}

# bench_orchfs_api MNT STATE LOG HTTP_PORT WS_PORT [ARGS...]: the same with the
# HTTP and WebSocket API on those loopback ports, until STATE/token is written too.
bench_orchfs_api() {
	local mnt=$1 state=$2 log=$3
	bench_state "$state" || return 1
	bench_start "$mnt" "$log" "$orchfs" -f --state-dir "$state" \
		--http "127.0.0.1:$4" --ws "127.0.0.1:$5" "${@:6}" "$mnt"
	orch_pid=$bench_pid
	bench_wait_mount "$mnt" "$orch_pid" "$log" "$mnt/mma/pipeline/status" "$state/token"
}

# bench_free_ports PYTHON N: N distinct free loopback TCP ports on one line,
# held open together while chosen (PYTHON runs the choosing).
bench_free_ports() {
	"$1" -c 'import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' "$2" || { echo "cannot find free ports" >&2; return 1; }
}

# bench_median FMT "X Y ...": the median of the numbers (the mean of the two
# middle ones when their count is even), printed with printf FMT.
bench_median() {
	# shellcheck disable=SC2086 # the list is split into its numbers
	printf '%s\n' $2 | sort -g | awk -v fmt="$1" '{ v[NR] = $1 }
		END { if (NR % 2) printf fmt, v[(NR + 1) / 2];
		      else printf fmt, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench_spread FMT "X Y ...": the smallest and the largest, "min-max".
bench_spread() {
	# shellcheck disable=SC2086 # the list is split into its numbers
	printf '%s\n' $2 | sort -g | awk -v fmt="$1" 'NR == 1 { lo = $1 } { hi = $1 }
		END { printf fmt "-" fmt, lo, hi }'
}

# bench_row NAME ORCHFS ANCHOR_NAME ANCHOR RATIO SPREAD: one line of the table
# bench_hot.sh gathers from every benchmark ("row|..."): a figure, its anchor,
# their ratio and the spread of orchfs's figure over the rounds.
bench_row() { printf 'row|%s|%s|%s|%s|%s|%s\n' "$@"; }

# bench_ratio A B: A/B with two decimals, inf when B is 0.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
