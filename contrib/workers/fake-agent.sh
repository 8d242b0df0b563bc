#!/bin/sh
# fake-agent: an example worker that behaves like an agent without calling one.
# It reads its prompt material from the mount, writes to its log, thinks for a
# while and reports token usage for itself, all through the files of the mount.
#   fake-agent.sh STEP SECONDS MODEL IN_TOKENS OUT_TOKENS
set -eu
step=${1:-step} secs=${2:-1} model=${3:-demo-small} in=${4:-1000} out=${5:-200}
me="$ORCHFS_MOUNT/mma/workers/$ORCHFS_WORKER_ID"
ctx=$(wc -c < "$ORCHFS_MOUNT/context/aggregate")
echo "[$step] worker $ORCHFS_WORKER_ID of task ${ORCHFS_TASK_ID:-none} in track ${ORCHFS_TRACK:-none}"
echo "[$step] read $ctx bytes of context"
i=0
while [ "$i" -lt "$secs" ]; do
	i=$((i + 1))
	echo "[$step] working ($i/$secs)"
	sleep 1
done
echo "model=$model in=$in out=$out cache_read=$((in / 4))" > "$me/usage"
echo "[$step] done: reported $in in, $out out on $model"
