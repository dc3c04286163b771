/*
 * fuzz_session_http.c - whole HTTP sessions (plain, STARTTLS-capable, implicit
 * TLS) driven by a script of client bytes, backend answers, timer expiries
 * and closes (tests/harness/gh_script.c). Every input ends with the
 * session closed and freed; a session, handle or buffer left over aborts.
 */
#include "fuzz_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_session_one(GH_HTTP, data, size);
}
