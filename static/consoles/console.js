// What both console pages share: tickets, the VM's state, reconnecting.
(function () {
  "use strict";
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
      document.title = vm.name + " · " + cfg.kindLabel;
      return vm;
    } catch (e) {
      return null;
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
      connect(t.ws_url, t, onUp, onDrop);
    }

    function onUp() {
      attempts = 0;
      setStatus(gettext("Connected"), "connected");
    }

    async function onDrop(reason, userInitiated) {
      const vm = await refreshVm();
      btn.hidden = false;
      if (userInitiated) {
        setStatus(gettext("Disconnected"), "closed");
        return;
      }
      if (vm && !CONSOLE_STATES.includes(vm.status)) {
        setStatus(gettext("The virtual machine is not running."), "closed");
        return;
      }
      attempts += 1;
      if (attempts > 5) {
        setStatus(gettext("Disconnected") + (reason ? ": " + reason : ""), "error");
        return;
      }
      const delay = Math.min(1000 * 2 ** (attempts - 1), 8000);
      setStatus(gettext("Connection lost; reconnecting…"), "connecting");
      timer = setTimeout(start, delay);
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
})();
