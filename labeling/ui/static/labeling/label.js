/* The labeling page: lease an item, label it by keyboard, skip, undo, keep the lease alive.
   All document text goes through textContent (never innerHTML). */
(function () {
  "use strict";
  const A = window.alabel;
  const config = JSON.parse(document.getElementById("label-config").textContent);
  const projectId = config.project.id;
  const API = "/api/v1";
  const RENEW_MS = Math.max(30, Math.min(120, config.project.lease_minutes * 20)) * 1000;
  const POLL_MS = 15000;
  const HIDE_KEY = "alabel.hideModelView";
  const ACCEPT_KEY = config.accept_suggestion_key;  // declared once, in labeling/models.py
  // Multi-label projects: label keys toggle labels in a set, Enter confirms it (an empty set: "none applies").
  const MULTI = !!config.multi;
  const SEP = config.set_separator || ",";
  const ORDER = config.labels.map(function (l) { return l.name; });
  if (MULTI) document.body.classList.add("multi");

  const $ = function (id) { return document.getElementById(id); };
  const labelButtons = Array.from(document.querySelectorAll(".label-btn"));
  const keyToLabel = {};
  labelButtons.forEach(function (b) { if (b.dataset.key) keyToLabel[b.dataset.key] = b.dataset.label; });
  const labelText = {};
  config.labels.forEach(function (l) { labelText[l.name] = l.text; });

  /* A set answer: its names in label-set order, stored joined by SEP ("" is the empty set). */
  function ordered(names) { const on = new Set(names); return ORDER.filter(function (n) { return on.has(n); }); }
  function stored(names) { return ordered(names).join(SEP); }
  function parse(text) { return text ? text.split(SEP) : []; }
  function answerText(answer) {
    if (!MULTI) return labelText[answer] || answer;
    const names = parse(answer);
    return names.length ? names.map(function (n) { return labelText[n] || n; }).join(", ") : "none applies";
  }

  const state = {
    current: null,      // {assignment, document, prediction, suggestion, reason, shownAt}
    history: [],        // [{annotationId, item, label}] most recent last
    undo: null,         // the history entry being re-labeled
    toggled: new Set(), // multi-label: the labels toggled on for the shown item
    busy: false,
    expired: false,
    empty: false,
    championVersion: config.progress.champion ? config.progress.champion.version : null,
  };

  /* ---------- messages ---------- */
  function announce(text) {
    const box = $("notices");
    box.replaceChildren(A.el("p", { class: "toast" }, text));
  }

  function alertBanner(text, action) {
    const box = $("alerts");
    box.replaceChildren();
    if (!text) return;
    const p = A.el("div", { class: "banner error" });
    p.appendChild(A.el("span", {}, text));
    if (action) {
      const b = A.el("button", { type: "button", class: "primary" }, action.text);
      b.addEventListener("click", action.run);
      p.appendChild(b);
    }
    box.appendChild(p);
  }

  function modelNotice(text) {
    let n = $("model-notice");
    if (!n) {
      n = A.el("div", { id: "model-notice", class: "banner success" });
      $("notices").after(n);
    }
    n.textContent = text;
  }

  /* ---------- rendering ---------- */
  function setEnabled(on) {
    labelButtons.forEach(function (b) { b.disabled = !on; });
    $("skip-btn").disabled = !on || !!state.undo;
    $("flag-btn").disabled = !on || !!state.undo;
    $("undo-btn").disabled = state.history.length === 0 || !!state.undo;
  }

  function reasonText(item) {
    const r = item.reason || {};
    if (r.holdout) return "Holdout item, served blind to measure the model honestly.";
    const strategy = config.strategies[r.strategy] || r.strategy || "the queue order";
    let s = "Chosen by " + strategy;
    if (r.score !== undefined && r.score !== null) s += " · score " + A.num(r.score, 3);
    return s + ".";
  }

  function renderItem(item, previousLabel) {
    const doc = item.document;
    $("doc-id").textContent = "#" + doc.id;
    $("doc-text").textContent = doc.text;
    $("doc-text").scrollTop = 0;
    $("reason").textContent = reasonText(item);
    if (MULTI) {
      state.toggled = new Set(previousLabel ? parse(previousLabel) : []);
      renderToggled();
    } else {
      labelButtons.forEach(function (b) {
        b.setAttribute("aria-pressed", previousLabel && b.dataset.label === previousLabel ? "true" : "false");
      });
    }
    renderModel(item);
    renderSuggestion(item);
  }

  function renderToggled() {
    labelButtons.forEach(function (b) { b.setAttribute("aria-pressed", state.toggled.has(b.dataset.label) ? "true" : "false"); });
    const names = ordered(Array.from(state.toggled));
    $("set-chosen").textContent = names.length
      ? "Toggled: " + names.map(function (n) { return labelText[n] || n; }).join(", ") + ". Enter confirms this set."
      : "Nothing toggled: Enter confirms “none applies”.";
  }

  function toggle(name) {
    if (state.busy || labelButtons[0].disabled) return;
    if (state.toggled.has(name)) state.toggled.delete(name); else state.toggled.add(name);
    renderToggled();
  }

  function confirmSet() {
    if (state.busy || labelButtons[0].disabled) return;
    submitLabel(stored(Array.from(state.toggled)));
  }

  function renderSuggestion(item) {
    const s = !state.undo && item.suggestion;  // never on a blind holdout item: the API sends none
    $("suggestion").hidden = !s;
    if (!s) return;
    $("sugg-label").textContent = answerText(s.label);
    $("sugg-score").textContent = s.score === null || s.score === undefined ? "" : "(" + A.pct(s.score) + ")";
  }

  function acceptSuggestion() {
    const s = state.current && !state.undo && state.current.suggestion;
    if (!s || labelButtons[0].disabled) return;
    submitLabel(s.label);
  }

  function renderModel(item) {
    const blind = !!(item.reason && item.reason.holdout);
    const pred = blind ? null : item.prediction;
    $("model-blind").hidden = !blind;
    $("model-none").hidden = blind || !!pred;
    $("model-pred").hidden = !pred;
    $("attr-tokens").replaceChildren();
    if (!pred) return;
    $("pred-label").textContent = answerText(pred.label);
    $("pred-conf").textContent = A.pct(pred.confidence);
    $("pred-meter").style.width = A.pct(pred.confidence, 1);
    $("u-entropy").textContent = A.num(pred.entropy, 3);
    $("u-mi").textContent = A.num(pred.mutual_info, 3);
    $("u-margin").textContent = A.num(pred.margin, 3);
    loadAttributions(item.document.id);
  }

  async function loadAttributions(docId, tries) {
    tries = tries || 0;
    $("attr-status").textContent = tries ? "Computing highlights…" : "Loading highlights…";
    const reply = await A.api("GET", "/ui/projects/" + projectId + "/documents/" + docId + "/attributions.json");
    const shown = state.undo ? state.undo.item : state.current;
    if (!shown || shown.document.id !== docId) return;  // the user moved on meanwhile
    if (reply.status === 202) {  // a worker is computing them: ask again shortly, for up to a minute
      if (tries < 30) setTimeout(function () { loadAttributions(docId, tries + 1); }, 2000);
      else $("attr-status").textContent = "Highlights are taking long; they will show next time.";
      return;
    }
    if (!reply.ok) { $("attr-status").textContent = A.detail(reply, "Highlights are not available."); return; }
    renderTokens(reply.data.tokens || []);
  }

  function renderTokens(tokens) {
    const n = A.renderTokens($("attr-tokens"), tokens);
    $("attr-status").textContent = n ? "" : "No highlights for this item.";
  }

  function showEmpty() {
    state.current = null; state.empty = true;
    $("doc-id").textContent = "–";
    $("reason").textContent = "";
    $("doc-text").textContent = "Nothing left to label right now. New items appear here as documents are imported or the model rescores the pool; this page checks again every 15 seconds.";
    $("model-blind").hidden = true; $("model-pred").hidden = true; $("model-none").hidden = true;
    setEnabled(false);
  }

  /* ---------- actions ---------- */
  async function loadNext() {
    state.busy = true; state.expired = false;
    const reply = await A.api("POST", API + "/projects/" + projectId + "/queue/next", {});
    state.busy = false;
    if (reply.status === 204) { showEmpty(); return; }
    if (!reply.ok) { alertBanner(A.detail(reply, "Could not load the next item."), { text: "Try again", run: loadNext }); return; }
    alertBanner("");
    state.empty = false;
    state.current = { assignment: reply.data.assignment, document: reply.data.document,
      prediction: reply.data.prediction, suggestion: reply.data.suggestion || null,
      reason: reply.data.reason || {}, shownAt: performance.now() };
    renderItem(state.current);
    setEnabled(true);
    $("doc-text").focus({ preventScroll: true });
  }

  function leaseLost(reply) {
    const code = A.errorCode(reply);
    return code === "lease_expired" || code === "assignment_closed" || reply.status === 404;
  }

  function explainExpired() {
    state.expired = true;
    setEnabled(false);
    alertBanner("Your hold on this item ran out (holds last " + config.project.lease_minutes +
      " minutes without activity), so it went back to the queue and your label was not saved. Nothing is lost: load the next item to go on.",
      { text: "Load the next item", run: loadNext });
  }

  async function submitLabel(name) {
    if (state.busy) return;
    if (state.undo) { return relabel(name); }
    const item = state.current;
    if (!item || state.expired) return;
    state.busy = true; setEnabled(false);
    const duration = Math.round(performance.now() - item.shownAt);
    const body = { duration_ms: Math.min(duration, 86400000), source: "ui" };
    if (MULTI) body.labels = parse(name); else body.label = name;
    const reply = await A.api("POST", API + "/assignments/" + item.assignment.id + "/annotation", body);
    state.busy = false;
    if (!reply.ok) {
      if (leaseLost(reply)) { explainExpired(); return; }
      alertBanner(A.detail(reply, "The label was not saved."), { text: "Try again", run: function () { alertBanner(""); setEnabled(true); } });
      return;
    }
    const ann = reply.data && (reply.data.annotation || reply.data);
    state.history.push({ annotationId: ann.id, item: item, label: name });
    if (state.history.length > 50) state.history.shift();
    announce("Saved “" + answerText(name) + "” for item #" + item.document.id + ".");
    bumpMine(1);
    await loadNext();
    pollProgress();  // queue and team counts move with every label
  }

  async function skip() {
    const item = state.current;
    if (state.busy || state.undo || !item || state.expired) return;
    state.busy = true; setEnabled(false);
    const reply = await A.api("POST", API + "/assignments/" + item.assignment.id + "/skip", {});
    state.busy = false;
    if (!reply.ok && leaseLost(reply)) { explainExpired(); return; }
    if (!reply.ok) { alertBanner(A.detail(reply, "Could not skip this item.")); setEnabled(true); return; }
    announce("Skipped item #" + item.document.id + ".");
    await loadNext();
  }

  function startUndo() {
    if (state.busy) return;
    if (state.undo) { announce("Already re-labeling the previous item: press a label key, or Esc."); return; }
    const entry = state.history[state.history.length - 1];
    if (!entry) { announce("Nothing to undo yet."); return; }
    state.undo = entry;
    $("undo-was").textContent = answerText(entry.label);
    $("undo-banner").hidden = false;
    renderItem(entry.item, entry.label);
    setEnabled(true);
    announce("Re-opened item #" + entry.item.document.id + (MULTI ? ". Toggle its labels and press Enter." : ". Choose its new label."));
    const pressed = MULTI ? null : labelButtons.find(function (b) { return b.dataset.label === entry.label; });
    (pressed || $("doc-text")).focus({ preventScroll: true });
  }

  function leaveUndo() {
    state.undo = null;
    $("undo-banner").hidden = true;
    if (state.current) { renderItem(state.current); setEnabled(true); $("doc-text").focus({ preventScroll: true }); }
    else if (state.empty) showEmpty();
    else setEnabled(false);
  }

  async function relabel(name) {
    const entry = state.undo;
    if (name === entry.label) { announce("Kept “" + answerText(name) + "”."); state.history.pop(); leaveUndo(); return; }
    state.busy = true;
    const reply = await A.api("PATCH", API + "/annotations/" + entry.annotationId, MULTI ? { labels: parse(name) } : { label: name });
    state.busy = false;
    if (!reply.ok) { alertBanner(A.detail(reply, "The change was not saved.")); return; }
    alertBanner("");
    state.history.pop();
    announce("Changed item #" + entry.item.document.id + " from “" + answerText(entry.label) +
      "” to “" + answerText(name) + "”.");
    leaveUndo();
  }

  /* ---------- flag: unclear, offensive, duplicate (+ a comment) -> the review queue ---------- */
  const flagKinds = Array.from(document.querySelectorAll("input[name=flag-kind]"));

  function openFlag() {
    if (state.busy || state.undo || !state.current || state.expired) return;
    $("flag-form").hidden = false;
    (flagKinds.find(function (r) { return r.checked; }) || flagKinds[0]).focus();
  }

  function closeFlag() {
    $("flag-form").hidden = true;
    $("flag-comment").value = "";
    $("doc-text").focus({ preventScroll: true });
  }

  async function sendFlag() {
    const item = state.current;
    if (state.busy || !item || state.expired) return;
    const kind = (flagKinds.find(function (r) { return r.checked; }) || flagKinds[0]).value;
    state.busy = true;
    const reply = await A.api("POST", API + "/projects/" + projectId + "/documents/" + item.document.id + "/flags",
      { kind: kind, comment: $("flag-comment").value });
    state.busy = false;
    if (!reply.ok) { alertBanner(A.detail(reply, "The flag was not sent.")); return; }
    closeFlag();
    // The item goes to the reviewers; give it back to the queue and go on with the next one.
    await skip();
    announce("Flagged item #" + item.document.id + " as " + kind + ": it is in the review queue.");
  }

  $("flag-form").addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { ev.preventDefault(); closeFlag(); return; }
    if (ev.key === "Enter" && !(ev.target.tagName === "TEXTAREA" && ev.shiftKey)) { ev.preventDefault(); sendFlag(); return; }
    const n = Number(ev.key);
    if (ev.target.tagName !== "TEXTAREA" && n >= 1 && n <= flagKinds.length) {
      ev.preventDefault(); flagKinds[n - 1].checked = true; flagKinds[n - 1].focus();
    }
  });
  $("flag-form").addEventListener("submit", function (ev) { ev.preventDefault(); sendFlag(); });
  $("flag-cancel").addEventListener("click", closeFlag);
  $("flag-btn").addEventListener("click", openFlag);

  /* ---------- lease keep-alive and release ---------- */
  async function renew() {
    const item = state.current;
    if (!item || state.expired || state.busy) return;
    const reply = await A.api("POST", API + "/assignments/" + item.assignment.id + "/renew", {});
    if (state.current !== item) return;
    if (reply.ok) { if (reply.data && reply.data.leased_until) item.assignment.leased_until = reply.data.leased_until; }
    else if (leaseLost(reply)) explainExpired();
  }

  function release() {
    const item = state.current;
    if (!item || state.expired) return;
    // keepalive lets the request outlive the page; unlike sendBeacon it can carry the JSON body and
    // the CSRF header the API expects.
    fetch(API + "/assignments/" + item.assignment.id + "/release", {
      method: "POST", keepalive: true, credentials: "same-origin", body: "{}",
      headers: { "Content-Type": "application/json", "X-CSRFToken": A.csrfToken() },
    }).catch(function () { /* the lease simply expires on its own */ });
    state.current = null;
  }

  /* ---------- progress ---------- */
  let mine = config.progress.labeled_today_mine;
  function bumpMine(n) { mine += n; $("stat-mine").textContent = mine; }

  function renderProgress(p) {
    mine = p.labeled_today_mine;
    $("stat-mine").textContent = p.labeled_today_mine;
    $("stat-team").textContent = p.labeled_today;
    $("stat-queue").textContent = p.queue_remaining;
    const c = p.champion;
    $("stat-model").textContent = c ? "v" + c.version : "none yet";
    let when = c ? "trained " + A.ago(c.trained_at) : "no model yet: labels train the first one";
    if (p.running_run) when += " · retraining: " + (p.running_run.stage || p.running_run.status) + " " + A.pct(p.running_run.progress);
    $("stat-model-when").textContent = when;
    if (c && state.championVersion !== null && c.version !== state.championVersion) {
      modelNotice("Model v" + c.version + " finished training and is now live: predictions and the queue order use it from the next item.");
    } else if (c && state.championVersion === null) {
      modelNotice("The first model (v" + c.version + ") is live: predictions appear from the next item.");
    }
    state.championVersion = c ? c.version : state.championVersion;
  }

  async function pollProgress() {
    const reply = await A.api("GET", "/ui/projects/" + projectId + "/progress.json");
    if (reply.ok) renderProgress(reply.data);
    if (state.empty && !state.busy) loadNext();
  }

  /* ---------- keyboard ---------- */
  document.addEventListener("keydown", function (ev) {
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if ((ev.ctrlKey || ev.metaKey) && !ev.altKey && ev.key.toLowerCase() === "z") { ev.preventDefault(); startUndo(); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.toLowerCase();
    if (key === "escape" && state.undo) { ev.preventDefault(); leaveUndo(); announce("Back to the current item."); return; }
    if (key === config.keys.undo) { ev.preventDefault(); startUndo(); return; }
    if (key === config.keys.skip) { ev.preventDefault(); skip(); return; }
    if (ev.key === "!") { ev.preventDefault(); openFlag(); return; }
    if (key === ACCEPT_KEY) { ev.preventDefault(); acceptSuggestion(); return; }
    // Enter confirms the set, unless it is pressing another focused button (skip, undo, guidelines ...).
    const otherButton = t && t.tagName === "BUTTON" && !t.classList.contains("label-btn");
    if (MULTI && ev.key === "Enter" && !otherButton && !$("flag-form").contains(t)) { ev.preventDefault(); confirmSet(); return; }
    if (keyToLabel[key] && !labelButtons[0].disabled) {
      ev.preventDefault();
      if (MULTI) toggle(keyToLabel[key]); else submitLabel(keyToLabel[key]);
    }
  });

  labelButtons.forEach(function (b) {
    b.addEventListener("click", function () { if (MULTI) toggle(b.dataset.label); else submitLabel(b.dataset.label); });
  });
  $("skip-btn").addEventListener("click", skip);
  $("accept-suggestion").addEventListener("click", acceptSuggestion);
  $("undo-btn").addEventListener("click", startUndo);

  function applyHide(hide) {
    document.body.classList.toggle("hide-model", hide);
    $("toggle-model").setAttribute("aria-pressed", hide ? "false" : "true");
    $("toggle-model").textContent = hide ? "Show the model's view" : "Hide the model's view";
  }
  $("toggle-model").addEventListener("click", function () {
    const hide = !document.body.classList.contains("hide-model");
    try { localStorage.setItem(HIDE_KEY, hide ? "1" : ""); } catch (e) { /* private mode */ }
    applyHide(hide);
  });
  try { applyHide(localStorage.getItem(HIDE_KEY) === "1"); } catch (e) { applyHide(false); }

  window.addEventListener("pagehide", release);
  // Back/forward cache: a page restored after pagehide released its item, so lease a fresh one.
  window.addEventListener("pageshow", function (ev) { if (ev.persisted) loadNext(); });
  setInterval(renew, RENEW_MS);
  setInterval(pollProgress, POLL_MS);
  renderProgress(config.progress);
  loadNext();
})();
