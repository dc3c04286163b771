/*
 * fuzz_session_http2.c - whole HTTP/2 sessions: the harness's TLS client
 * offers ALPN "h2" to the implicit-TLS http listener (http2 on), and the
 * script (tests/harness/gh_script.c) sends frames, backend answers, timer
 * expiries and closes in any order. The flags byte's mode is forced to
 * implicit TLS. Every input ends with the session closed and freed.
 */
#include <string.h>

#include <openssl/ssl.h>

#include "fuzz_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[1 << 17];
	static const unsigned char h2[] = { 2, 'h', '2' };

	if (size == 0 || size > sizeof(buf))
		return 0;
	if (!fuzz_env_ready) {
		char err[512];
		if (gh_env_init(&fuzz_env, NULL, err, sizeof(err)) < 0) {
			fprintf(stderr, "fuzz_session_http2: %s\n", err);
			abort();
		}
		fuzz_env_ready = true;
		atexit(fuzz_env_fini);
		if (SSL_CTX_set_alpn_protos(fuzz_env.cli_ctx, h2, sizeof(h2)) != 0)
			abort();
	}
	memcpy(buf, data, size);
	buf[0] = (uint8_t)((buf[0] & ~3u) | GH_TLS);
	return fuzz_session_one(GH_HTTP, buf, size);
}
