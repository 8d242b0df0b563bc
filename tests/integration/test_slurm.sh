#!/usr/bin/env bash
# test_slurm: tasks on a real single-node Slurm cluster (tests/slurm/cluster.sh)
# beside local ones in one DAG (README, "Slurm"): a job's log, exit code, job
# id and name (in squeue), and the usage it reports through the mount; a
# retry and a held task; a job's own token over HTTP (its usage, nothing
# else); a job pending behind another shows `pending` and Slurm's reason; a
# kill is scancel, a freeze scontrol suspend (SUSPENDED in squeue); a restart
# of orchfs re-adopts a job still known to Slurm, and one its cluster forgot
# is lost; --runner slurm sends tasks without a runner and hand spawns there;
# bad "slurm" options are refused; a Slurm worker has no stdin. Needs root
# and the packages slurmctld, slurmd, slurm-client and munge (.ci/run
# installs them); elsewhere it skips, never under CI.
# a cluster's start and its jobs' turns take longer than a mount's test
ORCHFS_TEST_TIMEOUT=170
. "$(dirname "$0")/lib.sh"

command -v sbatch >/dev/null && command -v slurmctld >/dev/null ||
	_skip_or_fail "Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)"
[ "$(id -u)" -eq 0 ] || _skip_or_fail "a test cluster needs root"

CLUSTER=$(cd "$(dirname "$0")/../slurm" && pwd)/cluster.sh
SLURM_DIR=$(mktemp -d /tmp/orchfs-slurm.XXXXXX)
_TMPDIRS+=("$SLURM_DIR")
# ports of this test's own: another cluster may be up on the defaults
export SLURM_TEST_CTLD_PORT=${SLURM_TEST_CTLD_PORT:-16817} SLURM_TEST_SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-16818}
stop_cluster() { "$CLUSTER" stop "$SLURM_DIR" >/dev/null 2>&1; }
trap 'stop_cluster; _cleanup' EXIT
"$CLUSTER" start "$SLURM_DIR" >/dev/null || _fail_now "the test cluster did not start"
. "$SLURM_DIR/env"
export SLURM_CONF
ncpu=$(nproc)

orchfs_start_api --max-workers 4 --slurm-poll-ms 200
cd "$M" || exit 1

jid() { jq -r .slurm.job_id "mma/workers/$1/info.json"; }
worker_of() { local w; w=$(readlink "mma/tasks/$1/worker") && echo "${w##*/}"; }
task_done() { status_is "mma/tasks/$1/status" done; }

# --- one DAG, local and Slurm tasks ---
check "a mixed plan is accepted" ctl_write mma/tracks/create '{"id":"mix","tasks":[
 {"id":"prep","command":"echo local-prep"},
 {"id":"job","runner":"slurm","slurm":{"time":"5","cpus":1},"deps":["prep"],
  "command":"echo on-slurm job=$SLURM_JOB_ID worker=$ORCHFS_WORKER_ID task=$ORCHFS_TASK_ID; echo model=m1 in=1000 out=100 > $ORCHFS_MOUNT/mma/workers/$ORCHFS_WORKER_ID/usage"},
 {"id":"after","command":"echo after","deps":["job"]}]}'
expect_eq "the task names its runner" "$(jq -r .runner mma/tasks/job/info.json)" slurm
expect_eq "and its sbatch options" "$(jq -c .slurm mma/tasks/job/info.json)" '["--time=5","--cpus-per-task=1"]'
wait_for "the DAG went through Slurm and back" 30 task_done after
w=$(worker_of job)
expect_eq "the Slurm worker says so" "$(jq -r .runner "mma/workers/$w/info.json")" slurm
check "with its job id" jqe '.slurm.job_id | test("^[0-9]+$")' "mma/workers/$w/info.json"
check "its log is the job's output" grep -qx "on-slurm job=$(jid "$w") worker=$w task=job" "mma/workers/$w/log"
expect_eq "exit code 0" "$(jq .exit_code "mma/workers/$w/info.json")" 0
check "its spawn event names the job" grep -q "\"job_id\":\"$(jid "$w")\"" "mma/workers/$w/trace"
check "the job's name names track, task and worker" grep -q "orchfs-mix-job-w$w" <<<"$(scontrol show job -o "$(jid "$w")")"
expect_eq "the job reported its usage through the mount" \
	"$(jq -c '.usage | {input_tokens, output_tokens}' "mma/workers/$w/info.json")" \
	'{"input_tokens":1000,"output_tokens":100}'
check "which the track's money counts" jqe '.usage.cost_usd > 0' mma/tracks/mix/info.json
check "state.json has its job id" jqe --arg j "$(jid "$w")" '[.workers[] | select(.slurm.job_id == $j)] | length == 1' state.json
expect_eq "the local task is local" "$(jq -r .runner "mma/workers/$(worker_of prep)/info.json")" local

# --- a failing job: its exit code ---
check "a failing job" ctl_write mma/dag/mutate \
	'{"op":"add_task","track":"mix","task":{"id":"bad","runner":"slurm","command":"echo failing; exit 3"}}'
wait_for "it failed" 30 status_is mma/tasks/bad/status failed
expect_eq "with exit code 3" "$(jq .exit_code "mma/workers/$(worker_of bad)/info.json")" 3

# --- a retry, and a held task ---
check "a flaky job (fails once) and a held one" ctl_write mma/dag/mutate \
	"[{\"op\":\"add_task\",\"track\":\"mix\",\"task\":{\"id\":\"flaky\",\"runner\":\"slurm\",\"retries\":1,
	   \"command\":\"[ -e $T/flaky.mark ] || { touch $T/flaky.mark; exit 1; }; echo second\"}},
	  {\"op\":\"add_task\",\"track\":\"mix\",\"task\":{\"id\":\"later\",\"runner\":\"slurm\",\"command\":\"echo later\"}},
	  {\"op\":\"hold\",\"task\":\"later\"}]"
wait_for "the flaky task is done on its retry" 30 task_done flaky
expect_eq "two attempts, the first failed" \
	"$(jq -c '[.workers[] | {status, exit_code}]' mma/tasks/flaky/info.json)" \
	'[{"status":"failed","exit_code":1},{"status":"exited","exit_code":0}]'
expect_eq "the held task is not submitted" "$(cat mma/tasks/later/status) $(jq '.workers | length' mma/tasks/later/info.json)" "held 0"
echo "release later" >mma/dag/mutate
wait_for "released, it runs on Slurm" 30 task_done later

# --- a Slurm job's own token, over HTTP: its usage yes, anything else no ---
cat >"$T/token.sh" <<'SH'
h="Authorization: Bearer $ORCHFS_TOKEN"
code() { curl -s -o /dev/null -w '%{http_code}' -H "$h" "$@"; }
echo "own=$(code --data-binary 'model=m2 in=10 out=1' "$ORCHFS_URL/api/mma/workers/$ORCHFS_WORKER_ID/usage")"
echo "other=$(code --data-binary 'model=m2 in=10 out=1' "$ORCHFS_URL/api/mma/workers/1/usage")"
echo "control=$(code --data-binary freeze "$ORCHFS_URL/api/mma/pipeline/pause")"
echo "read=$(code "$ORCHFS_URL/api/mma/pipeline/status")"
SH
check "a job that uses its token" ctl_write mma/dag/mutate \
	"{\"op\":\"add_task\",\"track\":\"mix\",\"task\":{\"id\":\"tok\",\"runner\":\"slurm\",\"command\":\"sh $T/token.sh\"}}"
wait_for "it ran" 30 task_done tok
tw=$(worker_of tok)
expect_eq "its own usage: 200, another's and a control file: 403, a read: 200" \
	"$(tr '\n' ' ' <"mma/workers/$tw/log")" "own=200 other=403 control=403 read=200 "
expect_eq "its report counted" "$(jq .usage.input_tokens "mma/workers/$tw/info.json")" 10
expect_eq "worker 1 got nothing" "$(jq .usage.input_tokens mma/workers/1/info.json)" 0
expect_eq "the pipeline still runs" "$(cat mma/pipeline/status)" running

# --- pending behind another job, Slurm's reason; kill; freeze ---
check "two jobs that each take every CPU" ctl_write mma/dag/mutate \
	"[{\"op\":\"add_task\",\"track\":\"mix\",\"task\":{\"id\":\"hog\",\"slurm\":{\"cpus\":$ncpu},\"command\":\"echo hogging; exec sleep 120\"}},
	  {\"op\":\"add_task\",\"track\":\"mix\",\"task\":{\"id\":\"queued\",\"slurm\":{\"cpus\":$ncpu},\"command\":\"echo finally\"}}]"
wait_for "the hog runs" 30 eval 'w=$(worker_of hog) && jqe ".slurm.state == \"RUNNING\"" mma/workers/$w/info.json'
hog=$(worker_of hog)
check "squeue shows it by its name" grep -qx "orchfs-mix-hog-w$hog" <<<"$(squeue -h -o %j)"
wait_for "the other waits in Slurm's queue, with its reason" 10 eval \
	'q=$(worker_of queued) && jqe ".slurm.state == \"PENDING\" and (.slurm.reason | length > 0)" mma/workers/$q/info.json'
queued=$(worker_of queued)
log "  pending: $(jq -c .slurm "mma/workers/$queued/info.json")"
expect_eq "its status says pending" "$(cat "mma/workers/$queued/status")" pending
expect_eq "the hog's says running" "$(cat "mma/workers/$hog/status")" running
check "the queue state is an event" grep -q worker.runner_state "mma/workers/$queued/trace"
# freeze: scontrol suspend, the job's processes stopped
echo freeze >mma/pipeline/pause
wait_for "frozen: the hog's job is suspended" 10 jqe '.slurm.state == "SUSPENDED"' "mma/workers/$hog/info.json"
expect_eq "as squeue says" "$(squeue -h -j "$(jid "$hog")" -o %T)" SUSPENDED
sleep_pid=$(pgrep -f "^sleep 120$" | head -1)
# the stop reaches the process a moment after Slurm says SUSPENDED
wait_for "and its process stopped (T)" 5 eval 'test "$(proc_state "$sleep_pid")" = T'
echo >mma/pipeline/resume
wait_for "resumed" 10 jqe '.slurm.state == "RUNNING"' "mma/workers/$hog/info.json"
echo "$hog" >mma/workers/kill
wait_for "a kill is scancel: the hog is killed" 20 status_is "mma/workers/$hog/status" killed
wait_for "so the queued job ran" 30 task_done queued
check "its output" grep -qx finally "mma/workers/$queued/log"

# --- stdin is not a Slurm worker's ---
check "a long job" ctl_write mma/dag/mutate \
	'{"op":"add_task","track":"mix","task":{"id":"long","runner":"slurm","command":"sleep 3; echo survived"}}'
wait_for "it runs" 30 eval 'l=$(worker_of long) && jqe ".slurm.state == \"RUNNING\"" mma/workers/$l/info.json'
long=$(worker_of long)
expect_errno "a Slurm worker has no stdin" ENOTSUP "mma/workers/$long/stdin" "hello"

# --- a restart re-adopts the job ---
cd / || exit 1
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
orchfs_restart --slurm-poll-ms 200 --runner slurm
cd "$M" || exit 1
expect_eq "the job was adopted" "$(cat "mma/workers/$long/status")" running
wait_for "and its end is seen" 30 status_is "mma/workers/$long/status" exited
check "its output" grep -qx survived "mma/workers/$long/log"

# --- --runner slurm: tasks without a runner, and hand spawns, go to Slurm ---
h=$(spawn 'echo by-hand')
expect_eq "a hand spawn is a Slurm job" "$(jq -r .runner "mma/workers/$h/info.json")" slurm
wait_for "and ends" 30 status_is "mma/workers/$h/status" exited
check "a plan without runners" ctl_write mma/tracks/create \
	'{"id":"def","tasks":[{"id":"d1","command":"true"},{"id":"d2","command":"true","runner":"local"}]}'
wait_for "both done" 30 eval 'task_done d1 && task_done d2'
expect_eq "d1 went to Slurm" "$(jq -r .runner "mma/workers/$(worker_of d1)/info.json")" slurm
expect_eq "d2 stayed local" "$(jq -r .runner "mma/workers/$(worker_of d2)/info.json")" local

# --- a job its cluster forgot (a controller that lost its state): lost ---
check "a job that will be forgotten" ctl_write mma/dag/mutate \
	'{"op":"add_task","track":"mix","task":{"id":"gone","runner":"slurm","command":"exec sleep 60"}}'
wait_for "it runs" 30 eval 'g=$(worker_of gone) && jqe ".slurm.state == \"RUNNING\"" mma/workers/$g/info.json'
gone=$(worker_of gone)
cd / || exit 1
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
stop_cluster
SLURM_DIR=$(mktemp -d /tmp/orchfs-slurm.XXXXXX)
_TMPDIRS+=("$SLURM_DIR")
"$CLUSTER" start "$SLURM_DIR" >/dev/null || _fail_now "the second test cluster did not start"
. "$SLURM_DIR/env"
orchfs_restart --slurm-poll-ms 200
cd "$M" || exit 1
wait_for "the job neither squeue, scontrol nor accounting knows is lost" 15 \
	status_is "mma/workers/$gone/status" lost
expect_eq "its task failed" "$(cat mma/tasks/gone/status)" failed

# --- bad options change nothing ---
expect_errno "an unknown slurm option" EINVAL mma/dag/mutate \
	'{"op":"add_task","track":"mix","task":{"id":"x","command":"true","slurm":{"nodes":2}}}'
expect_errno "an extra that would take orchfs's output" EINVAL mma/dag/mutate \
	'{"op":"add_task","track":"mix","task":{"id":"x","command":"true","slurm":{"extra":["--output=/tmp/x"]}}}'
check "says why" grep -q "orchfs sets it itself" <<<"$(last_error_message)"
expect_errno "a partition with a space" EINVAL mma/dag/mutate \
	'{"op":"add_task","track":"mix","task":{"id":"x","command":"true","slurm":{"partition":"a b"}}}'
expect_errno "slurm options on a local task" EINVAL mma/dag/mutate \
	'{"op":"add_task","track":"mix","task":{"id":"x","command":"true","runner":"local","slurm":{"cpus":1}}}'
expect_errno "an unknown runner" EINVAL mma/tracks/create '{"id":"y","runner":"k8s","tasks":[]}'
check "no task x was made" test ! -e mma/tasks/x

finish
