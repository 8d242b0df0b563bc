#!/bin/sh
# fake-agent: an example worker that behaves like an agent without calling one.
# It reads its prompt material, writes to its log, thinks for a while and
# reports token usage for itself: through the files of the mount when
# ORCHFS_MOUNT is set, else over HTTP with ORCHFS_URL and its own
# ORCHFS_TOKEN (a worker on a machine without the mount).
#   fake-agent.sh STEP SECONDS MODEL IN_TOKENS OUT_TOKENS
set -eu
step=${1:-step} secs=${2:-1} model=${3:-demo-small} in=${4:-1000} out=${5:-200}
me="mma/workers/$ORCHFS_WORKER_ID"
# read PATH: a file of orchfs; report PATH TEXT: a write to one
if [ -n "${ORCHFS_MOUNT:-}" ]; then
	read_file() { cat "$ORCHFS_MOUNT/$1"; }
	report() { echo "$2" > "$ORCHFS_MOUNT/$1"; }
else
	read_file() { curl -sf -H "Authorization: Bearer $ORCHFS_TOKEN" "$ORCHFS_URL/api/$1"; }
	report() {
		curl -sf -o /dev/null -H "Authorization: Bearer $ORCHFS_TOKEN" --data-binary "$2" \
			"$ORCHFS_URL/api/$1"
	}
fi
ctx=$(read_file context/aggregate | wc -c)
echo "[$step] worker $ORCHFS_WORKER_ID of task ${ORCHFS_TASK_ID:-none} in track ${ORCHFS_TRACK:-none}"
echo "[$step] read $ctx bytes of context"
i=0
while [ "$i" -lt "$secs" ]; do
	i=$((i + 1))
	echo "[$step] working ($i/$secs)"
	sleep 1
done
report "$me/usage" "model=$model in=$in out=$out cache_read=$((in / 4))"
echo "[$step] done: reported $in in, $out out on $model"
