/* The guidelines panel on the labeling and review pages: ? (or the button) opens and closes it, Esc closes.
   Its HTML was rendered and sanitised on the server; this script only shows and hides it. It listens
   in the capture phase, before the page's own keys, so Esc closes the panel and does nothing else. */
(function () {
  "use strict";
  const panel = document.getElementById("guidelines-panel");
  const openBtn = document.getElementById("guidelines-btn");
  if (!panel) return;
  let returnTo = null;

  function open() {
    returnTo = document.activeElement;
    panel.hidden = false;
    if (openBtn) openBtn.setAttribute("aria-expanded", "true");
    panel.focus({ preventScroll: false });
  }
  function close() {
    panel.hidden = true;
    if (openBtn) openBtn.setAttribute("aria-expanded", "false");
    if (returnTo && document.contains(returnTo)) returnTo.focus({ preventScroll: true });
  }
  function toggle() { if (panel.hidden) open(); else close(); }

  window.alabel.guidelinesOpen = function () { return !panel.hidden; };
  if (openBtn) openBtn.addEventListener("click", toggle);
  document.getElementById("guidelines-close").addEventListener("click", close);
  window.addEventListener("keydown", function (ev) {
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "?") { ev.preventDefault(); ev.stopImmediatePropagation(); toggle(); return; }
    if (ev.key === "Escape" && !panel.hidden) { ev.preventDefault(); ev.stopImmediatePropagation(); close(); }
  }, true);
})();
