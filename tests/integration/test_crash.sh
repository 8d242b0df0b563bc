#!/usr/bin/env bash
# test_crash: kill -9 at random moments under load, ROUNDS times, each restart
# on the same state directory. The load: a plan running, usage reports to one
# worker through the mount and over HTTP, and hand spawns. After it all:
# every acknowledged usage report is counted exactly once (none lost, none
# twice: the count is at least the acknowledged and at most the attempted),
# worker ids and the event seq only ever went up, SQLite's integrity_check is
# ok, and each restart healed the stale mount the crash left.
. "$(dirname "$0")/lib.sh"

ROUNDS=${CRASH_ROUNDS:-10}
orchfs_start_api --max-workers 4
cd / || exit 1
ARGS=(--http "${HTTP#http://}" --ws "${WSURL#ws://}" --max-workers 4)

restart_same() {
	(cd "$T/work" && exec "$ORCHFS" -f --state-dir "$S" --pricing "$T/pricing.json" \
		--kill-grace 1 "${ARGS[@]}" "$M") >>"$DAEMON_LOG" 2>&1 </dev/null &
	DAEMON_PID=$!
	_DAEMONS+=("$DAEMON_PID")
	_MOUNTS+=("$M")
	echo "$DAEMON_PID" >>"$_WATCHDOG_PIDS"
	poll 5 eval 'cat "$M/mma/pipeline/status" >/dev/null 2>&1 && curl -sf -o /dev/null -H "$AUTH" "$HTTP/api/mma/pipeline/status"'
}

# the worker every report goes to: one that has ended, so nothing else moves its usage
w=$(spawn true)
wait_for "worker $w exits" 5 status_is "$M/mma/workers/$w/status" exited

# loaders: each appends a line to its file for every acknowledged report (and
# to .try before trying), until the mount or the API goes away
mount_reports() {
	while :; do
		echo >>"$T/mount.try"
		printf 'model=m1 in=1 out=0\n' >"$M/mma/workers/$w/usage" 2>/dev/null || return 0
		echo >>"$T/mount.ack"
	done
}
http_reports() {
	while :; do
		echo >>"$T/http.try"
		[ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "$AUTH" \
			--data-binary 'model=m1 in=1 out=0' "$HTTP/api/mma/workers/$w/usage")" == 200 ] || return 0
		echo >>"$T/http.ack"
	done
}
spawns() {
	while echo true >"$M/mma/workers/spawn" 2>/dev/null; do :; done
}
count() { [ -f "$1" ] && wc -l <"$1" || echo 0; }

: >"$T/mount.ack"
: >"$T/http.ack"
last_seq=$(jq .seq "$M/state.json") last_worker=$(jq .total "$M/mma/workers.json")
healed=0 ids_up=0 seq_up=0
for ((round = 1; round <= ROUNDS; round++)); do
	ctl_write "$M/mma/tracks/create" "{\"id\":\"r$round\",\"tasks\":[$(
		for i in $(seq 40); do printf '%s{"id":"r%d-%d","command":"sleep 0.0%d"}' "$([ "$i" -gt 1 ] && echo ,)" "$round" "$i" "$((i % 10))"; done)]}"
	mount_reports & p1=$!
	http_reports & p2=$!
	spawns & p3=$!
	sleep "0.$((RANDOM % 8 + 2))"
	kill -KILL "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	wait "$p1" "$p2"
	kill "$p3" 2>/dev/null
	wait "$p3" 2>/dev/null
	restart_same
	mountpoint -q "$M" && cat "$M/mma/pipeline/status" >/dev/null 2>&1 && healed=$((healed + 1))
	seq=$(jq .seq "$M/state.json") workers=$(jq .total "$M/mma/workers.json")
	[ "$seq" -gt "$last_seq" ] && seq_up=$((seq_up + 1))
	[ "$workers" -ge "$last_worker" ] && ids_up=$((ids_up + 1))
	last_seq=$seq last_worker=$workers
done
expect_eq "each of $ROUNDS restarts healed the stale mount" "$healed" "$ROUNDS"
expect_eq "the seq went up across every crash" "$seq_up" "$ROUNDS"
expect_eq "worker ids never went back" "$ids_up" "$ROUNDS"

acked=$(($(count "$T/mount.ack") + $(count "$T/http.ack")))
tried=$(($(count "$T/mount.try") + $(count "$T/http.try")))
counted=$(jq --arg w "$w" '.workers[$w].reports' "$M/metrics/financial.json")
echo "usage reports: $acked acknowledged, $counted counted, $tried tried"
check "every acknowledged report is counted ($counted >= $acked)" test "$counted" -ge "$acked"
check "none twice ($counted <= $tried tried)" test "$counted" -le "$tried"
expect_eq "the tokens match the reports, one each" "$(jq --arg w "$w" '.workers[$w].input_tokens' "$M/metrics/financial.json")" "$counted"
check "some reports were acknowledged on each transport" test "$(count "$T/mount.ack")" -gt 0 -a "$(count "$T/http.ack")" -gt 0

fusermount3 -u "$M"
poll 10 eval '! kill -0 $DAEMON_PID 2>/dev/null'
expect_eq "SQLite's integrity_check" "$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0])' "$S/orchfs.db")" ok

finish
