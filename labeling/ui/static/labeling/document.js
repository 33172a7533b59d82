/* Document page: fetch the token highlights after the page is shown (they take ~0.5 s to compute). */
(function () {
  "use strict";
  const A = window.alabel;
  const status = document.getElementById("attr-status");
  if (!status) return;
  A.api("GET", status.dataset.url).then(function (reply) {
    if (!reply.ok) { status.textContent = A.detail(reply, "Highlights are not available."); return; }
    const n = A.renderTokens(document.getElementById("attr-tokens"), reply.data.tokens);
    status.textContent = n ? "" : "No highlights for this document.";
  });
})();
