/* Shared helpers for alabel pages: CSRF-aware JSON fetch, small formatters, safe element building.
   User text is only ever set through textContent, never innerHTML. */
(function () {
  "use strict";

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  const RETRIES_ON_503 = 5;

  /* fetch JSON; resolves {status, ok, data} and never throws on HTTP errors (network errors give status 0). */
  async function api(method, url, body, options) {
    const init = Object.assign({
      method: method,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() },
    }, options || {});
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    // 503 means the database is restarting or was too slow: nothing was stored, and every write
    // here is idempotent (a label re-sent returns the stored one), so wait as told and send again.
    for (let attempt = 0; ; attempt++) {
      try {
        res = await fetch(url, init);
      } catch (err) {
        return { status: 0, ok: false, data: { detail: "The server could not be reached. Check your connection." } };
      }
      if (res.status !== 503 || attempt >= RETRIES_ON_503) break;
      const wait = Math.min(parseInt(res.headers.get("Retry-After") || "2", 10) || 2, 10);
      await new Promise(function (resolve) { setTimeout(resolve, wait * 1000); });
    }
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = { detail: "Unexpected reply from the server (" + res.status + ")." }; }
    }
    return { status: res.status, ok: res.ok, data: data };
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) {
      if (v === null || v === undefined || v === false) return;
      if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pct(x, digits) {
    return x === null || x === undefined ? "–" : (100 * x).toFixed(digits === undefined ? 0 : digits) + "%";
  }

  function num(x, digits) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(digits === undefined ? 2 : digits);
  }

  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return "just now";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  function capitalise(text) { return text.charAt(0).toUpperCase() + text.slice(1).replace(/\.$/, ""); }

  function errorCode(reply) {
    const d = reply && reply.data;
    return d && d.error && d.error.code ? d.error.code : "";
  }

  function detail(reply, fallback) {
    const d = reply && reply.data;
    // The REST API answers {"error": {"code", "message"}}; the UI's own JSON reads answer {"detail"}.
    if (d && d.error && typeof d.error.message === "string") return capitalise(d.error.message) + ".";
    if (d && typeof d.detail === "string") return d.detail;
    if (d && typeof d === "object") {
      const first = Object.values(d)[0];
      if (Array.isArray(first) && typeof first[0] === "string") return first[0];
    }
    return fallback;
  }

  /* Token highlights: [[token, score], ...] -> words shaded by |score|; wordpieces (##x) join their word.
     Returns the number of words drawn. */
  function renderTokens(box, tokens) {
    box.replaceChildren();
    const words = [];
    (tokens || []).forEach(function (t) {
      const tok = String(t[0]); const score = Number(t[1]) || 0;
      if (/^\[(CLS|SEP|PAD)\]$|^<\/?s>$/.test(tok)) return;
      if (tok.startsWith("##") && words.length) {
        const w = words[words.length - 1]; w.text += tok.slice(2); w.score += score;
      } else {
        words.push({ text: tok.replace(/^\u2581|^\u0120/, ""), score: score });
      }
    });
    const max = words.reduce(function (m, w) { return Math.max(m, Math.abs(w.score)); }, 0) || 1;
    words.forEach(function (w) {
      const span = el("span", { class: "tok " + (w.score >= 0 ? "pos" : "neg"),
        title: (w.score >= 0 ? "toward " : "against ") + "the prediction: " + w.score.toFixed(3) }, w.text);
      span.style.setProperty("--s", (Math.abs(w.score) / max).toFixed(2));
      box.appendChild(span);
      box.appendChild(document.createTextNode(" "));
    });
    return words.length;
  }

  window.alabel = { renderTokens: renderTokens,  csrfToken: csrfToken, api: api, el: el, pct: pct, num: num, ago: ago, detail: detail, errorCode: errorCode };
})();
