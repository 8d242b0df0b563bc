#!/bin/sh
# demo: mounts orchfs (default ~/orchfs) and loads the demo plan, so there is
# something to look at. Run it from the top of the source tree after building.
#   contrib/demo.sh            # then: cat ~/orchfs/mma/pipeline/status
#   fusermount3 -u ~/orchfs    # stops it
set -eu
cd "$(dirname "$0")/.."
MNT=${ORCHFS_MOUNT:-$HOME/orchfs}
BIN=${ORCHFS:-build/fs/orchfs}
mkdir -p "$MNT"
if mountpoint -q "$MNT"; then
	echo "demo: $MNT is already mounted; unmount it first: fusermount3 -u $MNT" >&2
	exit 1
fi
"$BIN" --pricing contrib/pricing.json "$MNT"
i=0
until [ -r "$MNT/mma/pipeline/status" ]; do
	i=$((i + 1))
	[ "$i" -lt 50 ] || { echo "demo: orchfs did not come up on $MNT" >&2; exit 1; }
	sleep 0.1
done
rm -f /tmp/orchfs-demo-flaky
if [ -e "$MNT/mma/tracks/demo" ]; then
	echo "demo: the demo track is already loaded (same state directory)"
else
	cat contrib/demo-plan.json > "$MNT/mma/tracks/create"
fi
cat <<MSG
orchfs is mounted on $MNT with the demo plan running. Try:
  cat $MNT/mma/pipeline/status
  jq -c '.workers[] | {id, task, status}' $MNT/mma/workers.json
  cat $MNT/mma/tasks/*/status
  jq .total $MNT/metrics/financial.json
  echo freeze > $MNT/mma/pipeline/pause; echo > $MNT/mma/pipeline/resume
Stop it with: fusermount3 -u $MNT
MSG
