"""POP3 AUTH OAUTHBEARER (RFC 7628): the user comes from the GS2 authzid
for the lookup, the client's message goes to the backend unchanged, a
backend's error challenge is answered with ^A and its -ERR relayed, and a
malformed message never reaches a backend."""

from ghtest import ALICE, b64, check_audit
from test_pop3 import ScriptedPop3, pop3gh  # noqa: F401  (fixture)


def oauthbearer(user, token="ya29.bearer-token", gs2="n"):
    return b64("%s,a=%s,\x01host=mail.example.com\x01port=110\x01auth=Bearer %s\x01\x01"
               % (gs2, user, token))


def test_oauthbearer_passed_through(pop3gh, lookup):
    def respond(line):
        if line.startswith(b"AUTH OAUTHBEARER "):
            return b"+OK Logged in via bearer\r\n"
        return b"+OK\r\n"

    msg = oauthbearer(ALICE[0])
    with ScriptedPop3(respond) as fake:
        lookup.users[ALICE[0]] = ("127.0.0.1", fake.port, "canonical@example.com")
        gh = pop3gh(pop3={"sasl_mechanisms": ["PLAIN", "OAUTHBEARER"]})
        with gh.raw3() as c:
            assert c.cmd("CAPA").startswith(b"+OK")
            assert b"SASL PLAIN OAUTHBEARER" in c.multiline()
            assert c.cmd("AUTH") == b"+OK"
            assert c.multiline() == [b"PLAIN", b"OAUTHBEARER"]
            assert c.cmd("AUTH OAUTHBEARER " + msg) == b"+OK Logged in via bearer"
            assert c.cmd("STAT") == b"+OK"
        with gh.raw3() as c:
            assert c.cmd("AUTH OAUTHBEARER") == b"+ "
            assert c.cmd(msg) == b"+OK Logged in via bearer"
        assert fake.lines.count(b"AUTH OAUTHBEARER " + msg.encode()) == 2
    assert lookup.requests[-1]["Auth-User"] in (ALICE[0], ALICE[0].replace("@", "%40"))
    check_audit(gh, login=ALICE[0], user="canonical@example.com", result="ok",
                backend="127.0.0.1:%d" % fake.port, proto="pop3")
    gh.assert_no_secret("ya29.bearer-token", msg)


def test_oauthbearer_backend_error_challenge(pop3gh, lookup):
    """RFC 7628 section 3.2.3: the server's error challenge is answered with
    a single ^A ("AQ=="), and the client sees the final -ERR."""
    def respond(line):
        if line.startswith(b"AUTH OAUTHBEARER "):
            return b"+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n"
        if line == b"AQ==":
            return b"-ERR [AUTH] Invalid token\r\n"
        return b"+OK\r\n"

    with ScriptedPop3(respond) as fake:
        lookup.users[ALICE[0]] = ("127.0.0.1", fake.port, ALICE[0])
        gh = pop3gh(pop3={"sasl_mechanisms": ["OAUTHBEARER"], "client_ip_command": "none"})
        with gh.raw3() as c:
            assert c.cmd("AUTH OAUTHBEARER " + oauthbearer(ALICE[0])) == \
                b"-ERR [AUTH] Invalid token"
            assert c.cmd("NOOP") == b"+OK"
        assert b"AQ==" in fake.lines
    check_audit(gh, login=ALICE[0], result="fail", proto="pop3")


def test_oauthbearer_malformed_and_not_offered(pop3gh, lookup):
    with ScriptedPop3(lambda line: b"+OK\r\n") as fake:
        lookup.users[ALICE[0]] = ("127.0.0.1", fake.port, ALICE[0])
        gh = pop3gh(pop3={"sasl_mechanisms": ["OAUTHBEARER"]})
        with gh.raw3() as c:
            # Channel binding cannot cross a proxy; no authzid means no user.
            for bad in (oauthbearer(ALICE[0], gs2="p=tls-unique"),
                        b64("n,,\x01auth=Bearer t\x01\x01"),
                        b64("n,a=%s,\x01auth=Bearer t\x01" % ALICE[0])):
                assert c.cmd("AUTH OAUTHBEARER " + bad).startswith(b"-ERR")
        assert not any(l.startswith(b"AUTH") for l in fake.lines)
        gh2 = pop3gh(pop3={"sasl_mechanisms": ["PLAIN"]})
        with gh2.raw3() as c:
            assert c.cmd("AUTH OAUTHBEARER " + oauthbearer(ALICE[0])) == \
                b"-ERR Unsupported authentication mechanism"
    assert lookup.requests == []
