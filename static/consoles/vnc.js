(async function () {
  "use strict";
  const { session, cfg } = window.ovmConsole;
  // noVNC's npm package is ES modules (core/); its URL comes from the page (static files may be hashed).
  let RFB;
  try {
    RFB = (await import(cfg.rfbUrl)).default;
  } catch (e) {
    window.ovmConsole.setStatus("noVNC could not be loaded: " + e.message, "error");
    throw e;
  }
  const screen = document.getElementById("screen");
  const KEYS = {
    Control_L: 0xffe3, Alt_L: 0xffe9, Shift_L: 0xffe1, Delete: 0xffff, BackSpace: 0xff08, Tab: 0xff09,
    Return: 0xff0d, Escape: 0xff1b, Print: 0xff61, Super_L: 0xffeb, F1: 0xffbe,
  };
  let rfb = null;
  let closing = false;
  // Whether rfb still has a connection: "disconnected" is final for an RFB object, and
  // disconnecting it again only makes noVNC log an error.
  let live = false;

  function hangUp() {
    if (rfb && live) { closing = true; rfb.disconnect(); }
  }

  function combo(names) {
    if (!rfb) return;
    const syms = names.map((n) => (n.startsWith("F") && n.length <= 3 ? KEYS.F1 + Number(n.slice(1)) - 1 : KEYS[n]));
    syms.forEach((s) => rfb.sendKey(s, null, true));
    syms.slice().reverse().forEach((s) => rfb.sendKey(s, null, false));
    rfb.focus();
  }

  // QEMU maps a plain keysym to the scancode of its key on the VM's keymap but presses no
  // modifier for it: Shift or AltGr is held around the characters that need it on that layout
  // (keymaps.js; the page knows the VM's keymap).
  const ALTGR = 0xfe03;  // ISO_Level3_Shift

  // Keysym for one character (X11: Latin-1 maps to itself, the rest to 0x01000000 + code point).
  function keysym(ch) {
    if (ch === "\n" || ch === "\r") return KEYS.Return;
    if (ch === "\t") return KEYS.Tab;
    const cp = ch.codePointAt(0);
    return cp < 0x100 ? cp : 0x01000000 + cp;
  }

  session(function connect(url, ticket, onUp, onDrop) {
    hangUp();
    closing = false;
    screen.textContent = "";
    const own = new RFB(screen, url, { shared: true });
    rfb = own;
    live = true;
    rfb.scaleViewport = document.getElementById("scale").checked;
    rfb.viewOnly = ticket.read_only;
    rfb.focusOnClick = true;
    rfb.addEventListener("connect", () => { onUp(); rfb.focus(); });
    rfb.addEventListener("disconnect", (e) => {
      if (own !== rfb) return;  // an earlier session, replaced on purpose
      live = false;
      onDrop(e.detail.clean ? "" : "connection lost", closing);
    });
    rfb.addEventListener("desktopname", (e) => { screen.dataset.desktop = e.detail.name; });
    window.ovmRfb = rfb;
  });

  document.getElementById("scale").addEventListener("change", (e) => { if (rfb) rfb.scaleViewport = e.target.checked; });
  document.getElementById("ctrl-alt-del").addEventListener("click", () => { if (rfb) { rfb.sendCtrlAltDel(); rfb.focus(); } });
  document.getElementById("send-keys").addEventListener("change", (e) => {
    if (e.target.value) combo(e.target.value.split("+"));
    e.target.value = "";
  });
  document.getElementById("paste-send").addEventListener("click", () => {
    const box = document.getElementById("paste-text");
    if (!rfb) return;
    for (const ch of box.value) {
      const { shift, altgr } = window.ovmKeymaps.modifiersFor(cfg.keymap, ch);
      if (altgr) rfb.sendKey(ALTGR, null, true);
      if (shift) rfb.sendKey(KEYS.Shift_L, null, true);
      rfb.sendKey(keysym(ch), null);
      if (shift) rfb.sendKey(KEYS.Shift_L, null, false);
      if (altgr) rfb.sendKey(ALTGR, null, false);
    }
    rfb.focus();
  });
  document.getElementById("disconnect").addEventListener("click", hangUp);
})();
