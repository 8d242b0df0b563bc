# proc_state.sh: proc_state PID, for the integration tests' lib.sh and the
# simulations' sim/lib.sh, which both source it: the process's one-letter
# state (R, S, T ...); one in a frozen cgroup (a freeze with workers in
# cgroups) reads T, as a stopped one does.
#   . tests/proc_state.sh; proc_state "$pid"
# shellcheck shell=bash
CGROUP2=$(awk '/ - cgroup2 / { print $5; exit }' /proc/self/mountinfo)
proc_state() {
	local s cg
	s=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null)
	cg=$(sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null)
	if [ -n "$s" ] && [ -n "$cg" ] && grep -qx 'frozen 1' "$CGROUP2$cg/cgroup.events" 2>/dev/null; then
		s=T
	fi
	echo "$s"
}
