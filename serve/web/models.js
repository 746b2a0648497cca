// Engineers: runs with gate reports and charts, promote / roll back, pending approvals, hand-off tickets.
"use strict";

const $ = (id) => document.getElementById(id);
const showError = (m) => { $("error").textContent = m || ""; };
const runId = (r) => r.run_id || r.id || r.name;

function liveId(live) { return live ? (live.run_id || live.id || live.name || null) : null; }

function gateOf(run) { return run.gate || run.gate_report || null; }

function passed(run) {
  const gate = gateOf(run);
  if (run.gate_passed !== undefined) return run.gate_passed;
  if (gate && gate.passed !== undefined) return gate.passed;
  return null;
}

// A small bar chart, base vs candidate per category, drawn from the gate report's numbers.
function bars(gate) {
  const rows = gate && (gate.per_category || gate.categories);
  if (!rows) return null;
  const entries = Array.isArray(rows) ? rows.map((r) => [r.category || r.name, r]) : Object.entries(rows);
  if (!entries.length) return null;
  const ns = "http://www.w3.org/2000/svg";
  const w = 34, h = 120, svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "bars"); svg.setAttribute("data-testid", "gate-chart");
  svg.setAttribute("width", String(entries.length * (2 * w + 16) + 10)); svg.setAttribute("height", String(h + 30));
  entries.forEach(([name, r], i) => {
    const vals = [["base", r.base], ["cand", r.candidate ?? r.cand]];
    vals.forEach(([cls, v], j) => {
      const value = typeof v === "object" && v !== null ? (v.next_action_acc ?? v.accuracy ?? 0) : (v ?? 0);
      const rect = document.createElementNS(ns, "rect");
      const x = 10 + i * (2 * w + 16) + j * w, bh = Math.max(1, value * h);
      rect.setAttribute("class", cls); rect.setAttribute("x", x); rect.setAttribute("y", h - bh);
      rect.setAttribute("width", w - 4); rect.setAttribute("height", bh);
      const title = document.createElementNS(ns, "title"); title.textContent = `${name} ${cls}: ${(value * 100).toFixed(1)}%`;
      rect.append(title); svg.append(rect);
    });
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", 10 + i * (2 * w + 16)); t.setAttribute("y", h + 14); t.textContent = String(name).slice(0, 12);
    svg.append(t);
  });
  return svg;
}

// The run's PNG charts (gate: base vs candidate per category; loss curve), fetched with the key.
async function chartImages(run) {
  const out = [];
  for (const name of run.charts || []) {
    const url = await Api.blobUrl(`/api/models/runs/${encodeURIComponent(runId(run))}/files/${encodeURIComponent(name)}`);
    if (url) out.push(Api.el("img", { src: url, alt: name, "data-testid": `chart-${name}`, style: "max-width:48%;margin-right:1%" }));
  }
  return out;
}

async function renderRuns(data) {
  const live = liveId(data.live);
  const kind = data.live && data.live.kind ? ` (${data.live.kind})` : "";
  $("live").textContent = live ? `live: ${live}${kind}` : "live: the default model";
  const rows = [];
  for (const run of data.runs) {
    const id = runId(run);
    const ok = passed(run);
    const gate = gateOf(run);
    const head = Api.el("div", { class: "row" },
      Api.el("b", {}, id), " ",
      ok === null ? Api.el("span", { class: "badge" }, "no gate") :
        Api.el("span", { class: `badge ${ok ? "pass" : "fail"}`, "data-testid": "gate-badge" }, ok ? "gate passed" : "gate failed"),
      id === live ? Api.el("span", { class: "badge live", "data-testid": "live-badge" }, "live") : "",
      Api.el("button", { class: "primary", style: "margin-left:auto", "data-testid": "promote", "data-run-id": id,
        onclick: () => promote(id) }, "Promote"));
    const detail = Api.el("div", {});
    detail.append(Api.el("div", { class: "muted" }, `status: ${run.status || "?"}${run.kind ? " · " + run.kind : ""}`));
    const learned = run.live_data || { conversations: 0, corrections: 0, exports: [] };
    detail.append(Api.el("div", { class: "muted", "data-testid": "live-data" }, learned.conversations
      ? `learned from ${learned.conversations} live conversation${learned.conversations === 1 ? "" : "s"} (${learned.corrections} correction${learned.corrections === 1 ? "" : "s"}; export ${learned.exports.map((e) => String(e.sha256).slice(0, 12)).join(", ")})`
      : "live data: none (synthesized transcripts only)"));
    if (gate) {
      const pct = (x) => (typeof x === "number" ? (x * 100).toFixed(1) + "%" : "?");
      const b = gate.base || {}, c = gate.candidate || {};
      detail.append(Api.el("div", { "data-testid": "gate-summary" },
        `next-action accuracy ${pct(b.next_action_acc)} → ${pct(c.next_action_acc)}; validity ${pct(b.valid_rate)} → ${pct(c.valid_rate)}`));
      if (gate.reason) detail.append(Api.el("div", { class: "muted" }, gate.reason));
      const svg = bars(gate);
      if (svg) detail.append(Api.el("div", { class: "muted" }, "next-action accuracy per category: grey base, blue candidate"), svg);
    }
    for (const img of await chartImages(run)) detail.append(img);
    rows.push(Api.el("div", { "data-testid": "run", "data-run-id": id, style: "border-bottom:1px solid var(--line);padding:.6rem 0" }, head, detail));
  }
  $("runs").replaceChildren(...(rows.length ? rows : [Api.el("div", { class: "muted" }, "no runs yet")]));
}

async function refresh() {
  showError("");
  await Promise.all([refreshRuns(), refreshApprovals(), refreshTickets()]);
}

async function refreshRuns() {
  try { await renderRuns(await Api.call("GET", "/api/models/runs")); } catch (err) { showError(err.message); }
}

async function refreshApprovals() {
  try {
    const a = await Api.call("GET", "/api/approvals");
    $("approvals").replaceChildren(...(a.approvals.length ? a.approvals.map((x) => {
      const id = x.approval_id || x.id;
      return Api.el("div", { class: "row", "data-testid": "approval" },
        Api.el("span", {}, `${id} · ${x.tool || ""} · ${x.amount ?? ""} · ${x.conversation_id || ""}`),
        Api.el("button", { class: "primary", "data-testid": "approve", onclick: () => decide(id, true) }, "Approve"),
        Api.el("button", { class: "danger", "data-testid": "reject", onclick: () => decide(id, false) }, "Reject"));
    }) : [Api.el("span", {}, "none waiting")]));
  } catch (err) { $("approvals").textContent = err.message; }
}

async function refreshTickets() {
  try {
    const t = await Api.call("GET", "/api/tickets");
    $("tickets").replaceChildren(...(t.tickets.length ? t.tickets.map((x) =>
      Api.el("div", { "data-testid": "ticket" }, Api.el("b", {}, x.ticket_id || x.id), ` ${x.status || ""} · ${x.summary || ""}`))
      : [Api.el("span", {}, "no tickets")]));
  } catch (err) { $("tickets").textContent = err.message; }
}

async function promote(id) {
  try { await Api.call("POST", "/api/models/promote", { run_id: id }); await refresh(); }
  catch (err) { showError(err.message); }
}

async function decide(id, approved) {
  try { await Api.call("POST", `/api/approvals/${encodeURIComponent(id)}`, { approved }); await refresh(); }
  catch (err) { showError(err.message); }
}

$("rollback").addEventListener("click", async () => {
  try { await Api.call("POST", "/api/models/rollback"); await refresh(); } catch (err) { showError(err.message); }
});
Api.keyBar(refresh);
if (Api.key()) refresh();
