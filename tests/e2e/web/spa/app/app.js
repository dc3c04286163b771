// The single-page app of the browser test (tests/e2e/test_browser.py): an
// API call routed by the ZM_AUTH_TOKEN cookie, a WebSocket, and what
// protocol the page came over.
(function () {
  var nav = performance.getEntriesByType("navigation")[0];
  document.getElementById("proto").textContent = nav ? nav.nextHopProtocol : "?";
  fetch("/service/soap/GetInfoRequest", { method: "POST", body: "{}" })
    .then(function (r) { return r.json(); })
    .then(function (j) { document.getElementById("api").textContent = "api:" + j.backend; })
    .catch(function (e) { document.getElementById("api").textContent = "error:" + e; });
  var ws = new WebSocket("wss://" + location.host + "/ws");
  ws.onopen = function () { ws.send("hello"); };
  ws.onmessage = function (e) {
    document.getElementById("ws").textContent = "ws:" + e.data;
    ws.close();
  };
  ws.onerror = function () { document.getElementById("ws").textContent = "error"; };
})();
