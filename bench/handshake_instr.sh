#!/bin/bash
# handshake_instr.sh BUILD [N] - user-space instructions per full TLS 1.3
# handshake on an implicit-TLS IMAP port, gatehouse against nginx's mail
# module, counted by valgrind's callgrind: exact and free of the machine's
# noise, unlike handshake_cpu.sh's CPU time (which also holds the kernel's
# share: the TCP work, the wake-ups). Both proxies run one process, the
# same certificate (ECDSA P-256, then RSA-2048), TLS 1.3 only. Each
# counts from after 3 warm-up handshakes (`callgrind_control -i on`) over
# N full handshakes (default 200; a Python client, X25519 key share, the
# greeting read, then closed) and prints instructions per handshake, then
# the ratio. Loopback only; needs valgrind, nginx, libnginx-mod-mail.
set -u
. "$(dirname "$0")/handshake_common.sh"
B=$(cd "${1:?usage: handshake_instr.sh BUILD [N]}" && pwd)
N=${2:-200}
MOD=/usr/lib/nginx/modules/ngx_mail_module.so
for t in valgrind callgrind_control nginx openssl python3; do
	command -v $t >/dev/null || { echo "handshake_instr.sh: $t is not installed" >&2; exit 2; }
done
[ -f $MOD ] || { echo "handshake_instr.sh: $MOD missing (libnginx-mod-mail)" >&2; exit 2; }
D=$(mktemp -d /tmp/gh-hsinstr-XXXXXX)
VP=
cleanup() { [ -n "$VP" ] && kill $VP 2>/dev/null; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
hs_certs "$D"

# handshakes PORT COUNT: full TLS 1.3 handshakes, each reading the greeting.
handshakes() {
	python3 - "$1" "$2" <<'EOP'
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
for _ in range(int(sys.argv[2])):
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30) as raw:
        with ctx.wrap_socket(raw) as t:
            if not t.recv(100).startswith(b"* OK"):
                sys.exit("no greeting")
EOP
}

# count NAME PORT CMD...: instructions per handshake of CMD under callgrind.
count() {
	local name=$1 port=$2
	shift 2
	rm -f "$D"/cg.*
	valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$D/cg.%p" "$@" \
		>"$D/$name.out" 2>&1 & VP=$!
	local i
	for i in $(seq 100); do
		python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" \
			2>/dev/null && break
		sleep 0.2
	done
	handshakes $port 3 || { echo "handshake_instr.sh: $name did not answer" >&2; cat "$D/$name.out" >&2; exit 1; }
	callgrind_control -i on $VP >/dev/null 2>&1
	handshakes $port $N || exit 1
	callgrind_control -d $VP >/dev/null 2>&1
	sleep 0.5
	kill $VP; wait $VP 2>/dev/null; VP=
	# A dump holds what ran since instrumentation went on; the final
	# file (written at exit) only what ran after the dump.
	cat "$D"/cg.* | awk -v n=$N '/^summary:/ {s += $2} END {printf "%d", s / n}'
}

P=$((20000 + RANDOM % 12000))
for c in ec rsa; do
	G=$P; X=$((P + 1)); P=$((P + 2))
	hs_gatehouse_conf "$D/g-$c.conf" "$D" $c $G
	mkdir -p "$D/ng-$c"
	cat >"$D/ng-$c/nginx.conf" <<EOC
load_module $MOD;
master_process off;
daemon off;
pid $D/ng-$c/nginx.pid;
error_log $D/ng-$c/error.log warn;
events { worker_connections 1024; }
mail {
    auth_http 127.0.0.1:1/auth;
    ssl_protocols TLSv1.3;
    server { listen 127.0.0.1:$X ssl; protocol imap;
             ssl_certificate $D/$c.pem; ssl_certificate_key $D/$c.key; }
}
EOC
	g=$(count gatehouse-$c $G "$B/gatehouse" -c "$D/g-$c.conf")
	n=$(count nginx-$c $X nginx -c "$D/ng-$c/nginx.conf" -p "$D/ng-$c")
	python3 -c "
g, n = $g, $n
print('%s (TLS 1.3, full handshake, %d counted): gatehouse %d, nginx %d instructions per handshake: %.3fx'
      % ('ECDSA P-256' if '$c' == 'ec' else 'RSA-2048', $N, g, n, g / n))"
done
