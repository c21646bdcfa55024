(function () {
  "use strict";
  const { session, cfg } = window.ovmConsole;
  const screen = document.getElementById("screen");
  const term = new window.Terminal({ cursorBlink: true, convertEol: false, scrollback: 10000, fontSize: 14 });
  const fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  fit.fit();
  window.addEventListener("resize", () => fit.fit());
  window.ovmTerm = term;
  const encoder = new TextEncoder();
  let socket = null;
  let closing = false;
  let readOnly = false;

  function send(text) {
    if (socket && socket.readyState === WebSocket.OPEN && !readOnly) socket.send(encoder.encode(text));
  }
  term.onData(send);
  term.onBinary((s) => send(s));

  session(function connect(url, ticket, onUp, onDrop) {
    if (socket) { closing = true; socket.close(); }
    closing = false;
    readOnly = ticket.read_only;
    term.options.disableStdin = readOnly;
    document.getElementById("readonly-banner").hidden = !readOnly;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { onUp(); term.focus(); send("\r"); };
    ws.onmessage = (e) => term.write(typeof e.data === "string" ? e.data : new Uint8Array(e.data));
    ws.onclose = (e) => {
      if (ws !== socket) return;
      const reasons = {
        4000: "the VM stopped", 4001: "you logged out", 4002: "session time is over", 4005: "the VM moved",
      };
      if (e.code === 4001) closing = true;
      onDrop(reasons[e.code] || (e.wasClean ? "" : "connection lost"), closing, e.code === 4005);
    };
    socket = ws;
  });

  document.getElementById("send-keys").addEventListener("change", (e) => {
    const map = { "ctrl-c": "\x03", "ctrl-d": "\x04", "ctrl-z": "\x1a", "ctrl-l": "\x0c", esc: "\x1b", "ctrl-]": "\x1d" };
    if (map[e.target.value]) send(map[e.target.value]);
    e.target.value = "";
    term.focus();
  });
  document.getElementById("paste-send").addEventListener("click", () => {
    send(document.getElementById("paste-text").value.replace(/\n/g, "\r"));
    term.focus();
  });
  document.getElementById("disconnect").addEventListener("click", () => { closing = true; if (socket) socket.close(); });
})();
