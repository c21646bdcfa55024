// Which modifiers a character needs on the VM's keyboard layout, for typing pasted text.
//
// QEMU's VNC server turns a keysym into the scancode of the key that carries it in the VM's
// keymap, but presses no modifier for it: the client must hold Shift (or AltGr) around the
// characters that need them *on that layout*. A US table on a German guest types "Z" for "Y"
// only by luck and ")" as "=" (Shift+0 is "=" there). Letters keep their case by Shift on
// every layout here; the tables list the other characters.
(function (root) {
  "use strict";
  const LAYOUTS = {
    "en-us": { shift: '~!@#$%^&*()_+{}|:"<>?', altgr: "" },
    "en-gb": { shift: '¬!"£$%^&*()_+{}:@~<>?|', altgr: "€" },
    de: { shift: '°!"§$%&/()=?`*\'>;:_ÄÖÜ', altgr: "²³{[]}\\@€~|µ" },
    fr: { shift: "1234567890°+¨£%µ?./§>", altgr: "~#{[|`\\^@]}€¤" },
  };

  function layout(keymap) {
    return LAYOUTS[keymap] || LAYOUTS["en-us"];
  }

  // { shift, altgr } for one character on ``keymap`` (unknown keymaps are typed as en-us).
  function modifiersFor(keymap, ch) {
    const l = layout(keymap);
    const isLetter = ch.length === 1 && ch.toLowerCase() !== ch.toUpperCase() && ch === ch.toUpperCase();
    const altgr = l.altgr.includes(ch);
    return { shift: !altgr && (isLetter || l.shift.includes(ch)), altgr };
  }

  const api = { modifiersFor, supported: Object.keys(LAYOUTS) };
  root.ovmKeymaps = api;
  if (typeof module !== "undefined" && module.exports) module.exports = api;
})(typeof window !== "undefined" ? window : globalThis);
