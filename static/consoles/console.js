// What both console pages share: tickets, the VM's state and server, the session's time left,
// reconnecting (a bounded number of times; a VM that migrated is followed to its new server).
(function (global) {
  "use strict";
  const MAX_ATTEMPTS = 5;

  // After ``attempts`` failed reconnects in a row: wait ``delay`` ms and try again, or give up.
  function reconnectPlan(attempts) {
    if (attempts > MAX_ATTEMPTS) return { giveUp: true, delay: 0 };
    return { giveUp: false, delay: Math.min(1000 * 2 ** (attempts - 1), 8000) };
  }

  function formatLeft(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s % 60);
  }

  // Who else has this VM's console open (a second viewer watches the same screen at once).
  function othersText(viewers, me) {
    const names = [];
    for (const v of viewers) {
      const extra = v.username === me ? v.sessions - 1 : v.sessions;  // this page is one of mine
      if (extra <= 0) continue;
      names.push(v.username + (v.read_only ? " (" + gettext("view only") + ")" : ""));
    }
    return names.length ? gettext("Also connected:") + " " + names.join(", ") : "";
  }
  if (typeof document === "undefined") {
    // Loaded by node for the unit tests of the pure parts.
    module.exports = { reconnectPlan, formatLeft, MAX_ATTEMPTS, othersText };
    return;
  }
  const root = document.getElementById("console");
  const cfg = root.dataset;

  // The VM states with a console (ovmweb/consoles/services.py CONSOLE_STATES decides; this only words the page).
  const CONSOLE_STATES = ["RUNNING", "STOPPING", "SUSPENDED"];

  function csrf() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function setStatus(text, state) {
    const el = document.getElementById("conn-status");
    el.textContent = text;
    el.dataset.state = state || "";
  }

  async function refreshVm() {
    try {
      const r = await fetch(cfg.vmUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!r.ok) return null;
      const vm = await r.json();
      document.getElementById("vm-name").textContent = vm.name;
      const st = document.getElementById("vm-state");
      st.textContent = vm.status;
      st.dataset.status = vm.status;
      if (vm.keymap) cfg.keymap = vm.keymap;
      showServer(vm.server);
      document.title = vm.name + " · " + cfg.kindLabel;
      return vm;
    } catch (e) {
      return null;
    }
  }

  let shownServer = cfg.serverId;
  async function showServer(serverId) {
    const el = document.getElementById("vm-server");
    if (!el || serverId === undefined || String(serverId) === String(shownServer)) return;
    shownServer = serverId;
    if (serverId === null) { el.textContent = ""; return; }
    try {
      const r = await fetch("/api/v1/servers/" + serverId + "/", { credentials: "same-origin", headers: { Accept: "application/json" } });
      el.textContent = r.ok ? (await r.json()).name : "#" + serverId;
    } catch (e) {
      el.textContent = "#" + serverId;
    }
  }

  // The session's time left, counted from its opening (the server closes it at zero with 4002).
  let countdown = null;
  function startCountdown(seconds) {
    const el = document.getElementById("session-left");
    clearInterval(countdown);
    if (!el || !seconds) return;
    const end = Date.now() + seconds * 1000;
    const tick = () => { el.textContent = gettext("Time left") + " " + formatLeft((end - Date.now()) / 1000); };
    tick();
    countdown = setInterval(tick, 1000);
  }
  function stopCountdown() {
    clearInterval(countdown);
    const el = document.getElementById("session-left");
    if (el) el.textContent = "";
  }

  async function refreshViewers() {
    const el = document.getElementById("viewers");
    if (!el || !cfg.viewersUrl) return;
    try {
      const r = await fetch(cfg.viewersUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (r.ok) el.textContent = othersText((await r.json()).viewers || [], cfg.username);
    } catch (e) {
      /* the next poll tries again */
    }
  }

  // A fresh ticket for every connection attempt: tickets are single use.
  async function ticket() {
    const r = await fetch(cfg.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json" },
      body: JSON.stringify({ kind: cfg.kind }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.status !== 201) throw new Error(body.detail || ("HTTP " + r.status));
    return body;
  }

  // connect(wsUrl) must resolve when connected and call onDrop(reason) once when the session ends.
  function session(connect) {
    let attempts = 0;
    let timer = null;
    const btn = document.getElementById("reconnect");

    async function start() {
      clearTimeout(timer);
      timer = null;
      btn.hidden = true;
      setStatus(gettext("Connecting…"), "connecting");
      let t;
      try {
        t = await ticket();
      } catch (e) {
        const vm = await refreshVm();
        btn.hidden = false;
        // A VM that stopped while we were reconnecting refuses the ticket (409): say what
        // happened to the VM rather than relaying the refusal.
        if (vm && !CONSOLE_STATES.includes(vm.status)) {
          setStatus(gettext("The virtual machine is not running."), "closed");
        } else {
          setStatus(e.message, "error");
        }
        return;
      }
      lastTicket = t;
      connect(t.ws_url, t, onUp, onDrop);
    }

    let lastTicket = null;
    function onUp() {
      attempts = 0;
      setStatus(gettext("Connected"), "connected");
      startCountdown(lastTicket && lastTicket.session_seconds);
      refreshViewers();
    }

    // ``moved``: the server closed the console because the VM now runs elsewhere (4005).
    async function onDrop(reason, userInitiated, moved) {
      stopCountdown();
      const before = shownServer;
      const vm = await refreshVm();
      // noVNC does not pass the close code on: a VM now on another server is a migration too.
      moved = moved || Boolean(vm && vm.server && before && String(vm.server) !== String(before));
      btn.hidden = false;
      if (userInitiated) {
        setStatus(gettext("Disconnected"), "closed");
        return;
      }
      if (vm && !CONSOLE_STATES.includes(vm.status)) {
        setStatus(gettext("The virtual machine is not running."), "closed");
        return;
      }
      if (moved) {
        // Not a failure: follow the VM at once (the new ticket names its new server).
        setStatus(gettext("The virtual machine moved to another server; reconnecting…"), "connecting");
        timer = setTimeout(start, 0);
        return;
      }
      attempts += 1;
      const plan = reconnectPlan(attempts);
      if (plan.giveUp) {
        setStatus(
          gettext("Disconnected") + (reason ? ": " + reason : "") + ". " +
            gettext("Stopped reconnecting after") + " " + MAX_ATTEMPTS + " " + gettext("attempts."),
          "error",
        );
        return;
      }
      setStatus(gettext("Connection lost; reconnecting…") + " (" + attempts + "/" + MAX_ATTEMPTS + ")", "connecting");
      timer = setTimeout(start, plan.delay);
    }

    btn.addEventListener("click", () => { attempts = 0; start(); });
    // The page closes a live connection itself (its onDrop then says so); between a drop and
    // the next attempt there is none, and the user's Disconnect must end the retrying.
    document.getElementById("disconnect").addEventListener("click", () => {
      if (timer === null) return;
      clearTimeout(timer);
      timer = null;
      setStatus(gettext("Disconnected"), "closed");
    });
    document.getElementById("fullscreen").addEventListener("click", () => {
      const el = document.getElementById("screen");
      if (document.fullscreenElement) document.exitFullscreen();
      else el.requestFullscreen();
    });
    setInterval(refreshVm, 10000);
    setInterval(refreshViewers, 5000);
    refreshVm();
    liveUpdates();
    start();
  }

  // The management pages' live feed: a change of this VM is shown at once, not at the next
  // poll (which stays, for when the feed is down).
  function liveUpdates() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let backoff = 1000;
    function open() {
      const ws = new WebSocket(scheme + location.host + cfg.liveUrl);
      ws.onopen = () => { backoff = 1000; refreshVm(); };  // catch up on what the outage hid
      ws.onmessage = (e) => {
        let msg;
        try { msg = JSON.parse(e.data); } catch (err) { return; }
        if (msg.topic === "vm" && msg.payload && String(msg.payload.id) === cfg.vmId) refreshVm();
      };
      ws.onclose = (e) => {
        if (e.code === 4401) return;  // no longer logged in: the poll's 403s say so
        setTimeout(open, backoff);
        backoff = Math.min(backoff * 2, 30000);
      };
    }
    open();
  }

  function gettext(s) { return s; }

  window.ovmConsole = { session, setStatus, cfg };
})(typeof window !== "undefined" ? window : globalThis);
