/* The project dashboard: fetch one JSON document, draw charts, poll while a retrain runs. */
(function () {
  "use strict";
  const A = window.alabel, C = window.charts;
  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const pid = config.project;
  const $ = function (id) { return document.getElementById(id); };
  let data = null;
  let timer = null;

  function alertBanner(text, kind) {
    const box = $("alerts");
    box.replaceChildren();
    if (text) box.appendChild(A.el("div", { class: "banner " + (kind || "error") }, text));
  }

  /* ---------- guidelines editor (managers) ---------- */
  const guidelinesForm = $("guidelines-form");
  if (guidelinesForm) {
    guidelinesForm.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const labels = {};
      guidelinesForm.querySelectorAll(".label-note").forEach(function (t) { if (t.value.trim()) labels[t.dataset.label] = t.value; });
      $("guidelines-save").disabled = true;
      const reply = await A.api("PUT", "/api/v1/projects/" + pid + "/guidelines",
        { markdown: $("guidelines-markdown").value, labels: labels });
      $("guidelines-save").disabled = false;
      $("guidelines-status").textContent = reply.ok ? "Saved: the labeling and review pages show them from their next load."
        : A.detail(reply, "The guidelines were not saved.");
    });
  }

  function labelColors(labels) {
    const map = {};
    labels.forEach(function (l, i) { map[l] = C.PALETTE[i % C.PALETTE.length]; });
    return map;
  }

  // Figures from few items carry their 95% interval and n; below min_n the page says they are too few to judge.
  function range(iv, fmt) {
    return iv ? fmt(iv[0]) + "–" + fmt(iv[1]) : "";
  }

  function accuracyText(f) {
    if (!f || f.accuracy === null || f.accuracy === undefined) return "–";
    const iv = range(f.accuracy_interval, function (v) { return A.pct(v, 0); });
    return A.pct(f.accuracy, 1) + (iv ? " (" + iv + ")" : "") + (f.n !== null ? " n " + f.n : "") +
      (f.too_small ? ", too few to judge" : "");
  }

  function eceText(f) {
    if (!f || f.ece === null || f.ece === undefined) return "–";
    const iv = range(f.ece_interval, function (v) { return A.num(v, 3); });
    return A.num(f.ece, 3) + (iv ? " (" + iv + ")" : "") + (f.too_small ? ", too few to judge" : "");
  }

  function smallSampleNote(f, what) {
    if (!f || f.n === null || f.n === undefined) return "";
    if (f.too_small) {
      return "Measured on " + f.n + " holdout items, fewer than " + f.min_n + ": too few to judge " + what +
        "; the 95% interval shows how far it could be off" +
        (f.ece_noise_floor !== null && f.ece_noise_floor !== undefined
          ? ", and a perfectly calibrated model would show an ECE of about " + A.num(f.ece_noise_floor, 2) + " on so few." : ".");
    }
    return "Measured on " + f.n + " holdout items; the 95% interval is shown beside each figure.";
  }

  function renderSummary(d) {
    $("c-labeled").textContent = d.counts.labeled;
    $("c-docs").textContent = d.counts.documents;
    $("c-holdout").textContent = d.counts.holdout_labeled;
    $("c-holdout-total").textContent = d.counts.holdout;
    const c = d.champion;
    $("c-model").textContent = c ? "v" + c.version : "no model yet";
    $("c-model-when").textContent = c ? "champion · trained " + A.ago(c.trained_at) + " on " + c.label_count + " labels" : "labels train the first model";
    $("c-acc").textContent = c ? A.pct(c.accuracy, 1) : "–";
    const f = c ? c.figures : null;
    $("c-acc-note").textContent = f && f.accuracy_interval
      ? "95% " + range(f.accuracy_interval, function (v) { return A.pct(v, 0); }) + " · n " + f.n + (f.too_small ? " · too few to judge" : "")
      : "";
    $("c-f1").textContent = c ? A.pct(c.macro_f1, 1) : "–";
    $("c-coverage").textContent = A.pct(d.pool.coverage.share);
  }

  function renderRuns(d) {
    const live = d.running_run;
    $("run-live").hidden = !live;
    if (live) {
      const p = Math.round(100 * (live.progress || 0));
      $("run-stage").textContent = live.status === "queued" ? "queued, waiting for a worker" : "stage: " + (live.stage || "starting");
      $("run-pct").textContent = p + "%";
      $("run-fill").style.width = p + "%";
      $("run-bar").setAttribute("aria-valuenow", String(p));
    }
    const start = $("start-retrain");
    if (start) start.disabled = !!live;
    const rollback = $("rollback");
    if (rollback) rollback.disabled = !d.versions.some(function (v) { return v.status === "retired"; });
    const body = $("runs-body");
    body.replaceChildren();
    $("runs-empty").hidden = d.runs.length > 0;
    d.runs.forEach(function (r) {
      const tr = A.el("tr");
      const decision = r.promoted === true ? "promoted" : r.promoted === false ? "not promoted" : "";
      // the trigger column also says the run's tier and training time ("threshold · deep 412 s")
      const tier = r.tier ? " · " + r.tier + (r.train_seconds != null ? " " + Math.round(r.train_seconds) + " s" : "") : "";
      [("#" + r.id), r.trigger + tier, r.status + (r.status === "running" ? " (" + (r.stage || "") + " " + A.pct(r.progress) + ")" : ""),
        r.labels_used, r.version ? "v" + r.version + (r.model_status ? " · " + r.model_status : "") : "–",
        accuracyText(r.figures), A.pct(r.macro_f1, 1), eceText(r.figures)].forEach(function (v) { tr.appendChild(A.el("td", {}, v)); });
      const dec = A.el("td", { class: "decision" });
      if (decision) dec.appendChild(A.el("strong", {}, decision + (r.decision_reason || r.error ? ": " : "")));
      dec.appendChild(document.createTextNode(r.error || r.decision_reason || ""));
      tr.appendChild(dec);
      if (config.is_admin) {
        const td = A.el("td");
        if (r.model_id && (r.model_status === "candidate" || r.model_status === "rejected" || r.model_status === "retired")) {
          const b = A.el("button", { type: "button", class: "small", "data-promote": r.model_id }, "Promote v" + r.version);
          b.addEventListener("click", function () { promote(r.model_id, r.version); });
          td.appendChild(b);
        }
        tr.appendChild(td);
      }
      body.appendChild(tr);
    });
  }

  function renderCharts(d) {
    const lc = d.learning_curve;
    C.lineChart($("learning-curve"), [
      { name: "accuracy", color: C.PALETTE[0], points: lc.map(function (p) { return { x: p.label_count, y: p.accuracy, title: "v" + p.version + " · " + p.label_count + " labels · " + accuracyText({ accuracy: p.accuracy, accuracy_interval: p.accuracy_interval, n: p.n, too_small: p.too_small }) }; }) },
      { name: "macro-F1", color: C.PALETTE[1], points: lc.map(function (p) { return { x: p.label_count, y: p.macro_f1, title: "v" + p.version + " · " + p.label_count + " labels · " + A.pct(p.macro_f1, 1) }; }) },
    ], { xLabel: "labels", yLabel: "held-out score", emptyText: "No evaluated model yet: the curve starts with the first trained version." });

    const cal = d.calibration;
    if (cal) {
      $("cal-summary").textContent = "Model v" + cal.version + ": ECE " + A.num(cal.ece_uncalibrated, 3) + " before calibration, " +
        A.num(cal.ece, 3) + " after" + (cal.holdout_count ? " (" + cal.holdout_count + " holdout items)" : "") +
        (cal.figures && cal.figures.ece_interval ? ", 95% interval " + range(cal.figures.ece_interval, function (v) { return A.num(v, 3); }) : "") + ". " +
        smallSampleNote(cal.figures, "the calibration") + " Bars on the diagonal mean the confidence can be taken at its word.";
      C.reliability($("reliability"), cal.reliability_uncalibrated, cal.reliability);
    } else {
      $("cal-summary").textContent = "Reliability of the champion's confidence on the holdout.";
      C.empty($("reliability"), "No model yet, or it has no calibration data.");
    }

    const h = d.pool.histogram;
    const metricName = h && h.metric === "entropy" ? "predictive entropy" : "mutual information (BALD)";
    // A large project's prediction figures come from a seeded page sample of its documents (d.pool.sample).
    const sample = d.pool.sample;
    const sampleNote = sample
      ? " Estimated from a random sample of " + sample.documents.toLocaleString() + " of " + sample.of.toLocaleString() +
        " documents (counts scaled up; a bar of n sampled documents is good to about ±2/√n of itself)."
      : "";
    $("hist-caption").textContent = "Unlabeled pool documents by the champion's " + metricName + ", in nats. Further right: the model is less sure." + sampleNote;
    C.histogram($("uncertainty-hist"), h ? h.bins : [], { xLabel: metricName, yLabel: "documents", emptyText: "No model yet." });

    const colors = labelColors(d.project.labels);
    C.hbars($("class-balance"), d.pool.class_balance.map(function (r) { return { name: r.label, value: r.count, color: colors[r.label] }; }),
      { emptyText: "No model yet." });

    const cov = d.pool.coverage;
    $("coverage-line").textContent = d.champion
      ? "Model v" + d.champion.version + " has scored " + cov.scored_by_champion + " of " + cov.pool_documents +
        " pool documents (" + A.pct(cov.share) + ")." + (cov.share < 1 ? " New documents are scored in the background." : "") +
        (sample ? " Class balance and coverage: estimated from the same sample." : "")
      : "Nothing is scored before the first model.";

    const hourly = d.annotators.hourly;
    C.histogram($("hourly"), hourly.map(function (r, i) { return { lower: i, upper: i + 1, count: r.count, hour: r.hour }; }),
      { xLabel: "hours ago", noXTicks: false, xFormat: function (v) { return String(24 - Math.round(v)); }, color: C.PALETTE[2],
        binLabel: function (b) { return new Date(b.hour).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); } });
  }

  function renderPeople(d) {
    const body = $("people-body");
    body.replaceChildren();
    $("people-empty").hidden = d.annotators.people.length > 0;
    d.annotators.people.forEach(function (p) {
      const tr = A.el("tr");
      [p.annotator, p.labels, A.num(p.per_active_hour, 1),
        p.median_seconds === null ? "–" : A.num(p.median_seconds, 1) + " s"].forEach(function (v) { tr.appendChild(A.el("td", {}, v)); });
      body.appendChild(tr);
    });
  }

  function figureCells(f) {
    // A figure with too few overlapped items says so instead of a number.
    if (!f || !f.enough) return [(f && f.note) || "too few overlapped items", "–", f ? f.n_items : 0];
    return [A.num(f.value, 2), A.num(f.low, 2) + " – " + A.num(f.high, 2), f.n_items];
  }

  function renderMultiLabel(d) {
    const ml = d.multi_label;
    if (!ml || !$("ml-body")) return;
    const names = { micro_f1: "micro-F1", macro_f1: "macro-F1", samples_f1: "samples-F1", subset_accuracy: "subset accuracy",
      hamming_loss: "Hamming loss", ece: "ECE", mean_label_ece: "mean per-label ECE" };
    const shown = Object.keys(names).filter(function (k) { return ml.model[k] !== null && ml.model[k] !== undefined; });
    $("ml-model").textContent = ml.model_note
      ? "Model: " + ml.model_note + "."
      : "Model v" + ml.model_version + ": " + shown.map(function (k) {
        return names[k] + " " + (k === "hamming_loss" ? A.num(ml.model[k], 3) : A.pct(ml.model[k], 1));
      }).join(" · ") + ".";
    const body = $("ml-body");
    body.replaceChildren();
    ml.labels.forEach(function (l) {
      const a = l.agreement;
      const f1 = l.model && l.model.f1 !== undefined ? A.pct(l.model.f1, 1) : "–";
      const tr = A.el("tr");
      [l.name, l.pool, l.holdout, a && a.value !== null ? A.num(a.value, 2) : "–", f1,
        l.threshold === null || l.threshold === undefined ? "–" : A.num(l.threshold, 2)].forEach(function (v) { tr.appendChild(A.el("td", {}, v)); });
      body.appendChild(tr);
    });
    $("ml-none").textContent = "“None applies” (the empty set): " + ml.none_applies.pool + " answers in the pool, " +
      ml.none_applies.holdout + " on the holdout.";
  }

  function renderTeam(d) {
    const t = d.team;
    if (!t) return;
    $("team-policy").textContent = "Overlap " + t.overlap + " (" + t.overlap_scope + "), consensus needs " +
      A.pct(t.min_agreement) + " agreement; the top " + A.pct(t.noise_review_share) +
      " of each run's labels by likely error go to review" +
      (t.noise_hold_flagged ? " and stop training until decided." : " and keep training until decided.");
    const body = $("agreement-body");
    body.replaceChildren();
    const multi = !!t.agreement.masi_alpha;  // multi-label: pooled over (item, label) units, plus MASI on sets
    const rows = [[multi ? "Krippendorff's alpha (all labels)" : "Krippendorff's alpha", t.agreement.alpha],
      [multi ? "Fleiss' kappa (all labels)" : "Fleiss' kappa", t.agreement.fleiss_kappa]];
    if (multi) rows.push(["alpha on whole sets (MASI distance)", t.agreement.masi_alpha]);
    Object.keys(t.agreement.per_label || {}).forEach(function (name) { rows.push(["alpha, label " + name, t.agreement.per_label[name]]); });
    rows.forEach(function (r) {
      const tr = A.el("tr");
      [r[0]].concat(figureCells(r[1])).forEach(function (v) { tr.appendChild(A.el("td", {}, v)); });
      body.appendChild(tr);
    });
    const rv = t.review;
    $("review-summary").textContent = "Review: " + rv.open + " open, " + rv.decided + " decided, " +
      rv.changed_label + " changed a label; " + rv.flagged_noise + " flagged as likely mislabeled.";
    const fl = d.flags;
    if (fl && $("flag-summary")) {
      const k = fl.open_by_kind;
      $("flag-summary").textContent = "Flags in review: " + fl.open + " (unclear " + k.unclear + ", offensive " +
        k.offensive + ", duplicate " + k.duplicate + "); " + fl.total + " flagged in all.";
    }
    const quality = $("quality-body");
    if (!quality || !d.quality) return;
    quality.replaceChildren();
    const acc = function (v) { return v && v.accuracy && v.accuracy.value !== null ? A.pct(v.accuracy.value) + " (n " + v.n_items + ")" : "–"; };
    d.quality.annotators.forEach(function (p) {
      const tr = A.el("tr");
      [p.annotator, p.labels, acc(p.vs_consensus), acc(p.vs_reviewers), acc(p.vs_gold),
        p.median_seconds === null ? "–" : A.num(p.median_seconds, 1) + " s"].forEach(function (v) { tr.appendChild(A.el("td", {}, v)); });
      quality.appendChild(tr);
    });
  }

  /* ---------- embedding map (canvas) ---------- */
  const canvas = $("map");
  let mapPoints = [];

  function colorMode() { return document.querySelector("input[name=map-color]:checked").value; }

  function uncertaintyColor(t) {
    // light blue (sure) -> deep orange (unsure), readable on white
    const a = [147, 197, 253], b = [194, 65, 12];
    return "rgb(" + a.map(function (v, i) { return Math.round(v + (b[i] - v) * t); }).join(",") + ")";
  }

  function drawMap() {
    const d = data;
    const legendBox = $("map-legend");
    legendBox.replaceChildren();
    const ctx = canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || 900, cssH = canvas.clientHeight || 460;
    canvas.width = cssW * dpr; canvas.height = cssH * dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const pts = d ? d.map : [];
    mapPoints = [];
    if (!pts.length) {
      ctx.fillStyle = "#4b5563"; ctx.font = "15px system-ui, sans-serif"; ctx.textAlign = "center";
      ctx.fillText(d && d.champion ? "The champion has no map yet." : "No model yet: the map appears with the first model.", cssW / 2, cssH / 2);
      return;
    }
    const xs = pts.map(function (p) { return p.x; }), ys = pts.map(function (p) { return p.y; });
    const x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    const pad = 14;
    const sx = function (v) { return pad + (cssW - 2 * pad) * (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)); };
    const sy = function (v) { return cssH - pad - (cssH - 2 * pad) * (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0)); };
    const mode = colorMode();
    const colors = labelColors(d.project.labels);
    const maxU = Math.max.apply(null, pts.map(function (p) { return p.uncertainty || 0; })) || 1;
    pts.forEach(function (p) {
      const px = sx(p.x), py = sy(p.y);
      let fill;
      if (mode === "label") fill = colors[p.label] || "#6b7280";
      else if (mode === "uncertainty") fill = uncertaintyColor(Math.min(1, (p.uncertainty || 0) / maxU));
      else fill = p.labeled ? "#059669" : "#d1d5db";
      ctx.beginPath(); ctx.arc(px, py, p.labeled && mode !== "labeled" ? 4 : 3, 0, 2 * Math.PI);
      ctx.fillStyle = fill; ctx.globalAlpha = 0.85; ctx.fill();
      if (p.labeled && mode !== "labeled") { ctx.globalAlpha = 1; ctx.strokeStyle = "#111827"; ctx.lineWidth = 1; ctx.stroke(); }
      mapPoints.push({ px: px, py: py, p: p });
    });
    ctx.globalAlpha = 1;
    let items;
    if (mode === "label") items = d.project.labels.map(function (l) { return [colors[l], "predicted " + l]; }).concat([["#ffffff", "outlined: labeled"]]);
    else if (mode === "uncertainty") items = [[uncertaintyColor(0), "sure"], [uncertaintyColor(0.5), "unsure"], [uncertaintyColor(1), "most unsure (" + A.num(maxU, 2) + " nats)"]];
    else items = [["#059669", "labeled"], ["#d1d5db", "not labeled"]];
    items.forEach(function (it) {
      const sw = A.el("span", { class: "swatch" }); sw.style.background = it[0];
      const li = A.el("span", { class: "legend-item" }); li.appendChild(sw); li.appendChild(document.createTextNode(it[1]));
      legendBox.appendChild(li);
    });
    const top = $("map-top");
    top.replaceChildren();
    pts.filter(function (p) { return !p.labeled && p.split !== "holdout"; })
      .sort(function (a, b) { return (b.uncertainty || 0) - (a.uncertainty || 0); }).slice(0, 10)
      .forEach(function (p) {
        const li = A.el("li");
        li.appendChild(A.el("a", { href: docUrl(p.doc) }, "Document #" + p.doc + " · predicted " + p.label + " · uncertainty " + A.num(p.uncertainty, 3)));
        top.appendChild(li);
      });
  }

  function docUrl(id) { return "/projects/" + pid + "/documents/" + id + "/"; }

  function nearest(ev) {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left, y = ev.clientY - r.top;
    let best = null, bestD = 64;
    mapPoints.forEach(function (m) {
      const dd = (m.px - x) * (m.px - x) + (m.py - y) * (m.py - y);
      if (dd < bestD) { bestD = dd; best = m; }
    });
    return best;
  }

  canvas.addEventListener("mousemove", function (ev) {
    const m = nearest(ev), tip = $("map-tip");
    canvas.style.cursor = m ? "pointer" : "default";
    if (!m) { tip.hidden = true; return; }
    const blind = m.p.split === "holdout" && !m.p.labeled;
    tip.textContent = "#" + m.p.doc + (blind ? " · holdout" : " · predicted " + m.p.label + " · uncertainty " + A.num(m.p.uncertainty, 3)) + (m.p.labeled ? " · labeled" : "");
    tip.style.left = (m.px + 12) + "px"; tip.style.top = (m.py - 8) + "px"; tip.hidden = false;
  });
  canvas.addEventListener("mouseleave", function () { $("map-tip").hidden = true; });
  canvas.addEventListener("click", function (ev) { const m = nearest(ev); if (m) window.location.href = docUrl(m.p.doc); });
  document.querySelectorAll("input[name=map-color]").forEach(function (r) { r.addEventListener("change", drawMap); });
  window.addEventListener("resize", function () { if (data) drawMap(); });

  /* ---------- admin actions (staff only; the API enforces it too) ---------- */
  async function adminCall(url, done, button) {
    alertBanner("Working…", "neutral");
    if (button) button.disabled = true;
    const reply = await A.api("POST", url, {});
    if (button) button.disabled = false;
    if (!reply.ok) { alertBanner(A.detail(reply, "The action failed (" + reply.status + ").")); return; }
    alertBanner(done, "success");
    refresh();
  }

  function promote(modelId, version) {
    if (!window.confirm("Make model v" + version + " the champion? The pool is rescored with it.")) return;
    adminCall("/api/v1/projects/" + pid + "/models/" + modelId + "/promote", "Model v" + version + " is being promoted.");
  }

  if ($("start-retrain")) {
    $("start-retrain").addEventListener("click", function () {
      adminCall("/api/v1/projects/" + pid + "/training-runs/", "Retrain queued: its progress shows above.", $("start-retrain"));
    });
    $("rollback").addEventListener("click", function () {
      if (!window.confirm("Roll back to the previous champion?")) return;
      adminCall("/api/v1/projects/" + pid + "/models/rollback", "Rolled back to the previous champion.", $("rollback"));
    });
  }

  /* ---------- polling ---------- */
  async function refresh() {
    clearTimeout(timer);
    const reply = await A.api("GET", "/ui/projects/" + pid + "/dashboard.json");
    if (reply.ok) {
      data = reply.data;
      renderSummary(data); renderRuns(data); renderCharts(data); renderPeople(data); renderTeam(data); renderMultiLabel(data); drawMap();
      $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + (data.running_run ? " · refreshing every 3 s while a retrain runs" : " · refreshes every 15 s");
    } else {
      alertBanner(A.detail(reply, "Could not load the dashboard."));
    }
    timer = setTimeout(refresh, data && data.running_run ? 3000 : 15000);
  }
  refresh();
})();
