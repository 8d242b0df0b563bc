#!/usr/bin/env bash
# slurm_lifecycle: the track lifecycle simulation (track_lifecycle.sh: a
# 9-task plan with a diamond, usage through the mount, mutations mid-flight,
# freeze, pause, a kill, retries, the events against the DAG, the money to
# the micro-dollar) with every task a Slurm job, on a single-node test
# cluster of its own (tests/slurm/cluster.sh: root, Debian's slurmctld,
# slurmd, slurm-client and munge). The freeze is checked as Slurm's
# SUSPENDED; everything else as for local workers.
#
#   sim/slurm_lifecycle.sh
#
# Skips without Slurm or root, except under CI=true, where that fails. The
# cluster is stopped and its directory removed at exit.
set -u
SIM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster=$SIM_DIR/../tests/slurm/cluster.sh
no() {
	if [ "${CI:-}" == true ]; then
		echo "FAIL: slurm_lifecycle: $*" >&2
		exit 1
	fi
	echo "SKIP: slurm_lifecycle: $*" >&2
	exit 77
}
command -v sbatch >/dev/null && command -v slurmctld >/dev/null || no "Slurm is not installed"
[ "$(id -u)" -eq 0 ] || no "a test cluster needs root"
dir=$(mktemp -d /tmp/orchfs-slurmsim.XXXXXX)
# slots for the sim's gated and long tasks at once; ports of its own
export SLURM_TEST_CPUS=8 SLURM_TEST_CTLD_PORT=18817 SLURM_TEST_SLURMD_PORT=18818
trap '"$cluster" stop "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT
"$cluster" start "$dir" >/dev/null || { echo "FAIL: slurm_lifecycle: the test cluster did not start" >&2; exit 1; }
. "$dir/env"
export SLURM_CONF
SIM_RUNNER=slurm SIM_TIMEOUT=${SIM_TIMEOUT:-200} "$SIM_DIR/track_lifecycle.sh"
