"""A real browser through gatehouse: Debian's chromium, headless, driven by
selenium (chromium-driver, python3-selenium), loads a small single-page app
(tests/e2e/web/spa) the way Carbonio's web client is served:

- without the ZM_AUTH_TOKEN cookie, "/" answers 307 to the login page;
- the login page and the app are static files (a root location);
- the app calls an API under /service/ routed by the cookie (bob's
  zimbraId -> the lookup -> store-b) and opens a WebSocket (/ws, routed
  the same way, echoed by store-b);
- "Sign out" (/logout) expires the cookie and redirects to the login page.

The test asserts what the page shows, where the browser ends up, and what
the backends received."""

import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import BOB, ZIMBRA_IDS, mint_zm_auth_token
from ghtest import free_port

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options          # noqa: E402
from selenium.webdriver.chrome.service import Service          # noqa: E402
from selenium.webdriver.common.by import By                    # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait        # noqa: E402

SPA = Path(__file__).parent / "web" / "spa"
HOST = "mail.example.com"


def browser_settings(spa_dir, web, web_certs, port, http2=False, access_log=None):
    listener = {"address": "127.0.0.1:%d" % port, "protocol": "http", "tls": True,
                "http2": http2}
    return {
        "tls": {"cert": web_certs.crt, "key": web_certs.key},
        "listen": [listener],
        "http": dict({"backends": web.hash_backends(), "server_name": HOST},
                     **({"access_log": str(access_log)} if access_log else {})),
        "upstreams": [{"name": "mailstores", "servers": [web.a.address],
                       "balance": "route"}],
        "locations": [
            {"match": "^~ /static/", "root": str(spa_dir), "index": "index.html"},
            {"match": "= /logout", "logout": ["ZM_AUTH_TOKEN"], "redirect": "/static/login/"},
            {"match": "^~ /service/", "upstream": "mailstores"},
            {"match": "= /ws", "upstream": "mailstores", "websocket": True},
            {"match": "/", "root": str(spa_dir / "app"), "index": "index.html",
             "require_cookie": "ZM_AUTH_TOKEN", "login_redirect": "/static/login/"},
        ],
    }


@pytest.fixture
def spa(tmp_path):
    """The app with bob's token written into the login page."""
    d = tmp_path / "spa"
    shutil.copytree(SPA, d)
    login = d / "static" / "login" / "index.html"
    token = mint_zm_auth_token(ZIMBRA_IDS[BOB[0]])
    login.write_text(login.read_text().replace("@TOKEN@", token))
    return d


@pytest.fixture
def chrome(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromium-driver are needed (scripts/deps.sh test)")
    o = Options()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--ignore-certificate-errors",
              "--host-resolver-rules=MAP %s 127.0.0.1" % HOST,
              "--user-data-dir=%s" % (tmp_path / "chrome")]:
        o.add_argument(a)
    o.binary_location = shutil.which("chromium")
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=o)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()


def wait_text(d, elem_id, prefix, timeout=15):
    def ready(drv):
        t = drv.find_element(By.ID, elem_id).text
        return t if t.startswith(prefix) or t.startswith("error") else False
    return WebDriverWait(d, timeout).until(ready)


def wait_url(d, suffix, timeout=15):
    WebDriverWait(d, timeout).until(lambda drv: drv.current_url.endswith(suffix))


def run_app(gh, chrome, web, port):
    base = "https://%s:%d" % (HOST, port)
    # No cookie: the app's root sends the browser to the login page.
    chrome.get(base + "/")
    wait_url(chrome, "/static/login/")
    assert chrome.title == "Sign in"
    # Signing in sets the cookie and loads the app (static files).
    chrome.find_element(By.ID, "login").click()
    wait_url(chrome, base + "/")
    assert chrome.title == "Mail"
    # The API call went to bob's mailstore, chosen by the cookie.
    assert wait_text(chrome, "api", "api:") == "api:store-b"
    assert any(p == "/service/soap/GetInfoRequest" for _, p, _ in web.b.requests)
    assert not any(p.startswith("/service/") for _, p, _ in web.a.requests)
    # The WebSocket was upgraded through gatehouse and echoed by store-b.
    assert wait_text(chrome, "ws", "ws:") == "ws:hello"
    proto = chrome.find_element(By.ID, "proto").text
    # Signing out expires the cookie and lands on the login page again.
    chrome.find_element(By.ID, "logout").click()
    wait_url(chrome, "/static/login/")
    assert chrome.get_cookie("ZM_AUTH_TOKEN") is None
    chrome.get(base + "/")
    wait_url(chrome, "/static/login/")
    return proto


def test_browser_loads_the_app_through_gatehouse(gatehouse, web, web_certs, spa, chrome):
    port = free_port()
    gh = gatehouse(**browser_settings(spa, web, web_certs, port))
    proto = run_app(gh, chrome, web, port)
    assert proto == "http/1.1"
    # Static files and local answers were logged, and no token leaked.
    gh.assert_no_secret()


def ws_and_api_lines(log):
    lines = log.read_text().splitlines()
    ws = [ln for ln in lines if 'path="/ws"' in ln]
    api = [ln for ln in lines if 'path="/service/' in ln]
    assert ws and api, lines
    return ws[0], api[0]


def session_of(line):
    return [w for w in line.split() if w.startswith("session=")][0]


def test_browser_loads_the_app_over_http2(gatehouse, web, web_certs, spa, chrome, tmp_path):
    """The listener offers h2: chromium's page and API calls go over it
    (nextHopProtocol "h2"), and so does its WebSocket (RFC 8441 extended
    CONNECT, SETTINGS_ENABLE_CONNECT_PROTOCOL): its access log line is on
    the same session (connection) as the API call, with the :status 200
    the stream got (an HTTP/1.1 upgrade logs 101)."""
    port = free_port()
    log = tmp_path / "access.log"
    gh = gatehouse(**browser_settings(spa, web, web_certs, port, http2=True, access_log=log))
    proto = run_app(gh, chrome, web, port)
    assert proto == "h2"
    ws, api = ws_and_api_lines(log)
    assert "status=200" in ws and session_of(ws) == session_of(api), (ws, api)
    gh.assert_no_secret()


def test_browser_websocket_over_http11_when_h2_websocket_is_off(gatehouse, web, web_certs, spa,
                                                                 chrome, tmp_path):
    """http.h2_websocket = false: the page still loads over h2, and the
    browser opens its WebSocket on a connection of its own (HTTP/1.1)."""
    port = free_port()
    log = tmp_path / "access.log"
    st = browser_settings(spa, web, web_certs, port, http2=True, access_log=log)
    st["http"]["h2_websocket"] = False
    gh = gatehouse(**st)
    proto = run_app(gh, chrome, web, port)
    assert proto == "h2"
    ws, api = ws_and_api_lines(log)
    assert "status=101" in ws and session_of(ws) != session_of(api), (ws, api)
    gh.assert_no_secret()
