#!/bin/sh
# ask: an example worker that asks for input on stdin and waits for it.
#   echo yes > $ORCHFS_MOUNT/mma/workers/ID/stdin
echo "proceed with the deploy? (write an answer to mma/workers/$ORCHFS_WORKER_ID/stdin)"
read -r answer
echo "got answer: $answer"
[ "$answer" = yes ]
