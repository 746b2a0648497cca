// Engineers: the queue of flagged conversations; each turn with its tool calls and results (PII scrubbed);
// for an assistant step, mark it good or write the step it should have been (a tool call from the choices, or a reply).
"use strict";

const $ = (id) => document.getElementById(id);
const showError = (m) => { $("error").textContent = m || ""; };
let current = null;

async function loadQueue() {
  try {
    const reason = $("reason").value;
    const data = await Api.call("GET", "/api/review" + (reason ? `?reason=${encodeURIComponent(reason)}` : ""));
    $("queue").replaceChildren(...(data.conversations.length ? data.conversations.map((c) =>
      Api.el("button", { "data-testid": "queued", "data-conversation-id": c.id, onclick: () => open(c.id) },
        `${new Date(c.flagged_at * 1000).toLocaleString()} · ${c.reasons.join(", ")} · ${c.turns} turn${c.turns === 1 ? "" : "s"}` +
        (c.reviewed_steps ? ` · ${c.reviewed_steps} reviewed` : "")))
      : [Api.el("span", {}, "nothing flagged")]));
  } catch (err) { $("queue").textContent = err.message; }
}

function callText(call) {
  const fn = call.function || {};
  let args = fn.arguments;
  try { args = JSON.stringify(typeof args === "string" ? JSON.parse(args) : args); } catch { /* as it came */ }
  return `${fn.name}(${args})`;
}

function messageText(m) {
  if (m.tool_calls && m.tool_calls.length) return m.tool_calls.map(callText).join("\n");
  return m.content || "";
}

// The correction form of one step: an action from the step's choices, then each argument's value.
function fixForm(step) {
  const form = Api.el("div", { class: "fix", "data-testid": "fix-form" });
  const action = Api.el("select", { "data-testid": "fix-action" },
    ...step.choices.map((c) => Api.el("option", { value: c.name }, c.name)));
  const fields = Api.el("div", { "data-testid": "fix-arguments" });
  function renderFields() {
    const choice = step.choices.find((c) => c.name === action.value);
    fields.replaceChildren();
    if (!choice) return;
    if (choice.name === "reply") {
      fields.append(Api.el("textarea", { "data-testid": "fix-reply", "data-arg": "reply", placeholder: "the reply the agent should have given" }));
      return;
    }
    for (const arg of choice.arguments) {
      let input;
      if (arg.kind === "text" || !arg.values.length) input = Api.el("input", { "data-arg": arg.name, "data-kind": arg.kind, placeholder: arg.name });
      else {
        input = Api.el("select", { "data-arg": arg.name, "data-kind": arg.kind, ...(arg.kind === "many" ? { multiple: "multiple" } : {}) },
          ...arg.values.map((v) => Api.el("option", { value: v }, v)));
      }
      input.setAttribute("data-testid", `fix-arg-${arg.name}`);
      fields.append(Api.el("label", { class: "muted" }, arg.name), input);
    }
  }
  action.addEventListener("change", renderFields);
  renderFields();
  const save = Api.el("button", { class: "primary", "data-testid": "fix-save", onclick: async () => {
    const body = { verdict: "corrected" };
    if (action.value === "reply") body.reply = fields.querySelector("[data-arg=reply]").value;
    else {
      const args = {};
      for (const input of fields.querySelectorAll("[data-arg]")) {
        args[input.dataset.arg] = input.dataset.kind === "many" ? [...input.selectedOptions].map((o) => o.value) : input.value;
      }
      body.tool_call = { name: action.value, arguments: args };
    }
    await decide(step.index, body);
  } }, "Save correction");
  form.append(Api.el("label", { class: "muted" }, "the step it should have been"), action, fields, save);
  return form;
}

async function decide(index, body) {
  showError("");
  try {
    await Api.call("POST", `/api/review/${encodeURIComponent(current)}/steps/${index}`, body);
    await open(current);
    await loadQueue();
  } catch (err) { showError(err.message); }
}

function verdictLine(review) {
  if (!review) return null;
  const what = review.verdict === "good" ? "marked good" : `corrected to: ${messageText(review.message || {})}`;
  return Api.el("div", { class: "ok", "data-testid": "step-verdict" },
    `${what} · by ${review.reviewer} · ${new Date(review.created_at * 1000).toLocaleString()}`);
}

async function open(id) {
  showError("");
  try {
    const data = await Api.call("GET", `/api/review/${encodeURIComponent(id)}`);
    current = id;
    $("title").textContent = `Conversation ${id}`;
    const ratings = data.ratings.map((r) => `turn ${r.turn}: ${r.value === "up" ? "👍" : "👎"}${r.comment ? " “" + r.comment + "”" : ""}`);
    $("flags").replaceChildren(
      Api.el("div", {}, ...data.flags.map((f) => Api.el("span", { class: "badge fail", "data-testid": "flag", "data-reason": f.reason, title: f.detail }, `turn ${f.turn}: ${f.reason}`))),
      ratings.length ? Api.el("div", { "data-testid": "ratings" }, ratings.join(" · ")) : "");
    const steps = new Map(data.steps.map((s) => [s.index, s]));
    const rows = [];
    data.messages.forEach((m, i) => {
      if (m.role === "system") return;
      const row = Api.el("div", { class: `step ${m.role}`, "data-testid": `step-${m.role}`, "data-index": String(i) },
        Api.el("div", { class: "muted" }, `#${i} ${m.role}${m.name ? " · " + m.name : ""}`),
        Api.el("pre", { "data-testid": "step-text" }, messageText(m)));
      const step = steps.get(i);
      if (step) {
        const line = verdictLine(step.review);
        if (line) row.append(line);
        const fix = fixForm(step);
        fix.hidden = true;
        row.append(Api.el("div", { class: "row" },
          Api.el("button", { "data-testid": "mark-good", onclick: () => decide(i, { verdict: "good" }) }, "Mark good"),
          Api.el("button", { "data-testid": "correct", onclick: () => { fix.hidden = !fix.hidden; } }, "Correct…")), fix);
      }
      rows.push(row);
    });
    $("steps").replaceChildren(...rows);
  } catch (err) { showError(err.message); }
}

$("reason").addEventListener("change", loadQueue);
Api.keyBar(loadQueue);
if (Api.key()) loadQueue();
