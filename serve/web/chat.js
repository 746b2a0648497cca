// Customers' chat: streaming replies, tool activity, clickable citations, hand-off and approval state.
"use strict";

const TOOL_WORDS = {
  search_policies: "checking our policies",
  find_user_id_by_email: "finding your account",
  find_user_id_by_name_zip: "finding your account",
  get_user_details: "looking up your account",
  get_order_details: "looking up your order",
  get_product_details: "looking up the product",
  get_item_details: "looking up the item",
  transfer_to_human_agents: "handing over to a colleague",
};

const $ = (id) => document.getElementById(id);
let conversation = null;
let busy = false;

function showError(message) { $("error").textContent = message || ""; }

function setState(conv) {
  const box = $("state");
  box.replaceChildren();
  if (conv && conv.handed_off) {
    box.append(Api.el("div", { class: "banner handoff", "data-testid": "handoff-state" }, "This conversation was handed to a human agent; they will reply here or by email."));
  }
}

function bubble(role, text) {
  const node = Api.el("div", { class: `msg ${role}`, "data-testid": `msg-${role}` });
  const body = Api.el("div", { class: "body" }, text || "");
  node.append(body);
  $("log").append(node);
  $("log").scrollTop = $("log").scrollHeight;
  return node;
}

async function showSource(c) {
  const panel = $("source");
  const text = Api.el("div", { "data-testid": "source-text", style: "white-space:pre-wrap" }, c.text || "loading…");
  panel.replaceChildren(
    Api.el("h2", {}, "Source"),
    Api.el("h3", { "data-testid": "source-title" }, c.title || c.doc_id || "policy"),
    Api.el("div", { class: "muted" }, [c.doc_id, c.section, c.version !== undefined ? "v" + c.version : ""].filter(Boolean).join(" · ")),
    text,
  );
  if (!c.doc_id) return;
  try {
    const policy = await Api.call("GET", `/api/policies/${encodeURIComponent(c.doc_id)}`);
    const cited = sectionOf(policy.content, c.section);
    text.replaceChildren(Api.el("div", { class: "cited", "data-testid": "source-section" }, cited || policy.content));
    if (cited) {
      const whole = Api.el("details", {}, Api.el("summary", {}, "Whole policy"), Api.el("div", {}, policy.content));
      text.append(whole);
    }
  } catch (err) {
    text.textContent = err.status === 404 ? "This policy has since been removed." : err.message;
  }
}

// The cited section of a Markdown policy: from its heading to the next heading of the same or higher level.
function sectionOf(markdown, section) {
  if (!section) return "";
  const name = section.split(" > ").pop().trim().toLowerCase();
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => /^#+\s/.test(l) && l.replace(/^#+\s*/, "").trim().toLowerCase() === name);
  if (start < 0) return "";
  const level = lines[start].match(/^#+/)[0].length;
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i++) {
    const m = lines[i].match(/^#+/);
    if (m && m[0].length <= level) { end = i; break; }
  }
  return lines.slice(start, end).join("\n").trim();
}

function addCitation(node, c) {
  let cites = node.querySelector(".cites");
  if (!cites) { cites = Api.el("div", { class: "cites" }); node.append(cites); }
  const label = c.title ? `[${c.label}] ${c.title}${c.section ? " § " + c.section : ""}` : String(c.label || c.doc_id || "source");
  if ([...cites.children].some((b) => b.dataset.label === label)) return;
  const chip = Api.el("button", { class: "cite", "data-testid": "citation", "data-doc-id": c.doc_id || "", onclick: () => showSource(c) }, label);
  chip.dataset.label = label;
  cites.append(chip);
}

// Tool activity goes above the reply it leads to.
function activity(text, before) {
  const line = Api.el("div", { class: "activity", "data-testid": "activity" }, text);
  $("log").insertBefore(line, before || null);
  return line;
}

async function loadConversations() {
  try {
    const data = await Api.call("GET", "/api/conversations");
    $("convs").replaceChildren(...data.conversations.map((c) =>
      Api.el("button", { "data-testid": "conversation", onclick: () => open(c.id) },
        `${new Date(c.created_at * 1000).toLocaleString()} · ${c.turns} turn${c.turns === 1 ? "" : "s"}${c.handed_off ? " · handed off" : ""}`)));
  } catch (err) { showError(err.message); }
}

// Thumbs up / down with an optional comment under a reply; `turn` is the customer message it answered.
function rateControls(node, turn) {
  const status = Api.el("span", { class: "muted", "data-testid": "rating-status" });
  const comment = Api.el("input", { "data-testid": "rating-comment", placeholder: "what was wrong? (optional)", maxlength: "2000" });
  async function rate(value) {
    showError("");
    try {
      await Api.call("POST", `/api/conversations/${conversation.id}/ratings`, { value, comment: comment.value, turn });
      status.textContent = value === "up" ? "thanks!" : "thanks, a colleague will look at this";
      node.querySelectorAll(".rate button").forEach((b) => b.classList.toggle("chosen", b.dataset.value === value));
    } catch (err) { showError(err.message); }
  }
  const button = (value, label, title) => {
    const b = Api.el("button", { type: "button", title, "data-testid": `rate-${value}`, onclick: () => rate(value) }, label);
    b.dataset.value = value;
    return b;
  };
  node.append(Api.el("div", { class: "rate" }, button("up", "👍", "helpful"), button("down", "👎", "not helpful"), comment, status));
}

function userTurns() { return $("log").querySelectorAll("[data-testid=msg-user]").length; }

function renderHistoryMessage(m) {
  if (m.role === "user") bubble("user", m.content);
  else if (m.role === "assistant" && m.content) {
    const node = bubble("assistant", m.content);
    for (const c of m.citations || []) addCitation(node, c);
    if (userTurns() > 0) rateControls(node, userTurns());
  }
}

async function open(id) {
  showError("");
  try {
    const data = await Api.call("GET", `/api/conversations/${id}`);
    conversation = data.conversation;
    $("title").textContent = "Chat";
    $("log").replaceChildren();
    data.messages.forEach(renderHistoryMessage);
    setState(conversation);
  } catch (err) { showError(err.message); }
}

async function newConversation() {
  if (busy) return;
  showError("");
  busy = true; $("send").disabled = true;
  try {
    conversation = await Api.call("POST", "/api/conversations");
    $("log").replaceChildren();
    setState(conversation);
  } catch (err) { showError(err.message); }
  finally { busy = false; $("send").disabled = false; }
  await loadConversations();
}

async function send(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || busy) return;
  if (!conversation) await newConversation();
  if (!conversation) return;
  busy = true; $("send").disabled = true; showError("");
  $("text").value = "";
  bubble("user", text);
  const turn = userTurns();
  const reply = bubble("assistant", "");
  reply.setAttribute("data-streaming", "true");
  const body = reply.querySelector(".body");
  let streamed = "";
  try {
    await Api.stream(`/api/conversations/${conversation.id}/messages`, { text }, (type, data) => {
      if (type === "token") { streamed += data.text || data.token || ""; body.textContent = streamed; }
      else if (type === "tool_start") activity(`… ${TOOL_WORDS[data.name || data.tool] || "working on it"}`, reply);
      else if (type === "citation") addCitation(reply, data);
      else if (type === "message") {
        body.textContent = data.text || data.content || streamed;
        for (const c of data.citations || []) addCitation(reply, c);
      } else if (type === "handoff") {
        conversation.handed_off = true;
        setState(conversation);
      } else if (type === "approval_pending") {
        $("log").append(Api.el("div", { class: "banner approval", "data-testid": "approval-state" },
          "A colleague needs to approve this refund; we will continue as soon as they decide."));
      } else if (type === "error") showError(data.message || "something went wrong");
      $("log").scrollTop = $("log").scrollHeight;
    });
  } catch (err) {
    showError(err.message);
  } finally {
    if (body.textContent) rateControls(reply, turn);
    reply.setAttribute("data-streaming", "false");
    busy = false; $("send").disabled = false;
    loadConversations();
  }
}

$("new").addEventListener("click", newConversation);
$("composer").addEventListener("submit", send);
Api.keyBar(loadConversations);
if (Api.key()) loadConversations();
