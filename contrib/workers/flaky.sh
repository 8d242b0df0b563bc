#!/bin/sh
# flaky: an example worker that fails on its first attempt and succeeds on the
# next, to show retries. It remembers attempts in a file named after its user,
# track and task (contrib/demo.sh removes the demo's before it starts).
#   flaky.sh [STATE_FILE]
set -eu
mark=${1:-${TMPDIR:-/tmp}/orchfs-flaky-$(id -u)-${ORCHFS_TRACK:-none}-${ORCHFS_TASK_ID:-none}}
if [ ! -e "$mark" ]; then
	: > "$mark"
	echo "first attempt: failing on purpose" >&2
	exit 1
fi
rm -f "$mark"
echo "second attempt: fine"
