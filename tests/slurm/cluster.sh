#!/bin/bash
# Start/stop a throw-away single-node Slurm cluster on this machine, for the
# Slurm runner's tests. Everything Slurm writes (config, pid files, logs,
# spool, controller state, job completion log) lives under DIR. munged uses
# the system socket /run/munge/munge.socket.2: it is started (as user munge,
# its log and pid in DIR/munge, or in /run/munge/slurm-test when user munge
# cannot reach DIR) only if no munged answers there, and is stopped again
# only if this script started it. A new key is made only if
# /etc/munge/munge.key is missing.
#
# Reusing a DIR recovers the jobs saved in DIR/state (that is how a
# slurmctld restart keeps its jobs); use a fresh DIR for a clean cluster.
#
# Needs the Debian packages slurmctld, slurmd, slurm-client and munge
# (or slurm-wlm + munge); installs nothing. Must run as root.
#
# Usage:
#   eval "$(tests/slurm/cluster.sh start /tmp/slurm-test)"  # prints export SLURM_CONF=...
#   . /tmp/slurm-test/env                                  # same line, saved
#   sbatch --parsable --wrap 'echo hi'
#   tests/slurm/cluster.sh status /tmp/slurm-test
#   tests/slurm/cluster.sh stop /tmp/slurm-test
#
# Optional environment for `start`:
#   SLURM_TEST_CPUS          CPUs to advertise (default: nproc). More than nproc
#                            lets more 1-CPU jobs run at once (config_overrides).
#   SLURM_TEST_CTLD_PORT     slurmctld port (default 6817)
#   SLURM_TEST_SLURMD_PORT   slurmd port (default 6818)
#
# Exit codes: 0 ok, 1 failure (logs tail printed to stderr), 2 missing
# packages or bad usage.
set -euo pipefail

export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"
MUNGE_SOCKET=/run/munge/munge.socket.2
MUNGE_KEY=/etc/munge/munge.key
READY_TIMEOUT=60

log() { echo "cluster.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	echo "usage: $0 start|stop|status DIR" >&2
	exit 2
}

[ $# -eq 2 ] || usage
CMD=$1
DIR_ARG=$2
[ -n "$DIR_ARG" ] || usage

# --- helpers -----------------------------------------------------------------

# pid_alive PIDFILE COMM: true if the pid in PIDFILE runs a process named COMM.
pid_alive() {
	local pidfile=$1 comm=$2 pid
	[ -s "$pidfile" ] || return 1
	pid=$(tr -dc '0-9' <"$pidfile")
	[ -n "$pid" ] || return 1
	running "$pid" || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}

# running PID: exists and is not a zombie.
running() {
	local st
	st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

pid_of() { tr -dc '0-9' <"$1"; }

munge_ok() {
	[ -S "$MUNGE_SOCKET" ] || return 1
	timeout 5 munge -n -S "$MUNGE_SOCKET" 2>/dev/null |
		timeout 5 unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1
}

# All descendants of a pid, each parent before its children.
descendants() {
	local p=$1 c
	for c in $(ps -e -o pid=,ppid= | awk -v p="$p" '$2 == p { print $1 }'); do
		echo "$c"
		descendants "$c"
	done
}

# stop_pid PIDFILE COMM SECONDS: TERM, wait, then KILL. Bounded.
stop_pid() {
	local pidfile=$1 comm=$2 secs=$3 pid i
	if ! pid_alive "$pidfile" "$comm"; then
		rm -f "$pidfile"
		return 0
	fi
	pid=$(pid_of "$pidfile")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < secs * 10; i++)); do
		running "$pid" || break
		sleep 0.1
	done
	if running "$pid"; then
		log "$comm (pid $pid) did not stop in ${secs}s, sending KILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 30; i++)); do
			running "$pid" || break
			sleep 0.1
		done
	fi
	rm -f "$pidfile"
}

# slurmstepd processes started by this DIR's slurmd: they keep slurmd's log
# (DIR/log/slurmd.log) open and sit in DIR/log.
our_stepds() {
	local p f
	for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
		for f in "/proc/$p/cwd" "/proc/$p"/fd/*; do
			case "$(readlink "$f" 2>/dev/null || true)" in
			"$DIR"/*)
				echo "$p"
				break
				;;
			esac
		done
	done
}

show_logs() {
	local f
	for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" "$DIR/munge/munged.log"; do
		[ -r "$f" ] || continue
		log "---- last lines of $f"
		tail -n 25 "$f" >&2 || true
	done
}

check_tools() {
	local missing="" t
	for t in slurmctld slurmd munged munge unmunge sbatch squeue sinfo scontrol scancel; do
		command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
	done
	if [ -n "$missing" ]; then
		log "error: missing programs:$missing"
		log "install them with: apt-get install -y slurmctld slurmd slurm-client munge"
		exit 2
	fi
	if [ "$(id -u)" -ne 0 ]; then
		log "error: must run as root"
		exit 2
	fi
}

# --- munge ---------------------------------------------------------------------

start_munge() {
	local state="$DIR/munge.state" i mdir
	if munge_ok; then
		# Ours from an earlier start with this DIR, or somebody else's.
		local pf
		pf=$(cat "$DIR/munge.pidfile.path" 2>/dev/null || true)
		if [ "$(cat "$state" 2>/dev/null || true)" != started ] ||
			[ -z "$pf" ] || ! pid_alive "$pf" munged; then
			echo preexisting >"$state"
		fi
		return 0
	fi

	if [ ! -s "$MUNGE_KEY" ]; then
		log "creating munge key $MUNGE_KEY"
		install -d -o munge -g munge -m 0700 "$(dirname "$MUNGE_KEY")"
		if command -v mungekey >/dev/null 2>&1; then
			mungekey --create --keyfile="$MUNGE_KEY" --force
		else
			dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 2>/dev/null
		fi
	fi
	# munged (run as munge) insists on these owners/modes.
	chown munge:munge "$MUNGE_KEY"
	chmod 0600 "$MUNGE_KEY"
	install -d -o munge -g munge -m 0755 /run/munge

	# munged's own files go under DIR if user munge can reach DIR, otherwise
	# under /run/munge (e.g. DIR inside a mode-0700 directory such as mktemp -d).
	mdir="$DIR/munge"
	install -d -o munge -g munge -m 0700 "$mdir"
	if ! runuser -u munge -- test -w "$mdir" 2>/dev/null; then
		mdir=/run/munge/slurm-test
		install -d -o munge -g munge -m 0700 "$mdir"
	fi
	rm -f "$mdir/munged.log" "$mdir/munged.pid"
	echo "$mdir/munged.pid" >"$DIR/munge.pidfile.path"
	echo started >"$DIR/munge.state"
	log "starting munged"
	if ! runuser -u munge -- munged --force \
		--socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
		--log-file="$mdir/munged.log" --pid-file="$mdir/munged.pid" \
		--seed-file="$mdir/munged.seed" >&2; then
		[ "$mdir" = "$DIR/munge" ] || cp "$mdir/munged.log" "$DIR/munge/" 2>/dev/null || true
		show_logs
		die "munged failed to start"
	fi
	for ((i = 0; i < 50; i++)); do
		munge_ok && return 0
		sleep 0.1
	done
	show_logs
	die "munged started but does not answer on $MUNGE_SOCKET"
}

stop_munge() {
	local state="$DIR/munge.state" pidfile
	[ "$(cat "$state" 2>/dev/null || true)" = started ] || { rm -f "$state"; return 0; }
	pidfile=$(cat "$DIR/munge.pidfile.path" 2>/dev/null || true)
	if [ -n "$pidfile" ]; then
		stop_pid "$pidfile" munged 10
	fi
	rm -f "$state" "$DIR/munge.pidfile.path"
}

# --- slurm ---------------------------------------------------------------------

write_conf() {
	local host=$1 cpus=$2 mem=$3 ctld_port=$4 slurmd_port=$5 extra=""
	if [ "$cpus" -gt "$(nproc)" ]; then
		extra="SlurmdParameters=config_overrides"
	fi
	cat >"$DIR/slurm.conf.new" <<EOF
# Generated by tests/slurm/cluster.sh: single-node test cluster, tuned for
# fast tests. Not for production use.
ClusterName=orchfs-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd, cgroup v1 and v2 both mounted: stay away from cgroups.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# sacct cannot work without slurmdbd; a flat completion log is kept instead.
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2,sched_min_interval=0,batch_sched_delay=0
# Fast tests.
MessageTimeout=5
TCPTimeout=2
KillWait=2
InactiveLimit=0
MinJobAge=300
Waittime=0
OverTimeLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
ReturnToService=2
JobRequeue=0
PropagateResourceLimits=NONE
$extra
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
	mv -f "$DIR/slurm.conf.new" "$DIR/slurm.conf"
}

ctld_alive() { pid_alive "$DIR/run/slurmctld.pid" slurmctld; }
slurmd_alive() { pid_alive "$DIR/run/slurmd.pid" slurmd; }

# wait_ready HOST PROBE: wait until slurmctld answers and the node is up;
# if PROBE is 1 and no other job is queued, also until a trivial job completes.
wait_ready() {
	local host=$1 probe=$2 deadline=$((SECONDS + READY_TIMEOUT)) st jid="" js
	while :; do
		((SECONDS < deadline)) || { log "timed out waiting for the node"; return 1; }
		ctld_alive || { log "slurmctld died"; return 1; }
		slurmd_alive || { log "slurmd died"; return 1; }
		st=$(timeout 10 sinfo -h -n "$host" -o '%T' 2>/dev/null | head -n1 || true)
		case "$st" in
		idle | mixed | allocated | completing) break ;;
		down* | drain* | fail*)
			# e.g. left over from an unclean previous run with the same state.
			timeout 10 scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
			;;
		esac
		sleep 0.2
	done
	[ "$probe" = 1 ] || return 0
	# A busy cluster (restart with queued jobs) is proof enough.
	[ -z "$(timeout 10 squeue -h -o '%i' 2>/dev/null || true)" ] || return 0
	while :; do
		if ((SECONDS >= deadline)); then
			log "timed out waiting for the test job ${jid}"
			[ -z "$jid" ] || timeout 5 scancel "$jid" >/dev/null 2>&1 || true
			return 1
		fi
		if [ -z "$jid" ]; then
			jid=$(timeout 10 sbatch --parsable --job-name=cluster-sh-probe \
				--output=/dev/null --error=/dev/null --chdir=/ --wrap true 2>/dev/null || true)
			jid=${jid%%;*}
			[ -n "$jid" ] || { sleep 0.5; continue; }
		fi
		js=$(timeout 10 scontrol show job -o "$jid" 2>/dev/null |
			sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' || true)
		case "$js" in
		COMPLETED) return 0 ;;
		FAILED | CANCELLED | TIMEOUT | NODE_FAIL | BOOT_FAIL | OUT_OF_MEMORY | DEADLINE)
			log "test job $jid ended $js"
			return 1
			;;
		esac
		sleep 0.2
	done
}

do_start() {
	check_tools
	mkdir -p "$DIR_ARG"
	DIR=$(cd "$DIR_ARG" && pwd -P)
	export SLURM_CONF="$DIR/slurm.conf"
	local host cpus mem memtotal ctld_port slurmd_port
	host=$(hostname -s)
	[ -n "$host" ] || die "hostname -s gives nothing"
	cpus=${SLURM_TEST_CPUS:-$(nproc)}
	memtotal=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
	mem=1024
	if [ "$memtotal" -lt 2048 ]; then mem=$((memtotal / 2)); fi
	ctld_port=${SLURM_TEST_CTLD_PORT:-6817}
	slurmd_port=${SLURM_TEST_SLURMD_PORT:-6818}

	local probe=0
	if ctld_alive && slurmd_alive && [ -f "$SLURM_CONF" ] && munge_ok; then
		log "already running in $DIR"
	else
		probe=1
		mkdir -p "$DIR/state" "$DIR/spool" "$DIR/run" "$DIR/log"
		chmod 0755 "$DIR"
		start_munge
		if ! ctld_alive || ! slurmd_alive; then
			# (Re)write the config only while the daemons are down.
			ctld_alive || write_conf "$host" "$cpus" "$mem" "$ctld_port" "$slurmd_port"
			[ -f "$SLURM_CONF" ] || write_conf "$host" "$cpus" "$mem" "$ctld_port" "$slurmd_port"
		fi
		if ! ctld_alive; then
			rm -f "$DIR/run/slurmctld.pid"
			log "starting slurmctld"
			slurmctld -f "$SLURM_CONF" >>"$DIR/log/slurmctld.stderr" 2>&1 ||
				{ show_logs; die "slurmctld failed to start"; }
		fi
		if ! slurmd_alive; then
			rm -f "$DIR/run/slurmd.pid"
			log "starting slurmd"
			slurmd -f "$SLURM_CONF" >>"$DIR/log/slurmd.stderr" 2>&1 ||
				{ show_logs; die "slurmd failed to start"; }
		fi
		# The daemons write their pid files just after forking.
		local i
		for ((i = 0; i < 50; i++)); do
			ctld_alive && slurmd_alive && break
			sleep 0.1
		done
	fi
	if ! wait_ready "$host" "$probe"; then
		show_logs
		die "cluster in $DIR did not become ready (run '$0 stop $DIR' to clean up)"
	fi
	echo "export SLURM_CONF=$SLURM_CONF" >"$DIR/env"
	log "ready in ${SECONDS}s (node $host, $cpus CPUs)"
	echo "export SLURM_CONF=$SLURM_CONF"
}

do_stop() {
	if [ ! -d "$DIR_ARG" ]; then
		log "nothing to stop in $DIR_ARG"
		return 0
	fi
	DIR=$(cd "$DIR_ARG" && pwd -P)
	export SLURM_CONF="$DIR/slurm.conf"
	local p i jobs

	# Cancel jobs first so that slurmd's step daemons end their processes.
	if ctld_alive && [ -f "$SLURM_CONF" ]; then
		jobs=$(timeout 5 squeue -h -o '%i' 2>/dev/null | tr '\n' ' ' || true)
		if [ -n "${jobs// /}" ]; then
			# shellcheck disable=SC2086
			timeout 5 scancel $jobs >/dev/null 2>&1 || true
			for ((i = 0; i < 50; i++)); do
				[ -z "$(our_stepds)" ] && break
				sleep 0.2
			done
		fi
	fi
	stop_pid "$DIR/run/slurmd.pid" slurmd 10
	stop_pid "$DIR/run/slurmctld.pid" slurmctld 10

	# Anything still left from this cluster's jobs: kill the job processes
	# and their step daemons.
	for p in $(our_stepds); do
		for i in $(descendants "$p") "$p"; do
			kill -KILL "$i" 2>/dev/null || true
		done
	done

	stop_munge
	rm -f "$DIR/env"
	log "stopped ($DIR)"
}

do_status() {
	DIR=$(cd "$DIR_ARG" 2>/dev/null && pwd -P) || { echo "stopped"; return 3; }
	if ctld_alive && slurmd_alive; then
		echo "running slurmctld=$(pid_of "$DIR/run/slurmctld.pid") slurmd=$(pid_of "$DIR/run/slurmd.pid") munge=$(cat "$DIR/munge.state" 2>/dev/null || echo unknown)"
		return 0
	fi
	if ctld_alive || slurmd_alive; then
		echo "partial"
		return 1
	fi
	echo "stopped"
	return 3
}

case "$CMD" in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) usage ;;
esac
