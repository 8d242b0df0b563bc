#!/usr/bin/env bash
# test_isolation: each worker in a cgroup of its own (README, "Workers"): a
# kill reaches a process the worker double-forked out of its process group with
# setsid, a freeze stops it too, what a worker leaves running when it ends
# goes with it, its CPU time is counted, and a restart after kill -9 adopts
# the workers the crash left, in their cgroups. Then the same daemon with --isolation
# process-group, where setsid does escape, as state.json says.
. "$(dirname "$0")/lib.sh"

orchfs_start --max-workers 4
cd "$M" || exit 1
[ "$(jq -r .pipeline.isolation state.json)" == cgroup ] ||
	_skip_or_fail "no writable cgroup v2 here (state.json says $(jq -c .pipeline state.json))"
pass "state.json says workers run in cgroups"

# alive PID: there, and not a zombie waiting for init to reap it
alive() { local s; s=$(proc_state "$1"); [ -n "$s" ] && [ "$s" != Z ]; }
gone() { ! alive "$1"; }
# escapee NAME: a worker whose grandchild leaves its process group (setsid)
# and its parent (a double fork: init's child now) and writes a line to
# $T/NAME.ticks every 50 ms; prints the worker's id once the grandchild's pid
# is in $T/NAME.pid
escapee() {
	local w
	w=$(spawn "(setsid sh -c 'echo \$\$ > $T/$1.pid; while :; do echo x >> $T/$1.ticks; sleep 0.05; done' &); exec sleep 300")
	poll 5 test -s "$T/$1.pid" || return 1
	echo "$w"
}
ticks() { wc -l <"$T/$1.ticks"; }

# --- a kill reaches the setsid child ---
w=$(escapee k)
pid=$(cat "$T/k.pid")
cg=$(jq -r .cgroup "mma/workers/$w/info.json")
check "a running worker names its cgroup, which holds its processes" grep -qx "$pid" "$cg/cgroup.procs"
echo "$w" >mma/workers/kill
wait_for "the kill reaches the worker's setsid child" 5 gone "$pid"
wait_for "worker $w is killed" 5 status_is "mma/workers/$w/status" killed
expect_eq "an ended worker has no cgroup" "$(jq -r .cgroup "mma/workers/$w/info.json")" null
wait_for "its cgroup is removed" 5 test ! -e "$cg"

# --- a freeze stops the setsid child, a resume lets it go on ---
w=$(escapee f)
poll 5 test -s "$T/f.ticks"
echo freeze >mma/pipeline/pause
sleep 0.3
before=$(ticks f)
sleep 0.5
expect_eq "frozen: the setsid child writes nothing" "$(ticks f)" "$before"
echo >mma/pipeline/resume
wait_for "resumed: it writes again" 5 eval '[ "$(ticks f)" -gt '"$before"' ]'
pid=$(cat "$T/f.pid")
echo "$w" >mma/workers/kill
wait_for "killed while it runs, its child goes too" 5 gone "$pid"

# --- what a worker leaves running goes with it; its CPU time is counted ---
w=$(spawn "sleep 300 & echo \$! > $T/left.pid; i=0; while [ \$i -lt 300000 ]; do i=\$((i+1)); done")
wait_for "the busy worker exits" 30 status_is "mma/workers/$w/status" exited
wait_for "the process it left running is killed" 5 gone "$(cat "$T/left.pid")"
check "its CPU time is in info.json ($(jq .cpu_s "mma/workers/$w/info.json") s)" \
	jqe '.cpu_s > 0.05' "mma/workers/$w/info.json"
# its peak memory, where the memory controller is there to enable
probe=$(spawn 'exec sleep 300')
orchfs_cg=$(dirname "$(jq -r .cgroup "mma/workers/$probe/info.json")")
echo "$probe" >mma/workers/kill
if grep -qw memory "$orchfs_cg/cgroup.controllers"; then
	check "memory controller: the peak is counted" jqe '.memory_peak_bytes > 0' "mma/workers/$w/info.json"
else
	check "no memory controller ($(cat "$orchfs_cg/cgroup.controllers")): no peak" \
		jqe '.memory_peak_bytes == null' "mma/workers/$w/info.json"
fi

# --- kill -9 of the daemon: the restart adopts the worker, cgroup and all ---
w=$(escapee c)
pid=$(cat "$T/c.pid")
cg=$(jq -r .cgroup "mma/workers/$w/info.json")
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
check "after kill -9 the worker's child still runs" alive "$pid"
cd / || exit 1
orchfs_restart
cd "$M" || exit 1
expect_eq "the restart adopted worker $w" "$(cat "mma/workers/$w/status")" running
expect_eq "in the same cgroup" "$(jq -r .cgroup "mma/workers/$w/info.json")" "$cg"
check "which still holds the child" grep -qx "$pid" "$cg/cgroup.procs"
echo "$w" >mma/workers/kill
wait_for "a kill after the restart reaches the child" 5 gone "$pid"
wait_for "and the worker is killed" 5 status_is "mma/workers/$w/status" killed

# --- process groups: setsid escapes ---
cd / || exit 1
fusermount3 -u "$M"
daemon_wait_exit "$DAEMON_PID" 10
orchfs_restart --isolation process-group
cd "$M" || exit 1
expect_eq "--isolation process-group: state.json says so" \
	"$(jq -r .pipeline.isolation state.json)" process-group
w=$(escapee p)
pid=$(cat "$T/p.pid")
expect_eq "no cgroup is named" "$(jq -r .cgroup "mma/workers/$w/info.json")" null
echo "$w" >mma/workers/kill
wait_for "worker $w is killed" 5 status_is "mma/workers/$w/status" killed
check "a process group does not hold a setsid child: it still runs" alive "$pid"
kill "$pid"

# --- a bad --isolation is refused ---
out=$("$ORCHFS" -f --isolation sometimes --state-dir "$T/other" "$T/work" 2>&1)
rc=$?
expect_eq "--isolation sometimes: exit 2" "$rc" 2
check "with a message naming the choices" grep -q "auto, cgroup or process-group" <<<"$out"

finish
