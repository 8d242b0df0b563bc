#!/usr/bin/env bash
# test_context: context/ as a user drives it: inject a file (absolute path,
# `as NAME`, a relative path resolved against the writer's cwd, JSON), text
# (line and JSON forms), a skeleton of a small C file (lists its functions;
# the skeleton cache hits on the second inject), context/state.json fields
# (bytes, sha256, kind, source, status), files/NAME, the aggregate with its
# headings, stale after the source changes, missing after it is deleted,
# remove, and refusals (a path inside the mount, an unknown entry).
. "$(dirname "$0")/lib.sh"

orchfs_start --max-workers 2
cd "$M" || exit 1

entry() { jq -c --arg n "$1" '.entries[] | select(.name == $n)' context/state.json; }
entry_is() { [ "$(entry "$1" | jq -r "$2")" == "$3" ]; }
listed() { ls -1 context/files | grep -qxF -- "$1"; }

mkdir -p "$T/src"
printf 'hello context\n' >"$T/src/hello.txt"
cat >"$T/src/lib.c" <<'EOF'
#include <stdio.h>

struct point {
	int x, y;
};

static int helper_twice(int a)
{
	return a * 2;
}

int add_numbers(int a, int b)
{
	return helper_twice(a) + b;
}
EOF

# --- a file by absolute path ---
ctl_write context/inject "$T/src/hello.txt"
check "inject PATH succeeds" test $? -eq 0
check "inject reads back the entry" jqe '.name == "hello.txt" and .kind == "file"' <<<"$RESULT"
check "files/ lists hello.txt" listed hello.txt
expect_eq "files/hello.txt is the file's content" "$(cat context/files/hello.txt)" "hello context"
sha=$(sha256sum "$T/src/hello.txt" | cut -d' ' -f1)
check "state.json: kind, source, bytes, sha256, status" \
	jqe --arg src "$T/src/hello.txt" --arg sha "$sha" \
	'.entries[0] | .kind == "file" and .source == $src and .bytes == 14 and .sha256 == $sha and .status == "fresh"' context/state.json
check "state.json: token_estimate and mtime" jqe '.entries[0] | (.token_estimate | . > 0) and (.mtime | type == "string")' context/state.json

# --- as NAME ---
ctl_write context/inject "$T/src/hello.txt as greeting"
check "inject PATH as NAME names the entry" jqe '.name == "greeting"' <<<"$RESULT"
expect_eq "files/greeting" "$(cat context/files/greeting)" "hello context"

# --- a relative path, resolved against the writer's cwd ---
(cd "$T/src" && write_once "$M/context/inject" "hello.txt as rel")
check "inject of a relative path succeeds" test $? -eq 0
check "the relative path is resolved against the writer's cwd" entry_is rel .source "$T/src/hello.txt"
(cd "$T" && write_once "$M/context/inject" "./src/../src/hello.txt as rel2")
check "a relative path with . and .. is resolved" entry_is rel2 .source "$T/src/hello.txt"

# --- text ---
ctl_write context/inject "text be brief and kind"
check "inject text TEXT succeeds" jqe '.kind == "text"' <<<"$RESULT"
tname=$(jq -r '.name' <<<"$RESULT")
check "the text entry got a name" test -n "$tname" -a "$tname" != null
expect_eq "files/<text entry> is the text" "$(cat "context/files/$tname")" "be brief and kind"
ctl_write context/inject '{"text":"line one\nline two","name":"style"}'
check "JSON text with a name" jqe '.name == "style" and .kind == "text"' <<<"$RESULT"
expect_eq "files/style has both lines" "$(cat context/files/style)" $'line one\nline two'
check "a text entry is fresh" entry_is style .status fresh

# --- skeleton of a C file ---
ctl_write context/inject "skeleton $T/src/lib.c as skel"
check "inject skeleton PATH as NAME succeeds" jqe '.name == "skel" and .kind == "skeleton"' <<<"$RESULT"
check "the skeleton lists add_numbers" grep -q add_numbers context/files/skel
check "the skeleton lists helper_twice" grep -q helper_twice context/files/skel
check "the skeleton lists struct point" grep -q point context/files/skel
check "the skeleton is not the whole file" eval '! grep -q "return a \* 2" context/files/skel'
misses=$(jq '.skeleton_cache.misses' context/state.json)
hits=$(jq '.skeleton_cache.hits' context/state.json)
check "the first skeleton was a cache miss" test "$misses" -ge 1
ctl_write context/inject "{\"path\":\"$T/src/lib.c\",\"kind\":\"skeleton\",\"name\":\"skel2\"}"
check "JSON skeleton inject" jqe '.name == "skel2" and .kind == "skeleton"' <<<"$RESULT"
check "the same unchanged file hits the skeleton cache" jqe --argjson h "$hits" '.skeleton_cache.hits > $h' context/state.json
expect_eq "both skeletons are the same" "$(cat context/files/skel2)" "$(cat context/files/skel)"

# --- the aggregate ---
for n in hello.txt greeting rel "$tname" style skel; do
	check "the aggregate has a heading for $n" grep -q "^# $n\b" context/aggregate
done
check "the aggregate holds the content" grep -qx 'hello context' context/aggregate
check "the aggregate holds the skeleton" grep -q add_numbers context/aggregate
n=$(jq '.entries | length' context/state.json)
check "aggregation totals count every entry and byte" \
	jqe --argjson n "$n" '.aggregate.entries == $n and .aggregate.bytes == ([.entries[].bytes] | add)' context/state.json

# --- stale after modification, fresh again after a re-inject ---
printf 'hello context, changed\n' >"$T/src/hello.txt"
check "a modified source is stale" entry_is hello.txt .status stale
check "every entry of that source is stale" entry_is greeting .status stale
expect_eq "its content is still what was injected" "$(cat context/files/hello.txt)" "hello context"
touch -d '2001-01-01' "$T/src/lib.c"
check "a touched but identical source is still fresh" entry_is skel .status fresh
ctl_write context/inject "$T/src/hello.txt"
check "re-inject of a changed file is fresh" entry_is hello.txt .status fresh
expect_eq "re-inject replaces the content" "$(cat context/files/hello.txt)" "hello context, changed"

# --- missing after deletion ---
rm "$T/src/lib.c"
check "a deleted source is missing" entry_is skel .status missing
check "a missing entry still has its content" grep -q add_numbers context/files/skel

# --- remove ---
ctl_write context/remove greeting
check "remove NAME succeeds" test $? -eq 0
check "remove reads back the name" grep -q greeting <<<"$RESULT"
check "files/greeting is gone" test ! -e context/files/greeting
check "state.json no longer lists it" eval '[ -z "$(entry greeting)" ]'
check "the aggregate no longer has it" eval '! grep -q "^# greeting\b" context/aggregate'
check "other entries stay" listed hello.txt

# --- refusals ---
expect_errno "remove of an entry that is gone" ENOENT context/remove greeting
expect_errno "inject of a path inside the mount" EINVAL context/inject "$M/README"
expect_errno "inject of a deleted file" ENOENT context/inject "$T/src/lib.c"
expect_errno "inject of a directory" EINVAL context/inject "$T/src"
expect_errno "inject with a bad kind" EINVAL context/inject '{"path":"/etc/hostname","kind":"movie"}'
expect_eq "refusals left the entries as they were" \
	"$(jq -c '[.entries[].name]' context/state.json)" "[\"hello.txt\",\"rel\",\"rel2\",\"$tname\",\"style\",\"skel\",\"skel2\"]"

finish
