// The UI's live updates (no library): one EventSource per page on /ui/stream. Each message names
// a card that was registered, updated or deleted; when the page shows that card (its
// body[data-watch]), the page is fetched again once and every [data-live] region is swapped
// for its new content. Focus, scroll and forms outside those regions are left alone. Nothing
// polls: with no change, nothing is fetched.
(function () {
  "use strict";
  var watch = {};
  try { watch = JSON.parse(document.body.getAttribute("data-watch") || "{}"); } catch (e) { watch = {}; }
  var state = document.getElementById("live-state");
  var notice = document.getElementById("live-notice");
  var pending = null, busy = false, again = false, broken = false;

  function setState(s, text) {
    if (!state) return;
    state.setAttribute("data-state", s);
    state.textContent = text;
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

  if (!window.EventSource) { setState("off", "live updates unavailable"); return; }
  var source = new EventSource("/ui/stream");
  source.onopen = function () {
    setState("live", "live");
    if (broken) { broken = false; schedule(); }  // catch up on what happened while away
  };
  source.onerror = function () {
    broken = true;
    setState("down", "reconnecting…");
  };
  source.onmessage = function (ev) {
    var m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    if (!relevant(m)) return;
    if (notice && m.kind !== "resync") {
      notice.textContent = m.registry + "/" + m.space + "/" + m.name + " " + m.version + " " + m.kind;
    }
    schedule();
  };
})();
