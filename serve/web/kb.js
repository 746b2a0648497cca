// Content owners: list, upload, edit, delete documents; status, last run report, rebuild, roll back.
"use strict";

const $ = (id) => document.getElementById(id);
const showError = (m) => { $("error").textContent = m || ""; };

function renderReport(report) {
  if (!report) { $("report").textContent = "no run yet"; return; }
  const counts = ["added", "updated", "unchanged", "deleted", "failed"]
    .filter((k) => report[k] !== undefined)
    .map((k) => `${k}: ${Array.isArray(report[k]) ? report[k].length : report[k]}`);
  $("report").replaceChildren(
    Api.el("div", { "data-testid": "kb-report-summary" }, `${report.action || "run"} · ${counts.join(" · ")}`),
    Api.el("pre", {}, JSON.stringify(report, null, 2)),
  );
}

async function refresh() {
  showError("");
  try {
    const status = await Api.call("GET", "/api/kb/status");
    const bits = [];
    for (const k of ["documents", "points", "chunks", "version", "previous_version", "backend", "last_change"]) {
      if (status[k] !== undefined && status[k] !== null) bits.push(`${k}: ${status[k]}`);
    }
    $("status").replaceChildren(Api.el("div", {}, bits.join(" · ")));
    renderReport(status.last_report);
    const data = await Api.call("GET", "/api/documents");
    $("docs").replaceChildren(...data.documents.map((d) => {
      const id = d.id || d.doc_id;
      return Api.el("tr", { "data-testid": "doc-row", "data-doc-id": id },
        Api.el("td", {}, id), Api.el("td", {}, d.title || ""), Api.el("td", {}, d.version ?? ""),
        Api.el("td", {}, d.chunks ?? (d.chunk_ids ? d.chunk_ids.length : "")),
        Api.el("td", {},
          Api.el("button", { "data-testid": "doc-edit", onclick: () => edit(id) }, "Edit"), " ",
          Api.el("button", { class: "danger", "data-testid": "doc-delete", onclick: () => remove(id) }, "Delete")));
    }));
  } catch (err) { showError(err.message); }
}

async function edit(id) {
  try {
    const d = await Api.call("GET", `/api/documents/${encodeURIComponent(id)}`);
    $("form-title").textContent = `Edit ${id}`;
    $("doc-id").value = id;
    $("doc-title").value = d.title || "";
    $("doc-tags").value = (d.tags || []).join(", ");
    $("doc-content").value = d.content || d.text || "";
  } catch (err) { showError(err.message); }
}

async function remove(id) {
  if (!window.confirm(`Delete ${id}? It disappears from answers at once.`)) return;
  try { renderReport(await Api.call("DELETE", `/api/documents/${encodeURIComponent(id)}`)); await refresh(); }
  catch (err) { showError(err.message); }
}

async function save(event) {
  event.preventDefault();
  const id = $("doc-id").value.trim();
  const body = {
    title: $("doc-title").value.trim(),
    content: $("doc-content").value,
    tags: $("doc-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
  };
  try { renderReport(await Api.call("PUT", `/api/documents/${encodeURIComponent(id)}`, body)); await refresh(); }
  catch (err) { showError(err.message); }
}

async function upload(event) {
  event.preventDefault();
  const form = new FormData();
  for (const f of $("files").files) form.append("files", f);
  try { renderReport(await Api.call("POST", "/api/documents/upload", undefined, { form })); await refresh(); }
  catch (err) { showError(err.message); }
}

async function search(event) {
  event.preventDefault();
  try {
    const data = await Api.call("GET", `/api/kb/search?q=${encodeURIComponent($("q").value)}`);
    $("hits").replaceChildren(...data.passages.map((p) =>
      Api.el("div", { class: "muted", "data-testid": "kb-hit" }, Api.el("b", {}, p.label), " ", p.text.slice(0, 200))));
  } catch (err) { showError(err.message); }
}

async function action(path) {
  try { renderReport(await Api.call("POST", path)); await refresh(); } catch (err) { showError(err.message); }
}

$("form").addEventListener("submit", save);
$("upload").addEventListener("submit", upload);
$("search").addEventListener("submit", search);
$("clear").addEventListener("click", () => { $("form").reset(); $("form-title").textContent = "New document"; });
$("rebuild").addEventListener("click", () => action("/api/kb/rebuild"));
$("rollback").addEventListener("click", () => action("/api/kb/rollback"));
Api.keyBar(refresh);
if (Api.key()) refresh();
