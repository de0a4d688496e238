// The UI's live updates (no library). Each message names a card that was registered, updated or
// deleted; when the page shows that card (its body[data-watch]), the page is fetched again once
// and every [data-live] region is swapped for its new content. Focus, scroll and forms outside
// those regions are left alone. Nothing polls: with no change, nothing is fetched.
//
// One stream per browser, not per tab: a browser keeps at most 6 HTTP/1.1 connections to a
// site, and an open EventSource holds one, so the 7th tab of the registry would wait forever.
// The tabs elect one holder of the stream with a Web Lock; it relays every message to the other
// tabs on a BroadcastChannel. When it closes, another tab takes the lock and opens the stream
// (and every tab re-reads once, as after any reconnect). Without those APIs: a stream per tab.
(function () {
  "use strict";
  var watch = {};
  try { watch = JSON.parse(document.body.getAttribute("data-watch") || "{}"); } catch (e) { watch = {}; }
  var state = document.getElementById("live-state");
  var notice = document.getElementById("live-notice");
  var pending = null, busy = false, again = false;
  var channel = window.BroadcastChannel ? new BroadcastChannel("opsml-live") : null;

  function setState(s) {
    if (!state) return;
    state.setAttribute("data-state", s);
    state.textContent = s === "live" ? "live" : s === "down" ? "reconnecting…" : "connecting…";
  }

  function relevant(m) {
    if (m.kind === "resync") return true;
    if (watch.all) return true;
    if (watch.uids && watch.uids.indexOf(m.uid) >= 0) return true;
    if (!watch.registry || m.registry !== watch.registry) return false;
    if (watch.space && m.space !== watch.space) return false;
    if (watch.name && m.name !== watch.name) return false;
    return true;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { headers: { "X-Opsml-Live": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = el.id && doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) {
            el.innerHTML = fresh.innerHTML;
            el.classList.remove("flash");
            void el.offsetWidth;  // restart the highlight
            el.classList.add("flash");
          }
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next message or reconnect refreshes again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function schedule() {
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 30);
  }

  // What every tab does with a message, its own stream's or one relayed by the holder.
  var KINDS = { registered: 1, updated: 1, deleted: 1, resync: 1 };
  function handle(m) {
    if (m.kind === "state") { setState(m.state); return; }
    if (!KINDS[m.kind]) return;
    if (!relevant(m)) return;
    if (notice && m.kind !== "resync") {
      notice.textContent = m.registry + "/" + m.space + "/" + m.name + " " + m.version + " " + m.kind;
    }
    schedule();
  }

  function relay(m) {
    if (channel) channel.postMessage(m);
    handle(m);
  }

  // The holder's stream; resolves never (the lock is held until the tab closes).
  function openStream(first) {
    var broken = !first;  // a new holder re-reads once: messages may have passed meanwhile
    var source = new EventSource("/ui/stream");
    source.onopen = function () {
      relay({ kind: "state", state: "live" });
      if (broken) { broken = false; relay({ kind: "resync" }); }
    };
    source.onerror = function () {
      broken = true;
      relay({ kind: "state", state: "down" });
    };
    source.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      relay(m);
    };
    return new Promise(function () {});
  }

  if (!window.EventSource) {
    setState("off");
    if (state) state.textContent = "live updates unavailable";
    return;
  }
  if (channel && navigator.locks && navigator.locks.request) {
    channel.onmessage = function (ev) {
      var m = ev.data || {};
      if (m.kind === "hello") {  // a new tab asks the holder how the stream is
        if (state && state.getAttribute("data-state") === "live") {
          channel.postMessage({ kind: "state", state: "live" });
        }
        return;
      }
      handle(m);
    };
    navigator.locks.request("opsml-live", { ifAvailable: true }, function (lock) {
      if (lock) return openStream(true);  // the first tab: it holds the stream
      channel.postMessage({ kind: "hello" });
      // wait for the holder to go, then take over
      navigator.locks.request("opsml-live", function () { return openStream(false); });
      return undefined;
    });
  } else {
    openStream(true);
  }
})();
