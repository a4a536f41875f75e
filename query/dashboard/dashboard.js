/* The Switchboard dashboard: polls /api/dashboard with the token as a Bearer header
   and redraws every panel, without reloading the page. */
"use strict";

(() => {
  const TOKEN_KEY = "switchboard-token";
  const FILTERS = ["campaign", "number", "account", "since", "until", "bucket_s"];
  const query = new URLSearchParams(location.search);
  const refreshMs = Math.max(500, Number(query.get("refresh") || 2000));

  // The token arrives once in ?token=; keep it for this tab and take it out of the URL
  // (and so out of the history and any screenshot of the address bar).
  let token = query.get("token") || sessionStorage.getItem(TOKEN_KEY) || "";
  if (query.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, token);
    query.delete("token");
    history.replaceState(null, "", location.pathname + (query.toString() ? "?" + query : ""));
  }

  const $ = (id) => document.getElementById(id);
  const form = $("filters");
  const seenAlerts = new Set();
  let firstLoad = true, timer = null;

  for (const name of FILTERS) if (query.get(name)) form.elements[name].value = query.get(name);

  function filterParams() {
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const value = form.elements[name].value.trim();
      // datetime-local has no zone; the form says UTC, so the API gets UTC
      if (value) params.set(name, (name === "since" || name === "until") ? value + "+00:00" : value);
    }
    return params;
  }

  function setStatus(state, text) {
    document.body.dataset.state = state;
    $("status").textContent = text;
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (response.status === 401) throw new Error("the API refused the token: open /dashboard?token=<your token>");
    if (!response.ok) throw new Error("the API answered " + response.status + ": " + (await response.text()).slice(0, 200));
    return response;
  }

  const pct = (rate) => (rate === null || rate === undefined ? "–" : (rate * 100).toFixed(1) + "%");
  const num = (v) => (v === null || v === undefined ? "–" : String(v));
  const ms = (iso) => Date.parse(iso);
  const utc = (iso) => (iso ? iso.slice(5, 19).replace("T", " ") : "");

  function fillTable(id, rows, cells, isNew) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      const tr = body.insertRow(), td = tr.insertCell();
      td.colSpan = $(id).tHead.rows[0].cells.length; td.className = "empty"; td.textContent = "none";
      return;
    }
    for (const row of rows) {
      const tr = body.insertRow();
      if (isNew && isNew(row)) tr.className = "new";
      for (const value of cells(row)) {
        const td = tr.insertCell();
        td.textContent = value === null || value === undefined ? "" : String(value);
        if (typeof value === "number") td.className = "num";
      }
    }
  }

  function duration(seconds) {
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
    return h ? h + " h " + m + " min" : m + " min";
  }

  function render(data) {
    const p = data.panels;
    const s = p.summary[0] || {};
    $("delivery-rate").textContent = pct(s.delivery_rate);
    $("messages-total").textContent = num(s.messages);
    $("alert-count").textContent = num(p.firing.length);
    $("alert-count").parentElement.classList.toggle("firing", p.firing.length > 0);
    $("calls-total").textContent = num(s.calls);
    $("calls-minutes").textContent = num(s.minutes);
    $("avg-mos").textContent = s.avg_mos === null || s.avg_mos === undefined ? "–" : s.avg_mos.toFixed(2);
    $("dead-letters").textContent = num(s.dead_letters);
    $("dead-letters").title = s.dead_letters_by_reason || "";
    $("dead-letters").parentElement.classList.toggle("firing", (s.dead_letters || 0) > 0);
    $("failed-sends").textContent = num(s.failed_sends);
    $("failed-sends").title = s.failed_sends_by_kind || "";
    $("failed-sends").parentElement.classList.toggle("firing", (s.failed_sends || 0) > 0);

    const byCampaign = new Map();
    for (const r of p["delivery-rate"]) {
      if (!byCampaign.has(r.campaign)) byCampaign.set(r.campaign, []);
      byCampaign.get(r.campaign).push([ms(r.bucket_start), r.delivery_rate === null ? null : r.delivery_rate * 100]);
    }
    Charts.line($("rate-chart"), [...byCampaign].map(([name, points]) => ({ name, points })),
                { min: 0, max: 100, format: (v) => Math.round(v) + "%" });

    const funnel = ["queued", "sent", "delivered", "undelivered", "failed", "unconfirmed"];
    const colors = { delivered: "#3fb950", undelivered: "#d29922", failed: "#f85149", unconfirmed: "#8a98a6" };
    Charts.bars($("funnel-chart"), funnel.map((k) => ({ label: k, value: s[k] || 0, color: colors[k] || "#58a6ff" })));

    const failures = p.failures.slice(0, 8);
    Charts.bars($("errors-chart"), failures.map((r) => ({
      label: (r.error_code || "no code") + " " + r.kind, value: r.failures, color: "#f85149", note: r.meaning,
    })), { labelWidth: 130 });
    fillTable("errors-table", p.failures, (r) => [r.kind, r.error_code || "—", r.meaning, r.failures, r.share_pct]);

    Charts.line($("mos-chart"), [{ name: "average MOS", points: p.mos.map((r) => [ms(r.bucket_start), r.avg_mos]) }],
                { min: 1, max: 5, line: data.mos_floor ?? 3.5 });

    fillTable("calls-table", p.calls, (r) => [r.kind, r.campaign || "—", r.calls, r.completed, r.failed, r.busy,
                                               r.no_answer, r.minutes, r.avg_mos]);
    fillTable("reconciled-table", p.reconciled, (r) => [r.kind, r.campaign || "—", r.final_statuses,
                                                         r.reconciled, r.reconciled_pct]);
    fillTable("firing-table", p.firing, (r) => [utc(r.started_at), duration(r.firing_for_s), r.type, r.scope,
                                                r.value, r.threshold, r.silenced ? "silenced" : ""]);
    fillTable("alerts-table", p.alerts, (r) => [utc(r.raised_at), r.state + (r.repeat ? " #" + r.repeat : "")
                                                + (r.silenced ? " (silenced)" : ""), r.type, r.scope, r.count,
                                                r.threshold, r.value],
              (r) => !firstLoad && !seenAlerts.has(r.alert_id));
    for (const r of p.alerts) seenAlerts.add(r.alert_id);
    fillTable("dead-letters-table", p["dead-letters"], (r) => [r.reason, r.stage, r.topic, r.dead, r.replayed,
                                                                utc(r.last_dead_at), r.last_message]);
    fillTable("windows-table", p["failure-windows"], (r) => [utc(r.window_start) + " +" + r.window_s + "s", r.kind,
                                                             r.scope, r.failures, r.total, r.failure_pct]);
    firstLoad = false;
    document.body.dataset.updated = data.generated_at;
  }

  async function poll() {
    clearTimeout(timer);
    try {
      if (!token) throw new Error("this dashboard needs the API token: open /dashboard?token=<your token>");
      const response = await api("/api/dashboard?" + filterParams());
      render(await response.json());
      setStatus("live", "live · updated " + new Date().toISOString().slice(11, 19) + " UTC");
    } catch (error) {
      setStatus("error", error.message);
    }
    timer = setTimeout(poll, refreshMs);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = filterParams();
    for (const name of ["since", "until"]) if (params.has(name)) params.set(name, form.elements[name].value);
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
    poll();
  });

  // An <a href> cannot send the Bearer header, so fetch the CSV and hand it over as a file.
  for (const button of document.querySelectorAll("[data-export]")) {
    button.addEventListener("click", async () => {
      try {
        const response = await api("/api/exports/" + button.dataset.export + "?" + filterParams());
        const link = document.createElement("a");
        link.href = URL.createObjectURL(await response.blob());
        link.download = button.dataset.export + ".csv";
        link.click();
        URL.revokeObjectURL(link.href);
      } catch (error) {
        setStatus("error", error.message);
      }
    });
  }

  window.addEventListener("resize", () => poll());
  poll();
})();
