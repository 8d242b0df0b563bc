# lib.sh: the harness the headless simulations in sim/ share, sourced by each
# of them: expectations and their tally, polling, a mktemp directory, our own
# orchfs daemon or a running instance, a watchdog, a teardown that leaves no
# process or mount behind, the final "N passed, M failed"; then the parts of
# the track lifecycle scenario its mount and HTTP sims have in common.
#
# A sim sets, before `. "$SIM_DIR/lib.sh"`:
#   NAME                   its name, in messages
#   PREFIX, SHARED_PREFIX  the track and task id prefix with our own daemon,
#                          and on a running instance (ids that cannot clash)
#   SHARED_BY              the variable naming a running instance to use
#                          instead of our own daemon (default ORCHFS_MOUNT)
#   DAEMON_STOP            how teardown stops our daemon: umount (fusermount3
#                          -u first, the default) or term (SIGTERM)
# and may redefine release_instance (what teardown gives back to a running
# instance) and, for the scenario part, defines task (a task's status).
# shellcheck shell=bash
export LC_ALL=C

ORCHFS=${ORCHFS:-$SIM_DIR/../build/fs/orchfs}
SIM_TIMEOUT=${SIM_TIMEOUT:-100}
SHARED_BY=${SHARED_BY:-ORCHFS_MOUNT}
DAEMON_STOP=${DAEMON_STOP:-umount}
START_NS=$(date +%s%N)

PASSED=0
FAILED=0
FAILED_NAMES=()
pass() { PASSED=$((PASSED + 1)); printf 'ok   - %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); printf 'FAIL - %s%s\n' "$1" "${2:+: $2}"; }
check() {
	local n=$1
	shift
	if "$@"; then pass "$n"; else fail "$n" "command failed: $*"; return 1; fi
}
expect_eq() { if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "got [$2], want [$3]"; fi; }
# poll TIMEOUT_S CMD...: until CMD succeeds, every 50 ms; silent.
poll() {
	local steps=$(($1 * 20)) i=0
	shift
	until "$@" 2>/dev/null; do
		[ "$i" -ge "$steps" ] && return 1
		sleep 0.05
		i=$((i + 1))
	done
}
# wait_for NAME TIMEOUT_S CMD...: poll, counted as one expectation.
wait_for() {
	local n=$1 t=$2
	shift 2
	if poll "$t" "$@"; then pass "$n"; else fail "$n" "not true within ${t}s: $*"; fi
}
jqe() { jq -e "$@" >/dev/null 2>&1; }
status_is() { [ "$(cat "$1" 2>/dev/null)" == "$2" ]; }
# is_mounted DIR: DIR is a mount point in /proc/mounts (even a dead one).
is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }
# shellcheck source=tests/proc_state.sh
. "$SIM_DIR/../tests/proc_state.sh"

# --- where: our own daemon, or a running one ($SHARED_BY is set) -------------
T=$(mktemp -d /tmp/sim-XXXXXX)
T=$(cd "$T" && pwd -P)
OWN=1
if [ -n "${!SHARED_BY:-}" ]; then
	OWN=0
	M=${ORCHFS_MOUNT:-}
	P=$SHARED_PREFIX
else
	M=$T/mnt
	P=$PREFIX
fi
TRACK=$P
DAEMON_PID=
BG_PIDS=()
TORN=
OLD_MAX=
WATCHDOG=
PIPE_TOUCHED=
WHERE=

# Workers of this sim still alive: with our own daemon every process whose
# environment has ORCHFS_MOUNT=$M; on a shared instance those of our track.
leftover_pids() {
	local f want
	if [ "$OWN" == 1 ]; then want="ORCHFS_MOUNT=$M"; else want="ORCHFS_TRACK=$TRACK"; fi
	for f in /proc/[0-9]*/environ; do
		if { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qxF "$want"; then
			f=${f#/proc/}
			echo "${f%/environ}"
		fi
	done
}

# release_instance: on a running instance, give back what the sim changed
# (max_workers, a paused pipeline) and cancel what is left of its track,
# through the mount; a sim without the mount redefines it.
release_instance() {
	local s p
	[ -n "$OLD_MAX" ] && echo "$OLD_MAX" >"$M/mma/pipeline/max_workers" 2>/dev/null
	s=$(cat "$M/mma/pipeline/status" 2>/dev/null)
	[ "$s" != running ] && [ -n "$PIPE_TOUCHED" ] && echo resume >"$M/mma/pipeline/resume" 2>/dev/null
	for p in $(jq -r --arg k "$TRACK" '.tasks[]? | select(.status == "running" or .status == "blocked" or .status == "ready" or .status == "held") | .id' \
		"$M/mma/tracks/$TRACK/info.json" 2>/dev/null); do
		echo "cancel $p" >"$M/mma/dag/mutate" 2>/dev/null
	done
}

# teardown: stops what this sim started; idempotent (end of the run, or trap).
teardown() {
	[ -n "$TORN" ] && return
	TORN=1
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ "$OWN" == 1 ]; then
		if [ -n "$DAEMON_PID" ]; then
			if [ "$DAEMON_STOP" == term ]; then
				# SIGTERM: the daemon stops its workers, unmounts and exits 0
				kill -TERM "$DAEMON_PID" 2>/dev/null
			# fusermount3 -u may be refused for a moment (EBUSY); then SIGTERM,
			# which makes the daemon unmount and stop just the same
			elif is_mounted "$M"; then
				if fusermount3 -u "$M" 2>"$T/umount.err"; then
					UMOUNT_FIRST=ok
				else
					UMOUNT_FIRST=$(cat "$T/umount.err")
					poll 2 fusermount3 -u "$M" || kill -TERM "$DAEMON_PID" 2>/dev/null
				fi
			fi
			poll 8 eval "! kill -0 $DAEMON_PID" || kill -KILL "$DAEMON_PID" 2>/dev/null
			DAEMON_RC=0
			wait "$DAEMON_PID" 2>/dev/null || DAEMON_RC=$?
		fi
	else
		release_instance
		poll 3 eval '[ -z "$(leftover_pids)" ]'
	fi
	for p in $(leftover_pids); do
		kill -KILL -- "-$p" 2>/dev/null
		kill -KILL "$p" 2>/dev/null
	done
	[ "$OWN" == 1 ] && is_mounted "$M" && fusermount3 -uz "$M" 2>/dev/null
	[ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
}
on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	teardown
	# a sanitizer's report in the daemon's log fails the sim, shown here
	if [ -f "$T/daemon.log" ] && grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/daemon.log"; then
		echo "FAIL: a sanitizer report in the daemon's log:" >&2
		grep -E -A40 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/daemon.log" | head -80 >&2
		[ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] && rc=1
	fi
	if [ -n "${KEEP_TMP:-}" ]; then
		echo "kept $T" >&2
	elif ! is_mounted "$T/mnt"; then
		rm -rf "$T"
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# skip_or_fail WHY: exit 77 (skipped), or 1 when CI=true.
skip_or_fail() {
	if [ "${CI:-}" == true ]; then
		echo "FAIL: $NAME: $*" >&2
		exit 1
	fi
	echo "SKIP: $NAME: $*" >&2
	exit 77
}
# need CMD [WHAT]: CMD is installed, else a failure "WHAT is missing" (only
# a missing /dev/fuse may skip: contrib/install-deps.sh installs the rest).
need() { command -v "$1" >/dev/null || { echo "FAIL: $NAME: ${2:-$1} is missing" >&2; exit 1; }; }

# A watchdog: a wedged mount would block this script in a read, so it kills
# our daemon (which aborts the FUSE connection) and then the script.
start_watchdog() {
	local me=$$
	(
		trap - EXIT INT TERM
		sleep "$SIM_TIMEOUT" &
		sp=$!
		trap 'kill $sp 2>/dev/null; exit 0' TERM
		wait $sp
		echo "TIMEOUT: $NAME ran over ${SIM_TIMEOUT}s; killing its daemon" >&2
		[ -s "$T/daemon.pid" ] && kill -KILL "$(cat "$T/daemon.pid")" 2>/dev/null
		kill -TERM "$me"
	) </dev/null >/dev/null &
	WATCHDOG=$!
}

# --- our own daemon -----------------------------------------------------------
# need_own_daemon [CMD WHAT]: FUSE, fusermount3 and CMD are there (else a
# skip), the daemon binary too (else a failure); makes the mount point and
# the state and work directories.
need_own_daemon() {
	[ -e /dev/fuse ] || skip_or_fail "/dev/fuse is missing"
	need fusermount3
	[ $# -ge 2 ] && need "$1" "$2"
	[ -x "$ORCHFS" ] || { echo "FAIL: $NAME: no daemon at $ORCHFS (build it, or set ORCHFS)" >&2; exit 1; }
	mkdir -p "$M" "$T/state" "$T/work"
}
# start_daemon ARGS...: the watchdog, then orchfs -f in $T/work on $M with
# the state in $T/state and ARGS, its output in $T/daemon.log.
start_daemon() {
	start_watchdog
	(cd "$T/work" && exec "$ORCHFS" -f --state-dir "$T/state" "$@" "$M") >"$T/daemon.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	echo "$DAEMON_PID" >"$T/daemon.pid"
}
# daemon_up CMD WHAT TIMEOUT_MSG: within 5 s CMD (eval) succeeds; else the
# daemon's log and a failure ("orchfs exited before WHAT" if it is gone): a
# daemon that does not start is never a skip.
daemon_up() {
	if ! poll 5 eval "$1"; then
		cat "$T/daemon.log" >&2
		kill -0 "$DAEMON_PID" 2>/dev/null || { echo "FAIL: $NAME: orchfs exited before $2" >&2; exit 1; }
		echo "FAIL: $NAME: $3" >&2
		exit 1
	fi
}
wait_mount() {
	daemon_up 'mountpoint -q "$M" && cat "$M/mma/pipeline/status" >/dev/null' \
		"the mount came up" "the mount did not come up within 5 s"
}
# attach_mount: the watchdog, $M is an orchfs mount (else a failure), and
# its max_workers kept in OLD_MAX for teardown.
attach_mount() {
	start_watchdog
	[ -f "$M/state.json" ] || { echo "FAIL: $NAME: $M is not an orchfs mount" >&2; exit 1; }
	OLD_MAX=$(cat "$M/mma/pipeline/max_workers")
}
# announce [AT]: the first line, with where orchfs is (AT, default "orchfs at
# $M"; $WHERE, default our own daemon or a running instance) and the track.
announce() {
	if [ -z "$WHERE" ]; then
		if [ "$OWN" == 1 ]; then WHERE="own daemon $ORCHFS"; else WHERE="a running instance"; fi
	fi
	echo "# $NAME: ${1:-orchfs at $M} ($WHERE), track $TRACK"
}

# ctl FILE CONTENT: one write of CONTENT (one line) to the control FILE, then
# the result (or the error object) read back on the same descriptor into RESULT.
ctl() {
	local fd rc
	RESULT=
	exec {fd}<>"$1" || return 1
	printf '%s\n' "$2" >&"$fd" 2>/dev/null
	rc=$?
	IFS= read -r RESULT <&"$fd"
	exec {fd}>&-
	return $rc
}
# ctl_file FILE SRC: the same with the content of the file SRC, in one write.
ctl_file() {
	local fd rc
	RESULT=
	exec {fd}<>"$1" || return 1
	cat "$2" >&"$fd" 2>/dev/null
	rc=$?
	IFS= read -r RESULT <&"$fd"
	exec {fd}>&-
	return $rc
}

# --- the event history ---------------------------------------------------------
# summarize_events: $T/events.jsonl (every event since SEQ0) replayed into
# $T/check.json: first and last seq and gaps, spawns and task.retry per task,
# for this track the spawns before a dep's last worker exited (viol), a second
# spawn without a retry between (dbl), and the DAG (deps: task -> its deps).
CHECK_JQ='
reduce .[] as $e ({deps: {}, trk: {}, wt: {}, dst: {}, st: {}, spawns: {}, allow: {}, retries: {},
                   viol: [], dbl: [], gaps: 0, first: null, last: null};
  $e.data as $d
  | (if .last != null and $e.seq != .last + 1 then .gaps += 1 else . end)
  | .first = (.first // $e.seq) | .last = $e.seq
  | if $e.type == "dag.task_added" then .deps[$d.task] = {} | .trk[$d.task] = $d.track
    elif $e.type == "dag.task_removed" then .deps |= del(.[$d.task])
    elif $e.type == "dag.dep_added" then .deps[$d.task][$d.dep] = $e.seq
    elif $e.type == "dag.dep_removed" then .deps[$d.task] |= del(.[$d.dep])
    elif $e.type == "task.status" then
      .st[$d.task] = $d.to
      | if ($d.from == "failed" or $d.from == "killed") and ($d.to == "blocked" or $d.to == "ready")
        then .allow[$d.task] = "manual" else . end
    elif $e.type == "task.retry" then .allow[$d.task] = "auto" | .retries[$d.task] += 1
    elif $e.type == "worker.spawned" and $d.task != null then
      $d.task as $t
      | [(.deps[$t] // {}) | keys[]] as $ks
      | [$ks[] as $k | select((.dst[$k] // "none") != "exited" and .st[$k] != "skipped")
         | {dep: $k, dep_worker: (.dst[$k] // "never ran")}] as $bad
      | (if ($bad | length) > 0 then .viol += [{seq: $e.seq, task: $t, bad: $bad}] else . end)
      | (if (.spawns[$t] // 0) > 0 and .allow[$t] == null then .dbl += [{seq: $e.seq, task: $t}] else . end)
      | .spawns[$t] += 1 | .allow |= del(.[$t]) | .dst[$t] = "running" | .wt[$d.id | tostring] = $t
    elif $e.type == "worker.exited" then
      .wt[$d.id | tostring] as $t | if $t != null then .dst[$t] = $d.status else . end
    else . end)
| . as $r | {first, last, gaps, spawns, retries,
   viol: [.viol[] | select($r.trk[.task] == $track)], dbl: [.dbl[] | select($r.trk[.task] == $track)],
   deps: (.deps | with_entries(select($r.trk[.key] == $track)) | map_values(keys))}'
summarize_events() { jq -s --arg track "$TRACK" "$CHECK_JQ" "$T/events.jsonl" >"$T/check.json"; }
# same_dag DAG_JSON: the DAG of this track from the events (check.json) has
# the edges of DAG_JSON (a dag.json) among this track's tasks.
same_dag() {
	[ "$(jq -c ".deps | to_entries | map(.value[] as \$d | [\$d, .key]) | sort" "$T/check.json")" == \
	  "$(jq -c --arg k "$TRACK" "[.nodes[] | select(.track == \$k) | .id] as \$ids | [.edges[] | select(.to as \$t | \$ids | index(\$t)) | [.from, .to]] | sort" "$1")" ]
}

# --- the end ---------------------------------------------------------------------
# end_checks: teardown, then nothing is left: no worker and, with our own
# daemon, no mount and a daemon that exited 0.
end_checks() {
	teardown
	check "no worker process of this sim is left" test -z "$(leftover_pids)"
	if [ "$OWN" == 1 ]; then
		if [ "$DAEMON_STOP" == term ]; then
			check "the mount is gone" eval '! is_mounted "$M"'
			expect_eq "the daemon exited 0 after SIGTERM" "${DAEMON_RC:-none}" 0
		else
			expect_eq "fusermount3 -u unmounts at the first try" "${UMOUNT_FIRST:-not tried}" ok
			check "the mount is gone" eval '! is_mounted "$M"'
			expect_eq "the daemon exited 0" "${DAEMON_RC:-none}" 0
		fi
	fi
}
# finish: the run time, the failed expectations, "N passed, M failed"; its
# status (the script's) is 0 only when every expectation held.
finish() {
	local n
	echo "# ran in $((($(date +%s%N) - START_NS) / 1000000)) ms"
	for n in "${FAILED_NAMES[@]}"; do echo "#   failed: $n"; done
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

# --- the track lifecycle scenario (track_lifecycle.sh, track_lifecycle_http.sh)
# A plan of 9 tasks whose DAG has a diamond (a -> b,c -> d), plus n added
# mid-flight; each sim drives it through its own interface and defines
# task ID (the status of task $P-ID) for the checks here.
ALL="a b c d e f g h x n"

# write_pricing: $T/pricing.json, the prices our own daemon gets.
write_pricing() {
	cat >"$T/pricing.json" <<'EOF'
{"m1":{"input_per_mtok":3,"output_per_mtok":15,"cache_read_per_mtok":0.3,"cache_write_per_mtok":3.75},
 "m2":{"input_per_mtok":0.8,"output_per_mtok":4}}
EOF
}
# started_or_done TASK...: each task is running or done (through the sim's
# own `task`, mount or HTTP). A function for wait_for, not an eval: an `exit`
# in an eval would end the sim without a FAIL line.
started_or_done() {
	local x
	for x in "$@"; do
		case $(task "$x") in running | done) ;; *) return 1 ;; esac
	done
}
# write_worker <REPORT: $T/w.sh, one attempt of a task: report usage with the
# sh lines REPORT (stdin; "$line" is the report) and note it in usage.log for
# the cost check, then per mode wait for a gate file, fail on the first
# attempt (flaky), or sleep until killed on the first attempt (long).
write_worker() {
	{
		cat <<'EOF'
#!/bin/sh
# w.sh NAME MODEL IN OUT CACHE_READ MODES: one attempt of a sim task.
name=$1 model=$2 in=$3 out=$4 cr=$5 modes=,$6, dir=$(dirname "$0")
line="model=$model in=$in out=$out cache_read=$cr"
EOF
		cat
		cat <<'EOF'
echo "$ORCHFS_WORKER_ID $line" >>"$dir/usage.log"
case $modes in *,gate,*) while [ ! -e "$dir/gate.$name" ]; do sleep 0.05; done ;; esac
case $modes in *,flaky,*) [ -e "$dir/mark.$name" ] || { : >"$dir/mark.$name"; echo "$name: failing once" >&2; exit 1; } ;; esac
case $modes in *,long,*) [ -e "$dir/mark.$name" ] || { : >"$dir/mark.$name"; sleep 30; } ;; esac
echo "$name: done"
EOF
	} >"$T/w.sh"
}
# w ID MODEL IN OUT CACHE_READ [MODES]: the command of one task.
w() { printf 'sh %s/w.sh %s-%s %s %s %s %s %s' "$T" "$P" "$1" "$2" "$3" "$4" "$5" "${6:-plain}"; }
t() { # t ID DEPS(comma list) RETRIES MODEL IN OUT CACHE_READ [MODES]
	local id=$1 deps=$2 retries=$3
	shift 3
	jq -nc --arg id "$P-$id" --arg deps "$deps" --arg p "$P" --argjson r "$retries" --arg cmd "$(w "$id" "$@")" \
		'{id: $id, command: $cmd, retries: $r, deps: ($deps | split(",") | map(select(. != "") | "\($p)-\(.)"))}'
}
# write_plan TITLE: $T/plan.json, the track with its 9 tasks.
write_plan() {
	{
		printf '{"id":"%s","title":"%s","tasks":[' "$TRACK" "$1"
		t a "" 0 m1 1000 200 0 gate
		echo ,; t b a 0 m1 2000 500 100
		echo ,; t c a 0 m2 3000 700 0
		echo ,; t d b,c 0 m1 1500 300 200
		echo ,; t e d 0 m2 500 100 0 gate,flaky
		echo ,; t f a 1 m2 800 150 0 flaky
		echo ,; t g "" 0 m1 100 10 0 long
		echo ,; t h "" 0 m1 700 70 0 gate
		echo ,; t x a 0 m9 999 99 0
		echo ']}'
	} >"$T/plan.json"
}
gate() { : >"$T/gate.$P-$1"; }

# final_checks WORKERS_JSON: every task done; which attempts each task's
# workers (from WORKERS_JSON, a workers.json) ended with.
wstat() { jq -r --arg t "$P-$1" '[.workers[] | select(.task == $t) | .status] | join(" ")' "$2"; }
final_checks() {
	local x
	for x in $ALL; do expect_eq "task $x is done" "$(task "$x")" done; done
	expect_eq "g's workers: killed, then exited" "$(wstat g "$1")" "killed exited"
	expect_eq "e's workers: failed, then exited" "$(wstat e "$1")" "failed exited"
	expect_eq "f's workers: failed, then exited" "$(wstat f "$1")" "failed exited"
	for x in a b c d h n x; do expect_eq "$x ran once" "$(wstat "$x" "$1")" exited; done
}

# event_checks DAG_JSON DAG_NAME FROZEN: the event history ($T/events.jsonl)
# against the DAG (DAG_JSON, named DAG_NAME) and what the sim did; FROZEN
# names the pipeline.status check.
event_checks() {
	summarize_events
	check "the event stream is contiguous from seq $((SEQ0 + 1)) (no gap)" jqe --argjson s "$((SEQ0 + 1))" '.gaps == 0 and .first == $s' "$T/check.json"
	check "no task's worker spawned before all its deps' last worker exited with status exited" \
		jqe '.viol == []' "$T/check.json" || jq -c '.viol' "$T/check.json"
	check "no task ran twice without a retry (task.retry or retry by hand) between" \
		jqe '.dbl == []' "$T/check.json" || jq -c '.dbl' "$T/check.json"
	check "spawns per task from the events: a1 b1 c1 d1 e2 f2 g2 h1 n1 x1" jqe --arg p "$P" \
		'[.spawns | to_entries[] | select(.key | startswith($p + "-")) | "\(.key | ltrimstr($p + "-"))\(.value)"] | sort | join(" ") == "a1 b1 c1 d1 e2 f2 g2 h1 n1 x1"' "$T/check.json"
	check "one task.retry event, for f" jqe --arg f "$P-f" '[.retries | to_entries[] | select(.key | startswith("'"$P"'-"))] == [{key: $f, value: 1}]' "$T/check.json"
	check "the DAG from the events equals $2's edges for this track" same_dag "$1"
	PAUSE_SEQ=$(jq -r 'select(.type == "pipeline.status" and .data.to == "paused") | .seq' "$T/events.jsonl" | tail -n1)
	RESUME_SEQ=$(jq -r --argjson p "${PAUSE_SEQ:-0}" 'select(.type == "pipeline.status" and .seq > $p and .data.to == "running") | .seq' "$T/events.jsonl" | head -n1)
	check "events: paused (seq $PAUSE_SEQ) then running (seq $RESUME_SEQ)" test -n "$PAUSE_SEQ" -a -n "$RESUME_SEQ"
	check "events: no worker.spawned between pause and resume" jqe -s --argjson a "${PAUSE_SEQ:-0}" --argjson b "${RESUME_SEQ:-0}" \
		'[.[] | select(.type == "worker.spawned" and .seq > $a and .seq < $b)] == []' "$T/events.jsonl"
	check "events: $3 pipeline.status" jqe -s \
		'([.[] | select(.type == "pipeline.status") | .data.to] | index("frozen")) != null' "$T/events.jsonl"
	check "events: an ELOOP refusal left no dag.dep_added a -> d" jqe -s --arg a "$P-a" \
		'[.[] | select(.type == "dag.dep_added" and .data.task == $a)] == []' "$T/events.jsonl"
	check "events: x was never held" jqe -s --arg x "$P-x" \
		'[.[] | select(.type == "task.status" and .data.task == $x and .data.to == "held")] == []' "$T/events.jsonl"
	check "events: g's worker.exited says killed" jqe -s --argjson w "$WG" \
		'[.[] | select(.type == "worker.exited" and .data.id == $w) | .data.status] == ["killed"]' "$T/events.jsonl"
}

# money_checks FINANCIAL NAME: the cost in FINANCIAL (a financial.json, named
# NAME) against usage.log. Prices are USD per million tokens, taken from it
# as integer micro-dollars per Mtok. A model's cost is its total tokens x
# price, rounded once to the micro-dollar; a model without a price costs 0;
# the total is the sum over models. Sets SCOPE: .total with our own daemon,
# else the track.
money_checks() {
	local fin=$1 want m i o c
	# the prices the sim gave its own daemon (a shared instance's are its own:
	# then what it says it charges)
	local prices=("$fin") filter='.prices'
	[ "$OWN" == 1 ] && prices=("$T/pricing.json") filter='with_entries(select(.key | startswith("_") | not))'
	jq -r "$filter"' | to_entries[] | "\(.key) \((.value.input_per_mtok // 0) * 1000000 | round) \((.value.output_per_mtok // 0) * 1000000 | round) \((.value.cache_read_per_mtok // 0) * 1000000 | round) \((.value.cache_write_per_mtok // 0) * 1000000 | round)"' \
		"${prices[@]}" >"$T/prices.txt"
	# usage.log lines: "WORKER model=M in=N out=N cache_read=N"
	want=$(awk '
		FNR == NR { pin[$1] = $2; pout[$1] = $3; pcr[$1] = $4; next }
		{ split($2, a, "="); m = a[2]; split($3, a, "="); i[m] += a[2]; split($4, a, "="); o[m] += a[2]; split($5, a, "="); c[m] += a[2]; n++ }
		END {
			for (m in i) {
				pico = i[m] * pin[m] + o[m] * pout[m] + c[m] * pcr[m]
				total += int((pico + 500000) / 1000000)
				printf "%s in=%d out=%d cache_read=%d\n", m, i[m], o[m], c[m] > "/dev/stderr"
			}
			printf "%d\n", total
		}' "$T/prices.txt" "$T/usage.log" 2>"$T/usage.sum")
	if [ "$OWN" == 1 ]; then SCOPE=.total; else SCOPE=".tracks[\"$TRACK\"]"; fi
	expect_eq "$2 ${SCOPE#.} cost_usd is the reported usage at the given prices (micro-dollars)" \
		"$(jq "$SCOPE.cost_usd * 1000000 | round" "$fin")" "$want"
	expect_eq "usage reports: one per attempt ($(wc -l <"$T/usage.log") attempts)" \
		"$(jq "$SCOPE.reports" "$fin")" "$(wc -l <"$T/usage.log")"
	while read -r m i o c; do
		expect_eq "model $m: tokens as reported" "$(jq -r --arg m "$m" "$SCOPE.models[\$m] | \"\(.input_tokens) \(.output_tokens) \(.cache_read_tokens)\"" "$fin")" \
			"${i#in=} ${o#out=} ${c#cache_read=}"
	done <"$T/usage.sum"
	check "model m9 has no price: priced false, cost 0" jqe "$SCOPE.models.m9 | .priced == false and (.cost_usd | tonumber) == 0" "$fin"
	expect_eq "the track's cost equals it too" "$(jq ".tracks[\"$TRACK\"].cost_usd * 1000000 | round" "$fin")" "$want"
}

# summary FINANCIAL: the scenario's summary line (WIDS: the track's workers).
summary() {
	printf 'track %s: %s tasks done, %s workers, %s events (seq %s..%s), cost $%s' "$TRACK" \
		"$(echo $ALL | wc -w)" "$(echo $WIDS | wc -w)" "$(wc -l <"$T/events.jsonl")" \
		"$(jq .first "$T/check.json")" "$(jq .last "$T/check.json")" "$(jq -r "$SCOPE.cost_usd" "$1")"
}
