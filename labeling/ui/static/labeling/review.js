/* The review page: lease the next review item, decide it by keyboard (accept a given label or
   override), comment, skip, keep the hold alive. Everything goes through the review API
   (/api/v1/projects/<id>/review/...); all user text is set through textContent, never innerHTML. */
(function () {
  "use strict";
  const A = window.alabel;
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const projectId = config.project.id;
  const BASE = "/api/v1/projects/" + projectId + "/review";
  const RENEW_MS = Math.max(30, Math.min(120, config.project.lease_minutes * 20)) * 1000;
  const POLL_MS = 15000;

  const $ = function (id) { return document.getElementById(id); };
  const buttons = Array.from(document.querySelectorAll(".decide-btn"));
  const keyToLabel = {};
  buttons.forEach(function (b) { if (b.dataset.key) keyToLabel[b.dataset.key] = b.dataset.label; });
  const labelText = {};
  config.labels.forEach(function (l) { labelText[l.name] = l.text; });
  // Multi-label projects: an answer is a set stored as its names in label-set order joined by SEP.
  const MULTI = !!config.multi;
  const SEP = config.set_separator || ",";
  const ORDER = config.labels.map(function (l) { return l.name; });
  if (MULTI) document.body.classList.add("multi");
  function parse(text) { return text ? text.split(SEP) : []; }
  function stored(names) { const on = new Set(names); return ORDER.filter(function (n) { return on.has(n); }).join(SEP); }
  const textOf = function (name) {
    if (!MULTI) return labelText[name] || name;
    const names = parse(name);
    return names.length ? names.map(function (n) { return labelText[n] || n; }).join(", ") : "none applies";
  };
  let toggled = new Set();

  function renderToggled() {
    if (!MULTI) return;
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", toggled.has(b.dataset.label) ? "true" : "false"); });
    const names = stored(Array.from(toggled));
    $("set-chosen").textContent = names
      ? "Toggled: " + textOf(names) + ". Enter decides this set."
      : "Nothing toggled: Enter decides “none applies”.";
  }

  function toggle(name) {
    if (state.busy || buttons[0].disabled) return;
    if (toggled.has(name)) toggled.delete(name); else toggled.add(name);
    renderToggled();
  }

  const state = {
    item: null,      // the review item as the API returns it
    busy: false,
    lost: false,     // the hold ran out or someone else decided: the page waits for "load the next item"
    empty: false,
    skipped: [],     // item ids skipped on this page: not leased again until the page is reloaded
    mine: 0,
    summary: config.summary,
  };

  /* ---------- messages ---------- */
  function announce(text) { $("notices").replaceChildren(A.el("p", { class: "toast" }, text)); }

  function alertBanner(text, action) {
    const box = $("alerts");
    box.replaceChildren();
    if (!text) return;
    const banner = A.el("div", { class: "banner error" });
    banner.appendChild(A.el("span", {}, text));
    if (action) {
      const b = A.el("button", { type: "button", class: "primary" }, action.text);
      b.addEventListener("click", action.run);
      banner.appendChild(b);
    }
    box.appendChild(banner);
  }

  function renderSummary() {
    const s = state.summary || {};
    const by = s.open_by_reason || {};
    $("stat-open").textContent = s.open === undefined ? "–" : s.open;
    $("stat-reasons").textContent = [by.disagreement || 0, by.noise || 0, by.flag || 0, by.audit || 0].join(" · ");
    $("stat-mine").textContent = state.mine;
    $("stat-changed").textContent = s.changed_label === undefined ? "–" : s.changed_label;
  }

  /* ---------- rendering ---------- */
  function setEnabled(on) {
    buttons.forEach(function (b) { b.disabled = !on; });
    $("skip-btn").disabled = !on;
    $("comment-btn").disabled = !on;
  }

  function flagsText(item) {
    return (item.flags || []).map(function (f) { return f.kind + " (" + f.author + ")"; }).join(", ");
  }

  function reasonText(item) {
    const flags = flagsText(item);
    const why = baseReasonText(item);
    if (item.reason === "flag") return why + ": " + flags + ". Their comments are below.";
    return flags ? why + " Also flagged: " + flags + "." : why;
  }

  function baseReasonText(item) {
    const title = config.reasons[item.reason] || item.reason;
    if (item.reason === "flag") return title;
    if (item.reason === "noise") {
      const score = item.score === null || item.score === undefined ? "" : " · score " + A.num(item.score, 3);
      return title + score + ": the label-noise ranking thinks the given label is likely wrong.";
    }
    if (item.reason === "audit") return title + ": a random check of a single annotator's label.";
    return title + ": the labels given reach no consensus.";
  }

  function consensusText(item) {
    const c = item.consensus || {};
    const share = A.pct(c.agreement);
    let s;
    if (c.reason === "agreed" && c.label !== null && c.label !== undefined && (MULTI || c.label)) s = "Consensus: " + textOf(c.label) + " (" + share + " agreement).";
    else if (c.reason === "tie") s = "No consensus: a tie between the labels given.";
    else if (c.reason === "low_agreement") s = "No consensus: the most given label has " + share + ", below the project's minimum agreement.";
    else s = "No consensus yet.";
    if (item.final_label !== null && item.final_label !== undefined && (MULTI || item.final_label)) {
      s += " Trains on " + textOf(item.final_label) + " now (decided by " + (item.decided_by || "annotators") + ").";
    } else {
      s += " The model does not train on it until it is decided.";
    }
    return s;
  }

  function renderItem(item) {
    const doc = item.document;
    $("doc-id").textContent = "#" + doc.id;
    $("reason").textContent = reasonText(item);
    $("doc-text").textContent = doc.text;
    $("doc-text").scrollTop = 0;
    $("facts").hidden = false;
    const body = $("given-body");
    body.replaceChildren();
    const givenBy = {};
    item.labels.forEach(function (l) {
      (MULTI ? parse(l.label) : [l.label]).forEach(function (name) {
        (givenBy[name] = givenBy[name] || []).push(l.annotator);
      });
      const tr = A.el("tr");
      tr.appendChild(A.el("td", {}, l.annotator));
      tr.appendChild(A.el("td", { class: "given-label" }, textOf(l.label)));
      tr.appendChild(A.el("td", { class: "muted", title: l.labeled_at }, A.ago(l.labeled_at)));
      if (MULTI) {
        const accept = A.el("button", { type: "button", class: "accept-set" }, "Accept this set");
        accept.addEventListener("click", function () { decide(l.label); });
        tr.appendChild(A.el("td")).appendChild(accept);
      }
      body.appendChild(tr);
    });
    toggled = new Set();
    renderToggled();
    if (!item.labels.length) body.appendChild(A.el("tr")).appendChild(A.el("td", { colspan: "3", class: "muted" }, "No labels."));
    buttons.forEach(function (b) {
      const who = givenBy[b.dataset.label] || [];
      b.classList.toggle("given", who.length > 0);
      b.querySelector(".given-by").textContent = MULTI
        ? (who.length ? "in " + who.length + " of " + item.labels.length + " sets" : "in no set")
        : (who.length ? "accept · " + who.join(", ") : "override");
    });
    $("consensus").textContent = consensusText(item);
    renderHistory(item);
    renderModel(item);
  }

  function renderHistory(item) {
    const list = $("comments");
    list.replaceChildren();
    const rows = item.decisions.map(function (d) {
      const text = d.reviewer + " decided " + textOf(d.label) + " (" + d.action + ")" + (d.comment ? ": " + d.comment : "");
      return { at: d.created_at, text: text };
    }).concat(item.comments.map(function (c) { return { at: c.created_at, text: c.author + ": " + c.text }; }));
    rows.sort(function (a, b) { return a.at < b.at ? -1 : 1; });
    rows.forEach(function (r) { list.appendChild(commentRow(r.text, r.at)); });
  }

  function commentRow(text, at) {
    const li = A.el("li");
    li.appendChild(A.el("span", {}, text));
    li.appendChild(A.el("span", { class: "muted small", title: at }, " · " + A.ago(at)));
    return li;
  }

  function renderModel(item) {
    const blind = item.document.split === "holdout";
    const pred = blind ? null : item.prediction;
    $("model-blind").hidden = !blind;
    $("model-none").hidden = blind || !!pred;
    $("model-pred").hidden = !pred;
    if (!pred) return;
    $("pred-label").textContent = textOf(pred.label);
    $("pred-conf").textContent = A.pct(pred.confidence);
    $("pred-version").textContent = pred.model_version;
    $("pred-meter").style.width = A.pct(pred.confidence, 1);
    const probs = $("pred-probs");
    probs.replaceChildren();
    Object.entries(pred.probabilities || {}).forEach(function ([name, p]) {
      probs.appendChild(A.el("dt", {}, textOf(name)));
      probs.appendChild(A.el("dd", {}, A.pct(p, 1)));
    });
  }

  function showEmpty() {
    state.item = null; state.empty = true;
    $("doc-id").textContent = "–";
    $("reason").textContent = "";
    $("facts").hidden = true;
    $("comments").replaceChildren();
    closeComment();
    let text = "Nothing to review right now. Disagreements, labels the model flags as likely wrong, items annotators flag and audit picks appear here; this page checks again every 15 seconds.";
    if (state.skipped.length) text += " You skipped " + state.skipped.length + " item(s) on this page: reload the page to see them again.";
    $("doc-text").textContent = text;
    $("model-blind").hidden = true; $("model-pred").hidden = true; $("model-none").hidden = true;
    buttons.forEach(function (b) { b.classList.remove("given"); b.querySelector(".given-by").textContent = ""; });
    setEnabled(false);
  }

  /* ---------- actions ---------- */
  async function loadNext() {
    state.busy = true; state.lost = false;
    const reply = await A.api("POST", BASE + "/next", { exclude: state.skipped });
    state.busy = false;
    if (reply.status === 204) { alertBanner(""); showEmpty(); return; }
    if (!reply.ok) { alertBanner(A.detail(reply, "Could not load the next item."), { text: "Try again", run: loadNext }); return; }
    alertBanner("");
    state.empty = false;
    state.item = reply.data;
    closeComment();
    renderItem(state.item);
    setEnabled(true);
    $("doc-text").focus({ preventScroll: true });
  }

  function holdLost(reply) {
    const code = A.errorCode(reply);
    return code === "review_leased" || code === "not_in_review" || reply.status === 404;
  }

  function explainLost(reply) {
    state.lost = true;
    setEnabled(false);
    const code = A.errorCode(reply);
    const why = code === "not_in_review"
      ? "This item was decided meanwhile (by another reviewer), so your decision was not saved."
      : "Your hold on this item ran out (holds last " + config.project.lease_minutes +
        " minutes without activity) and another reviewer has it now, so nothing was saved.";
    alertBanner(why + " Load the next item to go on.", { text: "Load the next item", run: loadNext });
  }

  async function decide(name) {
    const item = state.item;
    if (state.busy || state.lost || !item) return;
    state.busy = true; setEnabled(false);
    const reply = await A.api("POST", BASE + "/items/" + item.id + "/decision", MULTI ? { labels: parse(name) } : { label: name });
    state.busy = false;
    if (!reply.ok) {
      if (holdLost(reply)) { explainLost(reply); return; }
      alertBanner(A.detail(reply, "The decision was not saved."), { text: "Try again", run: function () { alertBanner(""); setEnabled(true); } });
      return;
    }
    const last = reply.data.decisions[reply.data.decisions.length - 1] || { action: "", replaced_label: "" };
    state.mine += 1;
    state.summary.open = Math.max(0, (state.summary.open || 0) - 1);
    const by = state.summary.open_by_reason || {};
    by[item.reason] = Math.max(0, (by[item.reason] || 0) - 1);
    if (last.replaced_label && last.replaced_label !== name) state.summary.changed_label = (state.summary.changed_label || 0) + 1;
    renderSummary();
    announce("Decided “" + textOf(name) + "” (" + last.action + ") for item #" + item.document.id + ".");
    await loadNext();
  }

  async function skip() {
    const item = state.item;
    if (state.busy || state.lost || !item) return;
    state.busy = true; setEnabled(false);
    state.skipped.push(item.id);
    const reply = await A.api("POST", BASE + "/items/" + item.id + "/release", {});
    state.busy = false;
    if (!reply.ok && !holdLost(reply)) {
      state.skipped.pop();
      alertBanner(A.detail(reply, "Could not skip this item.")); setEnabled(true); return;
    }
    announce("Skipped item #" + item.document.id + ": it goes back to the queue for another reviewer.");
    await loadNext();
  }

  /* ---------- comments ---------- */
  function openComment() {
    if (!state.item || state.lost) return;
    $("comment-form").hidden = false;
    $("comment-text").focus();
  }

  function closeComment() {
    $("comment-form").hidden = true;
    $("comment-text").value = "";
  }

  async function saveComment() {
    const item = state.item;
    const text = $("comment-text").value.trim();
    if (!item || state.busy) return;
    if (!text) { announce("Type a comment first, or press Esc to close the box."); return; }
    state.busy = true;
    const reply = await A.api("POST", BASE + "/items/" + item.id + "/comments", { text: text });
    state.busy = false;
    if (!reply.ok) { alertBanner(A.detail(reply, "The comment was not saved.")); return; }
    alertBanner("");
    if (state.item !== item) return;
    item.comments.push(reply.data);
    $("comments").appendChild(commentRow(reply.data.author + ": " + reply.data.text, reply.data.created_at));
    closeComment();
    announce("Comment saved on item #" + item.document.id + ". Press a label key to decide.");
    $("doc-text").focus({ preventScroll: true });
  }

  $("comment-text").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); saveComment(); }
    else if (ev.key === "Escape") { ev.preventDefault(); closeComment(); $("doc-text").focus({ preventScroll: true }); }
  });
  $("comment-form").addEventListener("submit", function (ev) { ev.preventDefault(); saveComment(); });

  /* ---------- hold keep-alive and release ---------- */
  async function renew() {
    const item = state.item;
    if (!item || state.lost || state.busy) return;
    const reply = await A.api("POST", BASE + "/items/" + item.id + "/renew", {});
    if (state.item !== item) return;
    if (reply.ok) item.leased_until = reply.data.leased_until;
    else if (holdLost(reply)) explainLost(reply);
  }

  function release() {
    const item = state.item;
    if (!item || state.lost) return;
    // keepalive lets the request outlive the page and still carry the CSRF header (sendBeacon cannot).
    fetch(BASE + "/items/" + item.id + "/release", {
      method: "POST", keepalive: true, credentials: "same-origin", body: "{}",
      headers: { "Content-Type": "application/json", "X-CSRFToken": A.csrfToken() },
    }).catch(function () { /* the hold simply runs out on its own */ });
    state.item = null;
  }

  /* ---------- keyboard ---------- */
  document.addEventListener("keydown", function (ev) {
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.toLowerCase();
    if (key === config.keys.comment) { ev.preventDefault(); openComment(); return; }
    if (key === config.keys.skip) { ev.preventDefault(); skip(); return; }
    const otherButton = t && t.tagName === "BUTTON" && !t.classList.contains("decide-btn");
    if (MULTI && ev.key === "Enter" && !otherButton && !buttons[0].disabled) {
      ev.preventDefault(); decide(stored(Array.from(toggled))); return;
    }
    if (keyToLabel[key] && !buttons[0].disabled) {
      ev.preventDefault();
      if (MULTI) toggle(keyToLabel[key]); else decide(keyToLabel[key]);
    }
  });

  buttons.forEach(function (b) {
    b.addEventListener("click", function () { if (MULTI) toggle(b.dataset.label); else decide(b.dataset.label); });
  });
  $("skip-btn").addEventListener("click", skip);
  $("comment-btn").addEventListener("click", openComment);

  window.addEventListener("pagehide", release);
  // Back/forward cache: a page restored after pagehide released its item, so lease one again.
  window.addEventListener("pageshow", function (ev) { if (ev.persisted) loadNext(); });
  setInterval(renew, RENEW_MS);
  setInterval(function () { if (state.empty && !state.busy) loadNext(); }, POLL_MS);
  renderSummary();
  loadNext();
})();
