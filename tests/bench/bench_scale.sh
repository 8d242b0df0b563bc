#!/usr/bin/env bash
# bench_scale.sh: what holding a lot of state costs orchfs. Two daemons run in
# the same run, FRESH (empty) and SCALE (10,000 finished workers and 100,000
# tasks: 10 tracks of 1,000 `true` tasks run to the end, then 90 tracks of
# 1,000 whose first task is held and the other 999 wait for it), and each
# figure is taken on both, in interleaved rounds:
#   1. daemon CPU per control write (mma/pipeline/max_workers, 9 and 8 in
#      turn, so each is a change), from /proc/PID/stat
#   2. daemon CPU per usage report (mma/workers/1/usage)
#   3. change -> inotify latency on mma/pipeline/status (pause/resume writes)
#   4. RSS at rest, and its growth over 20 reads of state.json
#   5. reading state.json against Python's json.dumps of the same document
#   6. scheduler tick p99 (system/telemetry.json .loop.p99_us) idle, with
#      a plan of 1,000 `true` tasks running alone, and loaded: 100
#      WebSocket clients on every channel, a state.json read loop and such a
#      plan running
#   7. stat() of mma/workers/1/status against mma/pipeline/status
# and, once the rounds are done, the RSS of each daemon restarted on its
# state dir.
# Before figures 1-4 a daemon is let come to rest (at most 30% of a core over
# 2 s): the notifier's work left over from before is no figure's.
# It prints each round, then a markdown table: the median and spread
# (min-max) of the rounds per daemon, SCALE/FRESH, and the target.
# A benchmark only: it exits non-zero when it could not measure (a daemon
# died, a wait ran out), never because a figure misses its target.
#
#   meson test -C build --benchmark scale -v
#   SCALE_WORKERS=1000 SCALE_TASKS=10000 tests/bench/bench_scale.sh ORCHFS SCALE_PROBE
#
# The timing loops are scale_probe's (C); the WebSocket clients are
# scale_ws.py's, run by /usr/bin/python3 (python3-websockets), next to this
# script. The FRESH daemon is started anew (a new state dir) for each round,
# so the plan of the loaded tick figure never makes it less than fresh; the
# SCALE daemon keeps each round's plan (1,000 tasks more a round, 1%).
# The machine this was written on has 2 cores shared by both daemons, the
# probes and the Python clients: compare figures within a run.
#
# Knobs (environment): SCALE_WORKERS (finished workers, default 10000),
# SCALE_TASKS (all tasks, default 100000), SCALE_TRACK (tasks a track, default
# 1000; both sizes are multiples of it), SCALE_ROUNDS (default 3),
# SCALE_WRITES (default 3000), SCALE_REPORTS (default 1000), SCALE_OP_MAX_S
# (the writes or reports of one round stop after it, default 60: at full
# size a usage report costs the current code most of a second), SCALE_INOTIFY
# (default 60), SCALE_STATS (default 10000), SCALE_WS_CLIENTS (default 100),
# SCALE_LOAD_TASKS (default 1000), SCALE_BUILD_MAX_S (building SCALE, default
# 1500), PYTHON (default /usr/bin/python3), SCALE_KEEP_STATE (a directory to
# copy the built history to, for bench_hot.sh).
set -u -o pipefail

[ $# -eq 2 ] || { echo "usage: $0 ORCHFS SCALE_PROBE" >&2; exit 2; }
orchfs=$1 probe=$2
here=$(cd "$(dirname "$0")" && pwd) || exit 1
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh" || exit 2
py=${PYTHON:-/usr/bin/python3}
pricing=$here/../../contrib/pricing.json
nworkers=${SCALE_WORKERS:-10000}
ntasks=${SCALE_TASKS:-100000}
track=${SCALE_TRACK:-1000}
rounds=${SCALE_ROUNDS:-3}
writes=${SCALE_WRITES:-3000}
reports=${SCALE_REPORTS:-1000}
op_max_s=${SCALE_OP_MAX_S:-60}
inotify_n=${SCALE_INOTIFY:-60}
stats=${SCALE_STATS:-10000}
ws_clients=${SCALE_WS_CLIENTS:-100}
load_tasks=${SCALE_LOAD_TASKS:-1000}
build_max_s=${SCALE_BUILD_MAX_S:-1500}
mount_wait_s=10     # per daemon, until it mounts
stop_wait_s=30      # per daemon, after unmount, before SIGKILL (SCALE has much to write)
probe_max_s=900     # one probe run (settling, SCALE_OP_MAX_S of writes, the quiet after)
read_max_s=300      # one read of state.json
idle_max_s=180      # for a full ring (512 ticks) of idle ticks
load_max_s=900      # the loaded phase of one daemon
usage_line="model=demo-small in=100 out=20"

for v in "$nworkers" "$ntasks" "$track" "$rounds" "$writes" "$reports" "$op_max_s" "$inotify_n" "$stats" \
	"$ws_clients" "$load_tasks" "$build_max_s"; do
	case $v in ''|*[!0-9]*|0) echo "the SCALE_* knobs must be numbers >= 1" >&2; exit 2;; esac
done
if ((nworkers % track || ntasks % track || ntasks < nworkers)); then
	echo "SCALE_WORKERS and SCALE_TASKS must be multiples of SCALE_TRACK ($track), SCALE_TASKS >= SCALE_WORKERS" >&2
	exit 2
fi
for exe in "$orchfs" "$probe"; do
	[ -x "$exe" ] || { echo "not executable: $exe" >&2; exit 2; }
done
for f in "$pricing" "$here/scale_ws.py"; do
	[ -r "$f" ] || { echo "missing $f" >&2; exit 2; }
done
for tool in "$py" jq mountpoint fusermount3 timeout awk sort; do
	command -v "$tool" >/dev/null || { echo "bench_scale: missing: $tool" >&2; exit 2; }
done
"$py" -c 'import websockets' 2>/dev/null || {
	echo "bench_scale: $py has no websockets module (Debian: apt-get install -y python3-websockets)" >&2
	exit 2
}

ws_pid="" rl_pid=""
bench_tmp orchfs-scale
# cleanup stops the load before the daemons
# shellcheck disable=SC2317 # run by bench_cleanup
bench_stop_others() {
	[ -n "$tmp" ] && : >"$tmp/load.stop"
	for p in $ws_pid $rl_pid; do
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	return 0
}

die() { echo "bench_scale: $*" >&2; exit 1; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
kv() { # kv KEY LINE: the value of KEY=VALUE in LINE
	local v=" $2 "
	v=${v#* "$1"=}
	[ "$v" != " $2 " ] || return 1
	echo "${v%% *}"
}

declare -A mnt=() pid=() state=() wsport=() log=()
gen=0
# start_daemon NAME: orchfs with --max-workers 8, the pricing and the API on
# free loopback ports, on a new mount and state dir under $tmp
start_daemon() {
	local d=$tmp/$1.$((++gen)) ph pw
	mkdir -p "$d/mnt" "$d/state" || exit 1
	read -r ph pw < <(bench_free_ports "$py" 2)
	[ -n "$pw" ] || exit 1
	bench_start "$d/mnt" "$d/orchfs.log" "$orchfs" -f --state-dir "$d/state" \
		--http "127.0.0.1:$ph" --ws "127.0.0.1:$pw" --max-workers 8 --pricing "$pricing" "$d/mnt"
	bench_wait_mount "$d/mnt" "$bench_pid" "$d/orchfs.log" "$d/mnt/mma/pipeline/status" "$d/state/token" || exit 1
	mnt[$1]=$d/mnt pid[$1]=$bench_pid state[$1]=$d/state wsport[$1]=$pw log[$1]=$d/orchfs.log
}

# restart_daemon NAME: the daemon stopped and started again on its state dir,
# as a user's would be after an upgrade or a reboot
restart_daemon() {
	local d ph pw
	d=$(dirname "${mnt[$1]}")
	bench_stop "${mnt[$1]}" "${pid[$1]}"
	read -r ph pw < <(bench_free_ports "$py" 2)
	[ -n "$pw" ] || exit 1
	bench_start "$d/mnt" "$d/orchfs.log" "$orchfs" -f --state-dir "$d/state" \
		--http "127.0.0.1:$ph" --ws "127.0.0.1:$pw" --max-workers 8 --pricing "$pricing" "$d/mnt"
	bench_wait_mount "$d/mnt" "$bench_pid" "$d/orchfs.log" "$d/mnt/mma/pipeline/status" "$d/state/token" || exit 1
	pid[$1]=$bench_pid wsport[$1]=$pw
}

alive() { # alive NAME [WHAT]: dies, with the end of its log, if the daemon has
	kill -0 "${pid[$1]}" 2>/dev/null && return 0
	echo "bench_scale: the $1 daemon died${2:+ during $2}; its log ends:" >&2
	tail -20 "${log[$1]}" >&2
	exit 1
}

# say NAME FILE TEXT: one write of TEXT (and a newline) to FILE of NAME's
# mount; the writes run under timeout, so in a shell of their own
# shellcheck disable=SC2016 # expanded by that shell
say() {
	timeout -k 5 "$read_max_s" sh -c 'printf "%s\n" "$1" >"$2"' _ "$3" "${mnt[$1]}/$2" ||
		die "writing '$3' to $1's $2 failed: $(timeout 10 cat "${mnt[$1]}/last_error")"
}
# look NAME FILE: the content of FILE of NAME's mount
look() { timeout -k 5 "$read_max_s" cat "${mnt[$1]}/$2" || { alive "$1" "a read of $2"; die "cannot read $1's $2"; }; }
run_probe() { # run_probe NAME ARGS...: scale_probe ARGS, its line on stdout
	local out
	out=$(timeout -k 5 "$probe_max_s" "$probe" "${@:2}") || { alive "$1" "scale_probe $2"; die "scale_probe $2 failed on $1 ($out)"; }
	echo "$out"
}

# plan ID N GATED: a track of N `true` tasks ID-0 ... ID-(N-1), all but
# the first waiting for the first if GATED
plan() {
	awk -v id="$1" -v n="$2" -v gated="$3" 'BEGIN {
		printf "{\"id\":\"%s\",\"title\":\"bench_scale %s\",\"tasks\":[", id, id
		for (i = 0; i < n; i++) {
			printf "%s{\"id\":\"%s-%d\",\"command\":\"true\"", i ? "," : "", id, i
			if (gated && i) printf ",\"deps\":[\"%s-0\"]", id
			printf "}"
		}
		print "]}" }'
}
# shellcheck disable=SC2016 # expanded by the shell under timeout
create_track() { # create_track NAME ID N GATED
	plan "$2" "$3" "$4" >"$tmp/plan.json" || exit 1
	timeout -k 5 "$read_max_s" sh -c 'cat "$1" >"$2"' _ "$tmp/plan.json" "${mnt[$1]}/mma/tracks/create" ||
		{ alive "$1" "creating track $2"; die "creating track $2 on $1 failed: $(timeout 10 cat "${mnt[$1]}/last_error")"; }
}
# wait_track NAME ID DEADLINE: until track ID is done (polling its one-word
# status, cheap at any size), by DEADLINE (epoch seconds)
wait_track() {
	local s
	while :; do
		s=$(look "$1" "mma/tracks/$2/status") || exit 1
		[ "$s" = "done" ] && return 0
		case $s in failed|over_budget) die "track $2 on $1 is $s";; esac
		(($(date +%s) < $3)) || return 1
		sleep 0.2
	done
}
rss_kib() { # rss_kib NAME: VmRSS of the daemon, in KiB
	local v
	v=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pid[$1]}/status" 2>/dev/null)
	[ -n "$v" ] || alive "$1" "a read of its RSS"
	echo "$v"
}
# rest NAME: until the daemon uses at most 30% of a core over 2 s, 300 s at
# most: a notifier pass over a big state outlasts the writes that made it,
# and its work is no figure's
rest() {
	local hz t0 c0 c1 i
	hz=$(getconf CLK_TCK)
	t0=$(now)
	for ((i = 0; i < 150; i++)); do
		c0=$(awk '{ print $14 + $15 }' "/proc/${pid[$1]}/stat") || alive "$1"
		sleep 2
		c1=$(awk '{ print $14 + $15 }' "/proc/${pid[$1]}/stat") || alive "$1"
		((c1 - c0 <= hz * 6 / 10)) && break
	done
	((i == 0)) || echo "  ($1 came to rest after $(since "$t0")s: $(((c1 - c0) * 50 / hz))% of a core)"
}
# tick NAME: the scheduler's tick count and p99 (us) from the telemetry,
# into the globals tick_count and tick_p99
tick() {
	local t
	t=$(look "$1" system/telemetry.json) || exit 1
	read -r tick_count tick_p99 < <(jq -r '"\(.loop.count) \(.loop.p99_us)"' <<<"$t")
	case $tick_count in ''|*[!0-9]*) die "no tick count in $1's telemetry";; esac
}

# --- the daemons
t_all=$(now)
start_daemon fresh
start_daemon scale
echo "orchfs: fresh pid ${pid[fresh]}, scale pid ${pid[scale]}; $(nproc) CPUs; --max-workers 8"

# worker 1 on FRESH: a task's `true` in a track, as worker 1 on SCALE is, so
# the per-worker figures touch the same kinds of object on both (a usage
# report updates the worker, its task and its track)
fresh_worker() {
	local i
	say fresh mma/tracks/create '{"id":"f001","tasks":[{"id":"f001-0","command":"true"}]}'
	for ((i = 0; i < 200; i++)); do
		# the scheduler starts it after the write returns: it may not be there yet
		[ -e "${mnt[fresh]}/mma/workers/1/status" ] && [ "$(look fresh mma/workers/1/status)" = exited ] &&
			return 0
		sleep 0.05
	done
	die "worker 1 on fresh did not exit in 10s (status $(look fresh mma/workers/1/status))"
}
fresh_worker

# --- building SCALE
ndone=$((nworkers / track)) ngated=$(((ntasks - nworkers) / track))
echo "building scale: $ndone tracks x $track tasks run to the end, then $ngated x $track held behind a gate"
t_build=$(now)
build_deadline=$(($(date +%s) + build_max_s))
for ((k = 1; k <= ndone; k++)); do
	create_track scale "$(printf 's%03d' "$k")" "$track" 0
done
echo "  $ndone tracks created in $(since "$t_build")s"
for ((k = 1; k <= ndone; k++)); do
	id=$(printf 's%03d' "$k")
	if ! wait_track scale "$id" "$build_deadline"; then
		n=$(look scale mma/workers.json | jq '[.workers[] | select(.status != "running")] | length')
		die "building scale ran out of time (${build_max_s}s): $n of $nworkers workers finished, track $id not done; shrink it with SCALE_WORKERS and SCALE_TASKS"
	fi
	echo "  track $id done at $(since "$t_build")s"
done
say scale mma/pipeline/pause pause
[ "$(look scale mma/pipeline/status)" = paused ] || die "scale did not pause"
holds=""
for ((k = 1; k <= ngated; k++)); do
	id=$(printf 'g%03d' "$k")
	create_track scale "$id" "$track" 1
	holds+="${holds:+; }hold $id-0"
	((k % 10 == 0 || k == ngated)) && echo "  $k of $ngated gated tracks created at $(since "$t_build")s"
	(($(date +%s) < build_deadline)) || die "building scale ran out of time (${build_max_s}s): $k of $ngated gated tracks created"
done
if [ -n "$holds" ]; then
	say scale mma/dag/mutate "$holds"
fi
say scale mma/pipeline/resume go
if ((ngated)); then
	[ "$(look scale mma/tasks/g001-0/status)" = held ] || die "g001-0 on scale is not held"
	((track < 2)) || [ "$(look scale mma/tasks/g001-1/status)" = blocked ] || die "g001-1 on scale is not blocked"
fi
[ "$(look scale mma/pipeline/status)" = running ] || die "scale is not running again"
build_s=$(since "$t_build")
echo "scale built in ${build_s}s: $nworkers finished workers, $ntasks tasks ($((ngated * (track - 1))) blocked, $ngated held)"
# SCALE_KEEP_STATE=DIR: a copy of that history for the other benchmarks'
# ORCHFS_BENCH_STATE (bench_hot.sh), taken with the daemon stopped
if [ -n "${SCALE_KEEP_STATE:-}" ]; then
	bench_stop "${mnt[scale]}" "${pid[scale]}"
	mkdir -p "$SCALE_KEEP_STATE" && cp -a "${state[scale]}/." "$SCALE_KEEP_STATE/" || die "cannot copy the state to $SCALE_KEEP_STATE"
	restart_daemon scale
	echo "scale's state copied to $SCALE_KEEP_STATE"
fi

# --- the figures
declare -A vals=()
record() { vals[$1:$2]+="$3 "; }   # record FIGURE NAME VALUE
fmt() { awk -v v="$1" 'BEGIN { a = v < 0 ? -v : v
	if (a >= 100) printf "%.0f", v; else if (a >= 10) printf "%.1f", v
	else if (a >= 1) printf "%.2f", v; else printf "%.3g", v }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.6g", a / b; else print "inf" }'; }

# measure NAME ROUND: figures 1-5 and 7 of one daemon
measure() {
	local d=$1 r=$2 m=${mnt[$1]} p=${pid[$1]} out i rss0 rss1 bytes rd dumps
	rest "$d"
	out=$(run_probe "$d" ops "$p" "$m/mma/pipeline/max_workers" "$writes" "$op_max_s" 9 8) || exit 1
	record wcpu "$d" "$(kv cpu_ms_per_op "$out")"
	record wnet "$d" "$(kv net_ms_per_op "$out")"
	record idle "$d" "$(kv idle_cpu_pct "$out")"
	printf 'round %d %-5s control writes   %s\n' "$r" "$d" "$out"
	# cut short after an odd count, the writes leave 9
	say "$d" mma/pipeline/max_workers 8

	rest "$d"
	out=$(run_probe "$d" ops "$p" "$m/mma/workers/1/usage" "$reports" "$op_max_s" "$usage_line") || exit 1
	record ucpu "$d" "$(kv cpu_ms_per_op "$out")"
	record unet "$d" "$(kv net_ms_per_op "$out")"
	printf 'round %d %-5s usage reports    %s\n' "$r" "$d" "$out"

	rest "$d"
	out=$(run_probe "$d" inotify "$m/mma/pipeline/status" "$m/mma/pipeline/pause" "$m/mma/pipeline/resume" "$inotify_n") || exit 1
	record ip50 "$d" "$(kv p50_ms "$out")"
	record ip99 "$d" "$(kv p99_ms "$out")"
	record late "$d" "$(kv late "$out")"
	record lost "$d" "$(kv lost "$out")"
	printf 'round %d %-5s inotify          %s\n' "$r" "$d" "$out"

	out=$(run_probe "$d" stat "$stats" "$m/mma/workers/1/status" "$m/mma/pipeline/status") || exit 1
	record statw "$d" "$(kv a_median_us "$out")"
	record statp "$d" "$(kv b_median_us "$out")"
	record statr "$d" "$(div "$(kv a_median_us "$out")" "$(kv b_median_us "$out")")"
	printf 'round %d %-5s stat worker/1, pipeline  %s\n' "$r" "$d" "$out"

	rest "$d"
	rss0=$(rss_kib "$d") || exit 1
	for ((i = 0; i < 20; i++)); do
		timeout -k 5 "$read_max_s" cat "$m/state.json" >/dev/null || { alive "$d" "reading state.json"; die "cannot read $d's state.json"; }
	done
	rss1=$(rss_kib "$d") || exit 1
	timeout -k 5 "$read_max_s" cat "$m/state.json" >"$tmp/state-copy.json" || die "cannot read $d's state.json"
	bytes=$(wc -c <"$tmp/state-copy.json")
	record rss "$d" "$(div "$rss0" 1024)"
	record size "$d" "$(div "$bytes" 1048576)"
	record grow "$d" "$(div "$((rss1 - rss0))" 1024)"
	record growr "$d" "$(div "$(((rss1 - rss0) * 1024))" "$bytes")"
	printf 'round %d %-5s rss_at_rest_kib=%d after_20_reads_kib=%d state_json_bytes=%d\n' "$r" "$d" "$rss0" "$rss1" "$bytes"

	out=$(run_probe "$d" read 5 "$m/state.json") || exit 1
	rd=$(kv median_ms "$out")
	dumps=$(timeout -k 5 "$read_max_s" "$py" -c 'import json, sys, time
d = json.load(open(sys.argv[1]))
ts = []
for _ in range(5):
    t = time.perf_counter()
    json.dumps(d)
    ts.append(time.perf_counter() - t)
print("%.3f" % (sorted(ts)[2] * 1e3))' "$tmp/state-copy.json") || die "json.dumps of $d's state.json failed"
	record read "$d" "$rd"
	record dumps "$d" "$dumps"
	record readr "$d" "$(div "$rd" "$dumps")"
	printf 'round %d %-5s state.json read  %s json_dumps_ms=%s\n' "$r" "$d" "$out" "$dumps"
	rm -f "$tmp/state-copy.json"
	alive "$d"
}

# idle_ticks ROUND: once every daemon's ring (512 ticks) holds only ticks
# since now, the tick p99 of each
idle_ticks() {
	local r=$1 d c p99 full t0 deadline
	declare -A c0=()
	for d in fresh scale; do
		tick "$d"; c=$tick_count p99=$tick_p99
		c0[$d]=$c
	done
	t0=$(now)
	deadline=$(($(date +%s) + idle_max_s))
	while :; do
		full=1
		for d in fresh scale; do
			tick "$d"; c=$tick_count p99=$tick_p99
			((c - c0[$d] >= 512)) || full=0
		done
		((full)) && break
		(($(date +%s) < deadline)) || break
		sleep 1
	done
	for d in fresh scale; do
		tick "$d"; c=$tick_count p99=$tick_p99
		alive "$d"
		record tidle "$d" "$(div "$p99" 1000)"
		printf 'round %d %-5s tick idle        p99_us=%s ticks=%d in %ss\n' "$r" "$d" "$p99" "$((c - c0[$d]))" "$(since "$t0")"
		((c - c0[$d] >= 512)) || echo "  (the ring still holds $((512 - (c - c0[$d]))) older ticks)"
	done
}

# loaded_ticks NAME ROUND [plan]: the tick p99 while scale_ws.py's clients, a
# state.json read loop and a plan of load_tasks `true` tasks run; with
# "plan", while the plan alone runs (the tick's own work, the baseline of
# what the clients and the reads add)
# timed_plan NAME ID: a plan of load_tasks `true` tasks run to its end on
# NAME, with the tick counter before (c0) and after (c), the tick p99 after
# (p99) and its start (t0), in the caller's locals
timed_plan() {
	tick "$1"; c0=$tick_count
	t0=$(now)
	create_track "$1" "$2" "$load_tasks" 0
	wait_track "$1" "$2" "$(($(date +%s) + load_max_s))" || die "the plan $2 on $1 was not done in ${load_max_s}s"
	tick "$1"; c=$tick_count p99=$tick_p99
}

loaded_ticks() {
	local d=$1 r=$2 m=${mnt[$1]} i c0 c p99 t0 wsout idle plan_only=${3:-}
	if [ -n "$plan_only" ]; then
		timed_plan "$d" "plan$r"
		alive "$d" "the plan"
		record tplan "$d" "$(div "$p99" 1000)"
		printf 'round %d %-5s tick plan alone  p99_us=%s ticks=%d plan_s=%s\n' "$r" "$d" "$p99" "$((c - c0))" "$(since "$t0")"
		return
	fi
	rm -f "$tmp/ws.ready" "$tmp/load.stop"
	"$py" "$here/scale_ws.py" --port "${wsport[$d]}" --token-file "${state[$d]}/token" \
		--ready "$tmp/ws.ready" --clients "$ws_clients" --max-s "$load_max_s" >"$tmp/ws.out" 2>&1 &
	ws_pid=$!
	for ((i = 0; i < 1200; i++)); do
		[ -e "$tmp/ws.ready" ] && break
		kill -0 "$ws_pid" 2>/dev/null || { cat "$tmp/ws.out" >&2; ws_pid=""; die "scale_ws.py ended before its clients were subscribed ($d)"; }
		sleep 0.05
	done
	[ -e "$tmp/ws.ready" ] || die "scale_ws.py's clients not subscribed in 60s ($d)"
	(
		end=$(($(date +%s) + load_max_s))
		while [ ! -e "$tmp/load.stop" ] && (($(date +%s) < end)); do
			timeout -k 5 "$read_max_s" cat "$m/state.json" >/dev/null || break
		done
	) &
	rl_pid=$!
	timed_plan "$d" "load$r"
	: >"$tmp/load.stop"
	kill -TERM "$ws_pid" 2>/dev/null
	wait "$ws_pid" || { cat "$tmp/ws.out" >&2; ws_pid=""; die "scale_ws.py failed on $d"; }
	ws_pid=""
	wait "$rl_pid"
	rl_pid=""
	alive "$d" "the loaded phase"
	wsout=$(grep '^ws_clients=' "$tmp/ws.out")
	record tload "$d" "$(div "$p99" 1000)"
	idle=${vals[tidle:$d]% }
	idle=${idle##* }
	record tloadr "$d" "$(div "$(div "$p99" 1000)" "$idle")"
	idle=${vals[tplan:$d]% }
	idle=${idle##* }
	record tloadp "$d" "$(div "$(div "$p99" 1000)" "$idle")"
	printf 'round %d %-5s tick loaded      p99_us=%s ticks=%d plan_s=%s %s\n' "$r" "$d" "$p99" "$((c - c0))" "$(since "$t0")" "$wsout"
	# its p99 is the 6th longest of its 512 ticks, so a few hundred loaded
	# ones are enough to set it
	((c - c0 >= 512)) || echo "  (the ring still holds $((512 - (c - c0))) ticks from before the load)"
}

for ((r = 1; r <= rounds; r++)); do
	if ((r > 1)); then
		bench_stop "${mnt[fresh]}" "${pid[fresh]}"
		rm -rf --one-file-system -- "$(dirname "${mnt[fresh]}")"
		start_daemon fresh
		fresh_worker
	fi
	t_round=$(now)
	measure fresh "$r"
	measure scale "$r"
	idle_ticks "$r"
	loaded_ticks fresh "$r" plan
	loaded_ticks scale "$r" plan
	loaded_ticks fresh "$r"
	loaded_ticks scale "$r"
	echo "round $r took $(since "$t_round")s"
done

# RSS once restarted: what is loaded back from the store, at rest
for d in fresh scale; do
	restart_daemon "$d"
	rest "$d"
	record rssr "$d" "$(div "$(rss_kib "$d")" 1024)"
	printf 'restart %-5s rss_at_rest_kib=%d\n' "$d" "$(rss_kib "$d")"
done

# --- the table
stat3() { # stat3 FIGURE NAME: "median (min-max)"
	local v=${vals[$1:$2]}
	# shellcheck disable=SC2086 # the list is split into its numbers
	printf '%s (%s–%s)' "$(fmt "$(bench_median %.6g "$v")")" \
		"$(fmt "$(printf '%s\n' $v | sort -g | head -1)")" "$(fmt "$(printf '%s\n' $v | sort -g | tail -1)")"
}
row() { # row FIGURE LABEL TARGET
	local f s r
	f=$(bench_median %.6g "${vals[$1:fresh]}")
	s=$(bench_median %.6g "${vals[$1:scale]}")
	r=$(bench_ratio "$s" "$f")
	awk -v s="$s" -v f="$f" 'BEGIN { exit !(s == 0 && f == 0) }' && r="—"
	printf '| %s | %s | %s | %s | %s |\n' "$2" "$(stat3 "$1" fresh)" "$(stat3 "$1" scale)" "$r" "$3"
}
echo
echo "## scale: fresh vs scale ($nworkers finished workers, $ntasks tasks), $rounds rounds"
echo
echo "scale built in ${build_s}s; medians of the rounds, spread min–max; ratio = scale/fresh of the medians"
echo
echo "| figure | fresh median (spread) | scale median (spread) | ratio | target |"
echo "| --- | --- | --- | --- | --- |"
row wcpu "1. daemon CPU per control write (ms)" "ratio ≤ 1.2"
row wnet "   … less the idle CPU meanwhile (ms)" "—"
row ucpu "2. daemon CPU per usage report (ms)" "ratio ≤ 1.2"
row unet "   … less the idle CPU meanwhile (ms)" "—"
row idle "   daemon CPU at idle (%)" "—"
row ip50 "3. change → inotify p50 (ms; none in 2 s counts 2000)" "≤ 2 ms"
row ip99 "   change → inotify p99 (ms; none in 2 s counts 2000)" "≤ 10 ms"
row late "   not announced within 1 s (of $inotify_n)" "—"
row lost "   not announced within 2 s (of $inotify_n)" "—"
row rss "4. RSS at rest (MiB)" "scale ≤ 100 MiB"
row size "   state.json size (MiB)" "—"
row grow "   RSS growth over 20 state.json reads (MiB)" "—"
row growr "   RSS growth / state.json size" "≤ 1.0"
row rssr "   RSS at rest after a restart (MiB)" "scale ≤ 100 MiB"
row read "5. state.json read (ms)" "—"
row dumps "   json.dumps of it in Python (ms)" "—"
row readr "   state.json read / json.dumps" "≤ 1.0"
row tidle "6. scheduler tick p99 idle (ms)" "—"
row tload "   scheduler tick p99 loaded (ms)" "≤ 2 ms"
row tloadr "   tick p99 loaded / idle" "≤ 5"
row tplan "   scheduler tick p99, the plan alone (ms)" "—"
row tloadp "   tick p99 loaded / the plan alone" "—"
row statw "7. stat mma/workers/1/status (µs)" "—"
row statp "   stat mma/pipeline/status (µs)" "—"
row statr "   stat worker / pipeline" "≤ 1.5"
echo
echo "total $(since "$t_all")s"
exit 0
