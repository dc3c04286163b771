/*
 * fuzz_session_tcp.c - whole TCP listener sessions (plain, with a PROXY v2
 * header sent upstream, implicit TLS) driven by a script of client bytes,
 * upstream answers, timer expiries and closes (tests/harness/gh_script.c).
 * Every input ends with the session closed and freed; a session, handle or
 * buffer left over aborts.
 */
#include "fuzz_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_session_one(GH_TCP, data, size);
}
