/* ovmweb management UI: row selection, expandable rows, confirmations, ISO
 * upload progress, and the live-update socket. Live messages only tell the
 * page *what* changed; the page re-fetches the affected fragment from the
 * server (rendered by the same templates), so there is no polling and no
 * client-side copy of the rules. */
(function () {
  "use strict";

  function csrfToken() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  }

  // --- confirmations for destructive actions --------------------------------
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var text = form.getAttribute && form.getAttribute("data-confirm");
    if (text && !window.confirm(text)) {
      ev.preventDefault();
      ev.stopImmediatePropagation();
    }
  }, true);

  // --- flash messages -------------------------------------------------------
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest(".msg-close");
    if (btn) btn.parentElement.remove();
  });

  // --- VM table: selection drives the toolbar -------------------------------
  function selectVm(id, pushState) {
    document.querySelectorAll("tr.vm-row.selected").forEach(function (tr) { tr.classList.remove("selected"); });
    var row = document.getElementById("vm-row-" + id);
    if (row) {
      row.classList.add("selected");
      var radio = row.querySelector('input[name="selected_vm"]');
      if (radio) radio.checked = true;
    }
    var tb = document.getElementById("vm-toolbar");
    if (tb && window.htmx) {
      htmx.ajax("GET", "/vms/toolbar/?vm=" + encodeURIComponent(id), { target: "#vm-toolbar", swap: "innerHTML" });
    }
    if (pushState) {
      var url = new URL(window.location.href);
      url.searchParams.set("selected", id);
      history.replaceState(history.state, "", url);
    }
  }

  document.addEventListener("change", function (ev) {
    if (ev.target.matches('input[name="selected_vm"]')) selectVm(ev.target.value, true);
  });

  document.addEventListener("click", function (ev) {
    var row = ev.target.closest("tr.vm-row");
    if (!row || ev.target.closest("a, button, input, label")) return;
    if (!row.classList.contains("selected")) selectVm(row.getAttribute("data-vm"), true);
  });

  // --- expandable rows ------------------------------------------------------
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("button.expander");
    if (!btn) return;
    var row = btn.closest("tr");
    var id = row.getAttribute("data-vm");
    var detailId = "vm-detail-" + id;
    var existing = document.getElementById(detailId);
    if (btn.getAttribute("aria-expanded") === "true") {
      btn.setAttribute("aria-expanded", "false");
      btn.textContent = "▸";
      if (existing) existing.remove();
      return;
    }
    btn.setAttribute("aria-expanded", "true");
    btn.textContent = "▾";
    if (!existing) {
      existing = document.createElement("tr");
      existing.id = detailId;
      existing.className = "vm-detail";
      var td = document.createElement("td");
      td.colSpan = row.children.length;
      td.innerHTML = '<div class="loading">Loading…</div>';
      existing.appendChild(td);
      row.after(existing);
    }
    htmx.ajax("GET", btn.getAttribute("data-detail-url"), { target: "#" + detailId + " > td", swap: "innerHTML" });
  });

  // A live refresh replaces a row; keep its expander state in step with the detail row.
  document.addEventListener("htmx:afterSwap", function (ev) {
    var bar = document.querySelector("#vm-toolbar .toolbar");
    var selected = bar ? bar.getAttribute("data-selected") : "";
    document.querySelectorAll("tr.vm-row").forEach(function (row) {
      var isSel = selected !== "" && row.getAttribute("data-vm") === selected;
      row.classList.toggle("selected", isSel);
      var radio = row.querySelector('input[name="selected_vm"]');
      if (radio) radio.checked = isSel;
      var open = document.getElementById("vm-detail-" + row.getAttribute("data-vm"));
      var btn = row.querySelector("button.expander");
      if (open && btn) { btn.setAttribute("aria-expanded", "true"); btn.textContent = "▾"; }
    });
  });

  // --- ISO upload with a progress bar -----------------------------------------
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.hasAttribute || !form.hasAttribute("data-upload")) return;
    ev.preventDefault();
    var box = form.querySelector(".upload-progress");
    var bar = box.querySelector("progress");
    var pct = box.querySelector(".upload-pct");
    var result = form.querySelector(".upload-result");
    var button = form.querySelector('button[type="submit"]');
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    box.hidden = false;
    button.disabled = true;
    result.textContent = "";
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var p = Math.floor((e.loaded / e.total) * 100);
      bar.value = p;
      pct.textContent = p + "%";
    });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      var data = {};
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = { ok: false, errors: { file: ["HTTP " + xhr.status] } }; }
      if (data.ok) {
        bar.value = 100; pct.textContent = "100%";
        result.className = "upload-result msg msg-success";
        result.textContent = data.message;
        form.reset();
      } else {
        result.className = "upload-result msg msg-error";
        var parts = [];
        Object.keys(data.errors || {}).forEach(function (k) { parts = parts.concat(data.errors[k]); });
        result.textContent = parts.join(" ") || ("HTTP " + xhr.status);
      }
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      result.className = "upload-result msg msg-error";
      result.textContent = "Upload failed (network error).";
    });
    xhr.send(new FormData(form));
  });

  // --- live updates -----------------------------------------------------------
  var pending = new Map();   // element -> timer
  var inFlight = new WeakSet();
  var tableTimer = null;

  // An outerHTML swap replaces the element: follow it by id to its successor.
  function current(el) {
    if (el.isConnected) return el;
    return el.id ? document.getElementById(el.id) : null;
  }

  function refresh(el) {
    el = current(el);
    if (!el) return;
    if (inFlight.has(el)) { schedule(el, 200); return; }
    inFlight.add(el);
    var sel = el.getAttribute("data-live-select");
    var swap = el.getAttribute("data-live-swap") || (el.tagName === "TR" || el.classList.contains("toolbar") || el.classList.contains("vm-config") || sel ? "outerHTML" : "innerHTML");
    var opts = { source: el, target: el, swap: swap };
    if (sel) opts.select = sel;
    var done = function () { inFlight.delete(el); };
    // The VM table follows the browser's URL (search, sort and page are pushed into it).
    var url = el.hasAttribute("data-live-url-current") ? window.location.pathname + window.location.search
      : el.getAttribute("data-live-url");
    htmx.ajax("GET", url, opts).then(done, done);
  }

  function schedule(el, delay) {
    if (pending.has(el)) return;   // coalesce bursts of updates for one element
    pending.set(el, setTimeout(function () { pending.delete(el); refresh(el); }, delay));
  }

  function payloadId(payload) {
    if (!payload) return null;
    var id = payload.id != null ? payload.id : payload.pk;
    return id == null ? null : String(id);
  }

  function dispatch(msg) {
    window.ovmwebLive.received.push(msg);
    var topic = msg.topic, id = payloadId(msg.payload);
    var matched = false;
    document.querySelectorAll('[data-live-topic="' + topic + '"]').forEach(function (el) {
      var want = el.getAttribute("data-live-id");
      if (want && id !== null && want !== id) return;
      if (want) matched = true;
      // The object this page shows is gone (a server deleted by its job): re-fetching it
      // would only answer 404 and leave the stale page up.
      if (want && msg.payload && msg.payload.deleted && el.hasAttribute("data-live-gone")) {
        window.location.assign(el.getAttribute("data-live-gone"));
        return;
      }
      schedule(el, 50);
    });
    // A job that ended changed its target: refresh what shows that object
    // (e.g. a repository's contents after an ISO upload or disk creation).
    if (topic === "job" && msg.payload && /SUCCESS|FAILURE|ABORTED/.test(msg.payload.status || "")) {
      var key = msg.payload.target_type + ":" + msg.payload.target_id;
      document.querySelectorAll('[data-live-job-target="' + key + '"]').forEach(function (el) { schedule(el, 50); });
    }
    // A VM the table does not show yet (created elsewhere): refresh the table once things settle.
    var table = document.getElementById("vm-table");
    if (topic === "vm" && table && !matched && id !== null && !document.getElementById("vm-row-" + id)) {
      clearTimeout(tableTimer);
      tableTimer = setTimeout(function () {
        htmx.ajax("GET", window.location.pathname + window.location.search, { target: "#vm-table", swap: "innerHTML" });
      }, 500);
    }
    document.dispatchEvent(new CustomEvent("ovmweb:live", { detail: msg }));
  }

  window.ovmwebLive = { received: [], state: "connecting" };

  function setState(state) {
    window.ovmwebLive.state = state;
    var el = document.getElementById("live-status");
    if (el) {
      el.setAttribute("data-state", state);
      el.textContent = state === "open" ? "live" : state;
    }
  }

  var backoff = 500;
  function connect() {
    var path = document.body.getAttribute("data-live-url");
    if (!path) return;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + window.location.host + path);
    ws.addEventListener("open", function () {
      backoff = 500;
      setState("open");
      // Whatever changed between the server rendering this page and the socket
      // opening (or while it was down) was missed: re-fetch the page's live
      // containers once.
      document.querySelectorAll("[data-live-catchup]").forEach(function (el) { schedule(el, 0); });
    });
    ws.addEventListener("message", function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg && msg.topic) dispatch(msg);
    });
    ws.addEventListener("close", function () {
      setState("offline");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 15000);
    });
  }

  // Discover Server: the SSH fields mean nothing for the local transport.
  function syncTransport() {
    var t = document.getElementById("id_transport"), fs = document.getElementById("ssh-fields");
    if (t && fs) fs.disabled = t.value === "local";
  }
  document.addEventListener("change", function (ev) { if (ev.target.id === "id_transport") syncTransport(); });
  document.addEventListener("DOMContentLoaded", syncTransport);

  // VM messages: a value input is a password input (masked without script); it shows as
  // text only while its row's "Hide value" is unchecked.
  function syncMessageValue(box) {
    var row = box.closest("tr");
    var input = row && row.querySelector("input[data-message-value]");
    if (input) input.type = box.checked ? "password" : "text";
  }
  document.addEventListener("change", function (ev) {
    if (ev.target.matches && ev.target.matches("input[data-hides-value]")) syncMessageValue(ev.target);
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[data-hides-value]").forEach(syncMessageValue);
  });

  // A form that came back with errors: put the keyboard on the first field at fault.
  document.addEventListener("DOMContentLoaded", function () {
    var bad = document.querySelector(".field.has-error input, .field.has-error select, .field.has-error textarea");
    if (bad) { bad.focus(); bad.scrollIntoView({ block: "center" }); }
  });

  document.addEventListener("DOMContentLoaded", connect);
})();
