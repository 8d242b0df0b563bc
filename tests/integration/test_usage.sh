#!/usr/bin/env bash
# test_usage: usage reports and money. Reports in both forms (line and JSON,
# from the test and from a worker writing its own usage file) add up exactly:
# tokens per worker, per track, per model and in total in
# metrics/financial.json, workers/ID/usage, info.json and tracks.json; every
# cost_usd equals tokens x price computed here in integer micro-dollars. An
# unpriced model costs nothing. Budgets: a track with budget_usd 0.000001
# goes over_budget after a report and its ready task does not start until
# tracks/ID/budget is raised. Bounds: a report too large, or one that would
# take a total past 2^53 micro-dollars, is refused and counts nowhere.
. "$(dirname "$0")/lib.sh"

orchfs_start --max-workers 4
cd "$M" || exit 1

# --- the arithmetic, in integers: micro-dollars ---
# Tokens are summed per (scope, model), then cost = sum over the four kinds
# of tokens x price (micro-dollars per Mtok), / 1e6, rounded half up.
declare -A TOK=()
MODELS=()
add_tokens() { # scope model in out cache_read cache_write
	local s=$1 m=$2
	[[ " ${MODELS[*]} " == *" $m "* ]] || MODELS+=("$m")
	TOK[$s.$m.in]=$((${TOK[$s.$m.in]:-0} + $3))
	TOK[$s.$m.out]=$((${TOK[$s.$m.out]:-0} + $4))
	TOK[$s.$m.cache_read]=$((${TOK[$s.$m.cache_read]:-0} + $5))
	TOK[$s.$m.cache_write]=$((${TOK[$s.$m.cache_write]:-0} + $6))
	TOK[$s.$m.reports]=$((${TOK[$s.$m.reports]:-0} + 1))
}
record() { # worker track model in out cache_read cache_write
	local w=$1 k=$2
	shift 2
	add_tokens "w$w" "$@"
	[ -n "$k" ] && add_tokens "t$k" "$@"
	add_tokens total "$@"
}
model_cost() { # scope model -> micro-dollars
	local s=$1 m=$2 pico=0 kind
	for kind in in out cache_read cache_write; do
		pico=$((pico + ${TOK[$s.$m.$kind]:-0} * ${PRICE_MICRO[$m.$kind]:-0}))
	done
	echo $(((pico + 500000) / 1000000))
}
scope_sum() { # scope field(in|out|cache_read|cache_write|reports|cost)
	local s=$1 f=$2 m sum=0
	for m in "${MODELS[@]}"; do
		if [ "$f" == cost ]; then
			sum=$((sum + $(model_cost "$s" "$m")))
		else
			sum=$((sum + ${TOK[$s.$m.$f]:-0}))
		fi
	done
	echo "$sum"
}
# usage_json_is NAME JSON_DOC SCOPE: the usage object (totals, cost, models)
# equals the expected sums of SCOPE.
usage_json_is() {
	local name=$1 doc=$2 s=$3 got want m
	got=$(jq -r '[.input_tokens, .output_tokens, .cache_read_tokens, .cache_write_tokens, .reports, (.cost_usd * 1000000 | round)] | join(" ")' <<<"$doc")
	want="$(scope_sum "$s" in) $(scope_sum "$s" out) $(scope_sum "$s" cache_read) $(scope_sum "$s" cache_write) $(scope_sum "$s" reports) $(scope_sum "$s" cost)"
	expect_eq "$name: in out cache_read cache_write reports cost(micro-USD)" "$got" "$want"
	for m in "${MODELS[@]}"; do
		[ -n "${TOK[$s.$m.reports]:-}" ] || continue
		got=$(jq -r --arg m "$m" '.models[$m] | [.input_tokens, .output_tokens, .cache_read_tokens, .cache_write_tokens, .reports, (.cost_usd * 1000000 | round)] | join(" ")' <<<"$doc")
		want="${TOK[$s.$m.in]} ${TOK[$s.$m.out]} ${TOK[$s.$m.cache_read]} ${TOK[$s.$m.cache_write]} ${TOK[$s.$m.reports]} $(model_cost "$s" "$m")"
		expect_eq "$name: model $m" "$got" "$want"
	done
}

# --- workers to report for ---
ctl_write mma/tracks/create '{"id":"money","tasks":[
  {"id":"u1","command":"sleep 30","model":"m1"},
  {"id":"u2","command":"sleep 30"},
  {"id":"u3","command":"printf \"model=m2 in=1234 out=567\\n\" > \"$ORCHFS_MOUNT/mma/workers/$ORCHFS_WORKER_ID/usage\" && echo reported"}]}'
check "track money created" jqe '.id == "money"' <<<"$RESULT"
wait_for "u1 and u2 run" 5 eval 'status_is mma/tasks/u1/status running && status_is mma/tasks/u2/status running'
wa=$(jq -r '.worker' mma/tasks/u1/info.json)
wb=$(jq -r '.worker' mma/tasks/u2/info.json)
wc=$(spawn 'sleep 30')
check "a hand-spawned worker to report for" test -n "$wc"

# --- reports, both forms ---
ctl_write "mma/workers/$wa/usage" 'model=m1 in=1200 out=300 cache_read=1000 cache_write=50'
check "a line-form report succeeds" test $? -eq 0
record "$wa" money m1 1200 300 1000 50
usage_json_is "the report reads back the worker's totals" "$RESULT" "w$wa"
ctl_write "mma/workers/$wa/usage" '{"model":"m1","input_tokens":800,"output_tokens":700,"cache_read_tokens":20,"cache_write_tokens":0}'
check "a JSON report succeeds" test $? -eq 0
record "$wa" money m1 800 700 20 0
write_once "mma/workers/$wa/usage" 'model=m2 in=1000 out=10'
record "$wa" money m2 1000 10 0 0
write_once "mma/workers/$wb/usage" '{"model":"m1","input_tokens":333,"output_tokens":77}'
record "$wb" money m1 333 77 0 0
write_once "mma/workers/$wb/usage" 'model=unpriced in=500 out=500'
record "$wb" money unpriced 500 500 0 0
write_once "mma/workers/$wc/usage" $'model=m2 in=1234 out=567 cache_read=0\n'
record "$wc" "" m2 1234 567 0 0
wait_for "u3 reported its own usage and is done" 5 status_is mma/tasks/u3/status done
wd=$(jq -r '.worker' mma/tasks/u3/info.json)
record "$wd" money m2 1234 567 0 0

# --- per worker ---
for w in "$wa" "$wb" "$wc" "$wd"; do
	usage_json_is "workers/$w/usage" "$(cat "mma/workers/$w/usage")" "w$w"
	usage_json_is "workers/$w/info.json usage" "$(jq '.usage' "mma/workers/$w/info.json")" "w$w"
	usage_json_is "financial.json workers[$w]" "$(jq --arg w "$w" '.workers[$w]' metrics/financial.json)" "w$w"
done
check "an unpriced model is marked and costs nothing" \
	jqe '.models.unpriced.priced == false and .models.unpriced.cost_usd == 0 and .models.m1.priced == true' "mma/workers/$wb/usage"
check "u1's task info.json sums its worker's usage" \
	jqe --argjson c "$(scope_sum "w$wa" cost)" '(.usage.cost_usd * 1000000 | round) == $c' mma/tasks/u1/info.json

# --- per track and in total ---
usage_json_is "financial.json tracks.money" "$(jq '.tracks.money' metrics/financial.json)" tmoney
usage_json_is "tracks/money/info.json usage" "$(jq '.usage' mma/tracks/money/info.json)" tmoney
expect_eq "tracks.json cost_usd of money" "$(jq '.tracks[] | select(.id == "money") | (.cost_usd * 1000000 | round)' mma/tracks.json)" "$(scope_sum tmoney cost)"
usage_json_is "financial.json total" "$(jq '.total' metrics/financial.json)" total
usage_json_is "state.json metrics.total" "$(jq '.metrics.total' state.json)" total
expect_eq "the hand-spawned worker is in no track's usage" \
	"$(jq '[.tracks[] | .reports] | add' metrics/financial.json)" "$(scope_sum tmoney reports)"
check "financial.json lists the prices" jqe '.prices.m1.input_per_mtok == 3 and .prices.m2.output_per_mtok == 4' metrics/financial.json
check "financial.json is in USD" jqe '.currency == "USD"' metrics/financial.json
echo "expected micro-USD: total $(scope_sum total cost), track money $(scope_sum tmoney cost), workers $wa:$(scope_sum "w$wa" cost) $wb:$(scope_sum "w$wb" cost) $wc:$(scope_sum "w$wc" cost) $wd:$(scope_sum "w$wd" cost)"

# --- budgets ---
ctl_write mma/tracks/create '{"id":"capped","budget_usd":0.000001,"tasks":[
  {"id":"spender","command":"printf \"model=m1 in=1 out=1\\n\" > \"$ORCHFS_MOUNT/mma/workers/$ORCHFS_WORKER_ID/usage\" && echo spent"},
  {"id":"after","command":"echo after-ran","deps":["spender"]},
  {"id":"later","command":"echo later-ran","deps":["spender"],"priority":3}]}'
check "track capped created with a budget" jqe '.budget_usd == 0.000001' <<<"$RESULT"
check "tracks/capped/budget reads 0.000001" awk '{ exit !($1 == 0.000001) }' mma/tracks/capped/budget
wait_for "the spender is done" 5 status_is mma/tasks/spender/status done
wait_for "a report past the budget makes the track over_budget" 3 status_is mma/tracks/capped/status over_budget
check "financial.json shows the track over budget" \
	jqe '.tracks.capped.status == "over_budget" and (.tracks.capped.cost_usd * 1000000 | round) == 18' metrics/financial.json
expect_eq "its dependent is ready" "$(cat mma/tasks/after/status)" ready
sleep 1
expect_eq "an over-budget track's ready tasks do not start" \
	"$(jq '.workers | length' mma/tasks/after/info.json) $(jq '.workers | length' mma/tasks/later/info.json)" "0 0"
ctl_write mma/tracks/capped/budget 1
check "raising the budget succeeds" test $? -eq 0
check "the budget write reads back the track" jqe '.id == "capped" and .budget_usd == 1 and .status != "over_budget"' <<<"$RESULT"
check "tracks/capped/budget reads 1" awk '{ exit !($1 == 1) }' mma/tracks/capped/budget
wait_for "with the budget raised its tasks run" 5 eval 'status_is mma/tasks/after/status done && status_is mma/tasks/later/status done'
wait_for "and the track is done" 3 status_is mma/tracks/capped/status done

# --- bounds: nothing wraps (README, "Bounds") ---
# what a refused report must leave as it was (the running worker's runtime_s
# moves with the clock)
snapshot() { cat metrics/financial.json mma/tracks.json; jq -c 'del(.workers[].runtime_s)' mma/workers.json; }
wb_=$(spawn 'sleep 30')
before=$(snapshot)
expect_errno "a report over 10^12 tokens of a kind is refused" EINVAL "mma/workers/$wb_/usage" \
	"model=m1 in=1000000000001 out=0"
expect_errno "so is one in JSON" EINVAL "mma/workers/$wb_/usage" \
	'{"model":"m1","input_tokens":1e13,"output_tokens":0}'
expect_eq "the refused ones changed nothing" "$(snapshot)" "$before"
ctl_write "mma/workers/$wb_/usage" "model=gold in=90000000000 out=0" || echo "the report failed: $RESULT"
expect_eq "a report costing 9e9 USD is taken, exactly" \
	"$(jq -r '.cost_usd | tostring' "mma/workers/$wb_/usage")" 9000000000
mid=$(snapshot)
expect_errno "one that would take the cost past 2^53 micro-dollars is refused" EOVERFLOW \
	"mma/workers/$wb_/usage" "model=gold in=100000000 out=0"
check "its message says which total" grep -q "cost past" <<<"$(last_error_message)"
expect_eq "and counts nowhere" "$(snapshot)" "$mid"
check "money is never negative" jqe '[.. | .cost_usd? // empty | . >= 0] | all' metrics/financial.json
kill_one() { printf '%s\n' "$1" >mma/workers/kill; }
kill_one "$wb_"

finish
