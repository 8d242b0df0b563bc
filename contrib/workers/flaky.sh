#!/bin/sh
# flaky: an example worker that fails on its first attempt and succeeds on the
# next, to show retries. It remembers attempts in a file named after its task.
#   flaky.sh STATE_FILE
set -eu
mark=${1:-/tmp/orchfs-flaky-$ORCHFS_TASK_ID}
if [ ! -e "$mark" ]; then
	: > "$mark"
	echo "first attempt: failing on purpose" >&2
	exit 1
fi
rm -f "$mark"
echo "second attempt: fine"
