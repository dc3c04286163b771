#!/bin/bash
# handshake_cpu.sh BUILD [ROUNDS] [SECS] - proxy CPU per full TLS 1.3
# handshake on an implicit-TLS IMAP port, gatehouse against nginx's mail
# module, same machine, same certificates, one worker each, back to back.
# The client is `openssl s_time -new` (a full handshake per connection, no
# resumption, closed right after; both proxies write their greeting in one
# TLS record). CPU is `perf stat -e task-clock` on the gatehouse process (all
# threads) and on the nginx worker over the s_time run, divided by the
# handshakes s_time counted. Prints one line per proxy, certificate and
# round, then the medians and the ratio. Loopback only; needs perf, nginx and
# libnginx-mod-mail. Used for bench/RESULTS.md (issue 17, TLS login cost).
set -u
. "$(dirname "$0")/handshake_common.sh"
B=$(cd "${1:?usage: handshake_cpu.sh BUILD [ROUNDS] [SECS]}" && pwd)
R=${2:-3}; S=${3:-3}
MOD=/usr/lib/nginx/modules/ngx_mail_module.so
for t in perf nginx openssl; do
	command -v $t >/dev/null || { echo "handshake_cpu.sh: $t is not installed" >&2; exit 2; }
done
[ -f $MOD ] || { echo "handshake_cpu.sh: $MOD missing (libnginx-mod-mail)" >&2; exit 2; }
D=$(mktemp -d /tmp/gh-hscpu-XXXXXX)
P=$((20000 + RANDOM % 12000)); GE=$P; GR=$((P+1)); NE=$((P+2)); NR=$((P+3))
cleanup() { kill $GPE $GPR $NP 2>/dev/null; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
hs_certs "$D"
# Certificates go by SNI, which s_time does not send: one gatehouse per
# certificate, each with it as the default.
hs_gatehouse_conf "$D/g-ec.conf" "$D" ec $GE
hs_gatehouse_conf "$D/g-rsa.conf" "$D" rsa $GR
mkdir -p "$D/ng"
cat >"$D/ng/nginx.conf" <<EOC
load_module $MOD;
worker_processes 1;
daemon off;
pid $D/ng/nginx.pid;
error_log $D/ng/error.log warn;
events { worker_connections 1024; }
mail {
    auth_http 127.0.0.1:1/auth;
    ssl_protocols TLSv1.3;
    server { listen 127.0.0.1:$NE ssl; protocol imap;
             ssl_certificate $D/ec.pem; ssl_certificate_key $D/ec.key; }
    server { listen 127.0.0.1:$NR ssl; protocol imap;
             ssl_certificate $D/rsa.pem; ssl_certificate_key $D/rsa.key; }
}
EOC
GPE= GPR= NP=
"$B/gatehouse" -c "$D/g-ec.conf" >"$D/gh-ec.out" 2>&1 & GPE=$!
"$B/gatehouse" -c "$D/g-rsa.conf" >"$D/gh-rsa.out" 2>&1 & GPR=$!
nginx -c "$D/ng/nginx.conf" -p "$D/ng" >"$D/ng/out" 2>&1 & NP=$!
sleep 1
NW=$(pgrep -P $NP | head -1)
if [ -z "$NW" ] || ! kill -0 $GPE $GPR; then
	echo "handshake_cpu.sh: a proxy did not start" >&2
	cat "$D"/gh-*.out "$D/ng/out" >&2
	exit 1
fi

# one_run PID PORT -> "handshakes µs-per-handshake"
one_run() {
	openssl s_time -connect 127.0.0.1:$2 -new -time 1 >/dev/null 2>&1    # warm-up
	perf stat -e task-clock -x, -p $1 -o "$D/stat" -- sleep $((S + 1)) & local sp=$!
	sleep 0.3
	local n
	n=$(openssl s_time -connect 127.0.0.1:$2 -new -time $S 2>&1 |
		awk '/connections in/ {print $1; exit}')
	wait $sp
	local ms
	ms=$(awk -F, '/task-clock/ {print $1; exit}' "$D/stat")
	python3 -c "print($n, '%.1f' % ($ms * 1e3 / $n))"
}
declare -A ALL
for cert in ECDSA RSA; do
	for r in $(seq 1 "$R"); do
		for px in gatehouse nginx; do
			if [ $px = gatehouse ]; then
				pid=$([ $cert = ECDSA ] && echo $GPE || echo $GPR)
				port=$([ $cert = ECDSA ] && echo $GE || echo $GR)
			else
				pid=$NW; port=$([ $cert = ECDSA ] && echo $NE || echo $NR)
			fi
			out=$(one_run $pid $port)
			echo "round $r $cert $px: ${out% *} handshakes, ${out#* } µs CPU per handshake"
			ALL[$cert,$px]="${ALL[$cert,$px]:-} ${out#* }"
		done
	done
done
for cert in ECDSA RSA; do
	python3 - "$cert" "${ALL[$cert,gatehouse]}" "${ALL[$cert,nginx]}" <<'EOP'
import statistics, sys
c, g, n = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mg, mn = statistics.median(g), statistics.median(n)
print("%s (TLS 1.3, full handshake): gatehouse %.1f µs, nginx %.1f µs per handshake (medians of %d): %.2fx"
      % (c, mg, mn, len(g), mg / mn))
EOP
done
