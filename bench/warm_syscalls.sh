#!/bin/bash
# warm_syscalls.sh BUILD [PROTO] [USERS] [LOGINS] - system calls per warm
# plain login, exact: gatehouse (2 workers, lookup = gh-fastmail,
# memcached) first logs in every one of USERS distinct users (default 10000)
# once, untraced (the cold pass), then `strace -f -c` attached to all its
# threads counts LOGINS (default 2000) more logins of the same users (8
# clients). PROTO is imap (default) or pop3. Loopback only; prints calls per
# login. Used for bench/RESULTS.md (issue 17); needs strace and memcached.
set -u
B=$(cd "${1:?usage: warm_syscalls.sh BUILD [imap|pop3] [USERS] [LOGINS]}" && pwd)
PR=${2:-imap}; U=${3:-10000}; N=${4:-2000}
D=$(mktemp -d /tmp/gh-warmsc-XXXXXX)
P=$((20000 + RANDOM % 12000)); IM=$((P+1)); PP=$((P+2)); LK=$((P+3)); HT=$((P+4)); MC=$((P+5)); GI=$((P+6))
"$B/gh-fastmail" --imap $IM --pop3 $PP --lookup $LK --http $HT --msg-size 1024 >"$D/fm.log" 2>&1 & FMP=$!
MU=(); [ "$(id -u)" = 0 ] && MU=(-u nobody)
memcached "${MU[@]}" -l 127.0.0.1 -p $MC -U 0 -m 64 & MCP=$!
cat >"$D/g.conf" <<EOC
workers = 2;
log_level = "warn";
error_log = "$D/err.log";
audit_log = "$D/audit.log";
listen = ( { address = "127.0.0.1:$GI"; protocol = "$PR"; starttls = "off"; } );
pop3 = { backend_pipelining = true; };  # as bench.py runs it
lookup = { servers = [ "http://127.0.0.1:$LK/auth" ]; timeout = 5.0; };
cache = { memcached = [ "127.0.0.1:$MC" ]; ttl = 3600; };
EOC
sleep 0.5
"$B/gatehouse" -c "$D/g.conf" & GP=$!
sleep 1.5
"$B/gh-loadgen" $PR-login --port $GI -c 8 -d 60 --user bench@example.com --pass bench-secret \
	--users "$U" --count "$U" >"$D/cold.json"

strace -f -c -o "$D/strace.txt" -p $GP & SP=$!
sleep 1
"$B/gh-loadgen" $PR-login --port $GI -c 8 -d 60 --user bench@example.com --pass bench-secret \
	--users "$U" --count "$N" >"$D/lg.json"
sleep 0.3
kill -INT $SP; wait $SP
kill $GP $FMP $MCP; wait 2>/dev/null
grep -o '"ops":[0-9]*\|"errors":[0-9]*' "$D/lg.json" | head -2 | tr '\n' ' '; echo
awk -v n="$N" '$NF=="total" {printf "total %.2f\n", $4/n}
	NR>2 && $NF!="total" && $4 ~ /^[0-9]+$/ && $4/n >= 0.02 {printf "%s %.2f\n", $NF, $4/n}' \
	"$D/strace.txt" | sort -k2 -nr
[ -n "${KEEP:-}" ] && echo "$D" || rm -rf "$D"
