#!/usr/bin/env bash
# test_restart: durability through kill -9 and restart on the same state
# directory: every acknowledged change is there, running workers are
# re-adopted (and, once truly gone, as after a reboot, lost and their tasks
# retried or failed), worker ids and the event seq go on, logs and
# traces survive; a stale mount is cleaned; a corrupt or busy store is a clear
# error with a non-zero exit, never a crash or a silent reset; with --durable,
# writers at once share syncs, fsync works on a control file, and kill -9
# loses nothing acknowledged.
. "$(dirname "$0")/lib.sh"

crash() { # kill -9 the daemon and wait for it to be gone
	kill -KILL "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
}

orchfs_start --max-workers 2

cat >"$T/plan.json" <<'JSON'
{"id":"k","title":"restart","budget_usd":2,"tasks":[
 {"id":"quick","command":"echo quick"},
 {"id":"a","command":"echo a-started; sleep 30","retries":1,"deps":["quick"]},
 {"id":"b","command":"sleep 30","deps":["quick"]},
 {"id":"c","command":"true","deps":["a"]}]}
JSON
check "plan created" ctl_write "$M/mma/tracks/create" "$(cat "$T/plan.json")"
wait_for "a and b run" 5 eval 'status_is "$M/mma/tasks/a/status" running && status_is "$M/mma/tasks/b/status" running'
wa=$(readlink "$M/mma/tasks/a/worker")
wa=${wa##*/}
check "usage reported" write_once "$M/mma/workers/$wa/usage" "model=m1 in=1000 out=200"
check "context injected" write_once "$M/context/inject" "text keep this"
check "hold c" write_once "$M/mma/dag/mutate" "hold c"
wait_for "a logged" 3 grep -q a-started "$M/mma/workers/$wa/log"
# a second and a third track, the first changed after them: the order stays
check "track k2" ctl_write "$M/mma/tracks/create" '{"id":"k2","tasks":[]}'
check "track k3" ctl_write "$M/mma/tracks/create" '{"id":"k3","tasks":[]}'
check "k's budget changed after" write_once "$M/mma/tracks/k/budget" 3
before_order=$(jq -c '[.tracks[].id]' "$M/mma/tracks.json")
expect_eq "tracks in creation order" "$before_order" '["k","k2","k3"]'
# Acknowledged, then killed at once: it must be there after the restart.
check "max_workers 7" write_once "$M/mma/pipeline/max_workers" 7
before_seq=$(jq .seq "$M/state.json")
before_workers=$(jq '.total' "$M/mma/workers.json")
before_money=$(jq -c '.total | {input_tokens, output_tokens, cost_usd}' "$M/metrics/financial.json")
crash

check "stale mount left behind" eval '! ls "$M" >/dev/null 2>&1'
orchfs_restart
check "remounted over the stale mount" mountpoint -q "$M"
expect_eq "tracks in the same order after the restart" "$(jq -c '[.tracks[].id]' "$M/mma/tracks.json")" "$before_order"
expect_eq "max_workers survived" "$(cat "$M/mma/pipeline/max_workers")" 7
expect_eq "c still held" "$(cat "$M/mma/tasks/c/status")" held
expect_eq "quick still done" "$(cat "$M/mma/tasks/quick/status")" done
# the workers outlived the crash: the new daemon adopted them
wb=$(readlink "$M/mma/tasks/b/worker")
expect_eq "a's worker re-adopted, running" "$(cat "$M/mma/workers/$wa/status")" running
expect_eq "b's worker too" "$(cat "$M/mma/workers/${wb##*/}/status")" running
check "a's trace says so" grep -q worker.adopted "$M/mma/workers/$wa/trace"
expect_eq "a still running" "$(cat "$M/mma/tasks/a/status")" running
# Then a crash that takes the workers with it (as a reboot would): their
# end is unknown, they are lost.
pids="$(jq -r .pid "$M/mma/workers/$wa/info.json") $(jq -r .pid "$M/mma/workers/${wb##*/}/info.json")"
crash
pkill -KILL -f -- "--supervise $S/run"
for p in $pids; do kill -KILL -- "-$p"; done
orchfs_restart
expect_eq "a's worker lost" "$(cat "$M/mma/workers/$wa/status")" lost
expect_eq "b's worker lost" "$(cat "$M/mma/workers/${wb##*/}/status")" lost
expect_eq "b had no retry: failed" "$(cat "$M/mma/tasks/b/status")" failed
wait_for "a retried as a new worker" 5 eval '[ "$(readlink "$M/mma/tasks/a/worker")" != "../../workers/$wa" ] && status_is "$M/mma/tasks/a/status" running'
wa2=$(readlink "$M/mma/tasks/a/worker")
check "worker ids go on" test "${wa2##*/}" -gt "$before_workers"
check "seq goes on" test "$(jq .seq "$M/state.json")" -gt "$before_seq"
expect_eq "money survived" "$(jq -c '.total | {input_tokens, output_tokens, cost_usd}' "$M/metrics/financial.json")" "$before_money"
expect_eq "context survived" "$(cat "$M/context/files/text-1")" "keep this"
check "log survived" grep -q a-started "$M/mma/workers/$wa/log"
check "trace has spawned and lost" eval 'grep -q worker.spawned "$M/mma/workers/$wa/trace" && grep -q worker.lost "$M/mma/workers/$wa/trace"'
check "tracks.json intact" jqe '.tracks[0].id == "k"' "$M/mma/tracks.json"

# The store and the logs are the owner's alone (README, "Durability").
modes() { stat -c %a "$S/orchfs.db" "$S/orchfs.db-wal" "$S/logs/$wa.log" "$S/logs" | tr '\n' ' '; }
expect_eq "the store, its WAL, a log and the logs' directory are 0600/0700" "$(modes)" "600 600 600 700 "

# A clean stop then a restart changes nothing either; the modes an older
# orchfs left are put right, with a warning about a state dir others can read.
fusermount3 -u "$M"
poll 5 eval '! kill -0 $DAEMON_PID 2>/dev/null'
chmod 644 "$S/orchfs.db" "$S/orchfs.db-wal" 2>/dev/null
chmod 755 "$S"
log_lines=$(wc -l <"$DAEMON_LOG")
orchfs_restart
expect_eq "the store is 0600 again" "$(stat -c %a "$S/orchfs.db" "$S/orchfs.db-wal" | tr '\n' ' ')" "600 600 "
# with -f the log is stderr: told once, not once before the mount and again in the log
expect_eq "a state dir open to others is warned about, once" \
	"$(tail -n +$((log_lines + 1)) "$DAEMON_LOG" | grep -c "open to others (mode 755)")" 1
chmod 700 "$S"
expect_eq "held after clean restart" "$(cat "$M/mma/tasks/c/status")" held
check "seq still there" test "$(jq .seq "$M/state.json")" -gt "$before_seq"

# A second daemon on the same state directory is refused.
mkdir -p "$T/mnt2"
out=$("$ORCHFS" -f --http off --ws off --state-dir "$S" "$T/mnt2" 2>&1)
rc=$?
check "second daemon on the state dir refused (rc=$rc)" test "$rc" -ne 0
check "and says why" grep -q "in use" <<<"$out"
check "no mount left by it" eval '! mountpoint -q "$T/mnt2"'

# A corrupt store: a clear error, a non-zero exit, and the file left alone.
fusermount3 -u "$M"
poll 5 eval '! kill -0 $DAEMON_PID 2>/dev/null'
rm -f "$S/orchfs.db-wal" "$S/orchfs.db-shm"
head -c 65536 /dev/urandom >"$S/orchfs.db"
sum=$(sha256sum <"$S/orchfs.db")
out=$("$ORCHFS" -f --http off --ws off --state-dir "$S" "$M" 2>&1)
rc=$?
check "corrupt store refused (rc=$rc)" test "$rc" -ne 0 -a "$rc" -lt 128
check "and says corrupt" grep -qi "corrupt\|not a database" <<<"$out"
expect_eq "corrupt file untouched" "$(sha256sum <"$S/orchfs.db")" "$sum"
check "not mounted" eval '! mountpoint -q "$M"'

# kill -9 in the middle of a burst (hundreds of spawns, the notifier busy on
# the mount): the daemon must die at once, never wedge its own mount, and the
# next start must find every acknowledged change.
S=$T/state2
M=$T/mnt3
mkdir -p "$S" "$M"
orchfs_restart --max-workers 8
# sleep 0.05 a task: the burst lasts about 2 s, and the crash comes in it;
# retries 1: an attempt the crash loses runs again, so the track can finish done
python3 -c 'import json
print(json.dumps({"id": "burst", "tasks": [{"id": "b%d" % i, "command": "sleep 0.05", "retries": 1} for i in range(300)]}))' >"$T/burst.json"
check "a 300-task plan is created" eval 'cat "$T/burst.json" >"$M/mma/tracks/create"'
poll 3 eval '[ "$(jq .total "$M/mma/workers.json")" -ge 20 ]'
running=$(jq -c '[.workers[] | select(.status == "running") | .id]' "$M/mma/workers.json")
undone=$(jq '[.tasks[] | select(.status != "done")] | length' "$M/state.json")
crash
check "the crash came mid-burst ($undone of 300 tasks not done)" test "$undone" -gt 0
check "the killed daemon is gone" eval '! kill -0 $DAEMON_PID 2>/dev/null'
timeout 3 stat -f "$M" >/dev/null 2>&1
rc=$?
check "its mount is stale, not wedged (statfs fails at once: rc $rc, not 124)" test "$rc" -ne 0 -a "$rc" -ne 124
orchfs_restart --max-workers 8
expect_eq "the 300 tasks are all there after the crash" "$(jq '.tasks | length' "$M/state.json")" 300
check "no worker running at the crash is running after it ($running)" \
	jqe --argjson ids "$running" '[.workers[] | select(.id as $i | $ids | index($i)) | select(.status == "running")] | length == 0' \
	"$M/mma/workers.json"
wait_for "the track finishes done after the restart" 30 status_is "$M/mma/tracks/burst/status" done

# --durable: write(2) returns once a change is in the journal, close(2) and
# fsync(2) once it is on the disk, so that writers at once share a sync.
S=$T/state3
M=$T/mnt4
mkdir -p "$S" "$M"
orchfs_restart --durable
syncs() { jq .store.syncs "$M/system/telemetry.json"; }
syncs_before=$(syncs)
expect_eq "--durable: 200 writes from 8 writers at once, none refused" \
	"$(writes_at_once "$M/mma/pipeline/max_workers" 8 25)" 0
synced=$(($(syncs) - syncs_before))
check "... made durable by fewer syncs than writes ($synced)" test "$synced" -gt 0 -a "$synced" -lt 200
check "fsync(2) on a control file's descriptor" python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, b"5\n")
os.fsync(fd)
os.close(fd)' "$M/mma/pipeline/max_workers"
last_seq=$(jq .seq "$M/state.json")
crash
orchfs_restart --durable
expect_eq "--durable: the last write survived kill -9" "$(cat "$M/mma/pipeline/max_workers")" 5
check "... and the seq went on from where it was seen" test "$(jq .seq "$M/state.json")" -gt "$last_seq"

finish
