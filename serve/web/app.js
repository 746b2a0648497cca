// Shared by the three pages: the API key, JSON calls with clear errors, and an SSE reader for POST streams.
"use strict";

const Api = (() => {
  const STORE = "specialist.key";
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) {
    sessionStorage.setItem(STORE, fromHash);
    history.replaceState(null, "", location.pathname); // keep the key out of the address bar
  }

  function key() { return sessionStorage.getItem(STORE) || ""; }
  function setKey(value) { sessionStorage.setItem(STORE, value.trim()); }

  async function call(method, path, body, { form } = {}) {
    const headers = { Authorization: "Bearer " + key() };
    let payload;
    if (form) payload = form;
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
    const response = await fetch(path, { method, headers, body: payload });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { raw: text }; }
    if (!response.ok) {
      const message = (data && data.error && data.error.message) || response.statusText;
      const err = new Error(`${response.status}: ${message}`);
      err.status = response.status;
      throw err;
    }
    return data;
  }

  // POST and read a text/event-stream; calls onEvent(type, data) per event.
  async function stream(path, body, onEvent) {
    const response = await fetch(path, {
      method: "POST",
      headers: { Authorization: "Bearer " + key(), "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error.message; } catch { /* keep status text */ }
      throw new Error(`${response.status}: ${message}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let type = "message";
        const lines = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim();
          else if (line.startsWith("data:")) lines.push(line.slice(5).replace(/^ /, ""));
        }
        if (!lines.length) continue; // comments and pings
        let data = {};
        try { data = JSON.parse(lines.join("\n")); } catch { data = { text: lines.join("\n") }; }
        onEvent(type, data);
      }
    }
  }

  async function blobUrl(path) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + key() } });
    if (!response.ok) return null;
    return URL.createObjectURL(await response.blob());
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "onclick") node.addEventListener("click", v);
      else if (k === "class") node.className = v;
      else if (v !== undefined && v !== null) node.setAttribute(k, v);
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
    return node;
  }

  // The key bar in the header: shows whether a key is set, lets the user paste one.
  function keyBar(onChange) {
    const slot = document.querySelector(".who");
    const input = el("input", { type: "password", placeholder: "API key (spk_...)", "data-testid": "key-input", style: "width:16rem" });
    const save = el("button", { "data-testid": "key-save", onclick: () => { setKey(input.value); input.value = ""; render(); onChange(); } }, "Use key");
    function render() {
      slot.replaceChildren(key() ? "key set · " : "no key · ", input, save);
    }
    render();
  }

  return { key, setKey, call, stream, blobUrl, el, keyBar };
})();
