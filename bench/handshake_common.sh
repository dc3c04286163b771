# handshake_common.sh - sourced by handshake_cpu.sh and handshake_instr.sh:
# the certificates and the gatehouse configuration both use.

# hs_certs DIR: a self-signed ECDSA P-256 pair (ec.pem, ec.key) and an
# RSA-2048 one (rsa.pem, rsa.key) in DIR, keys readable by the proxies.
hs_certs() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/ec.key" \
		-out "$1/ec.pem" -days 2 -subj /CN=mail.example.com 2>/dev/null
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1/rsa.key" -out "$1/rsa.pem" -days 2 \
		-subj /CN=rsa.example.com 2>/dev/null
	chmod 644 "$1"/*.key
}

# hs_gatehouse_conf FILE DIR CERT PORT: one worker, implicit-TLS IMAP on
# 127.0.0.1:PORT with DIR/CERT.pem as the default certificate, TLS 1.3.
hs_gatehouse_conf() {
	cat >"$1" <<EOC
workers = 1;
log_level = "warn";
error_log = "$2/gh-$3.log";
lookup = { servers = [ "http://127.0.0.1:1/auth" ]; timeout = 5.0; };
tls = { cert = "$2/$3.pem"; key = "$2/$3.key"; protocols = [ "TLSv1.3" ]; };
listen = ( { address = "127.0.0.1:$4"; protocol = "imap"; tls = true; } );
EOC
}
