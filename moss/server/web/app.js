// Moss's chat page: conversations, streamed answers, branches, and feedback on every answer.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, { dataset, ...props } = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset || {});
  for (const child of children.flat()) if (child != null) node.append(child);
  return node;
};

localStorage.removeItem("moss.key");  // older pages kept the key where any script could read it
const S = {
  signedIn: false,  // the API key lives in an HttpOnly cookie (POST /v1/session): never in this script
  lang: localStorage.getItem("moss.lang") || (navigator.language.startsWith("zh") ? "zh" : "en"),
  theme: localStorage.getItem("moss.theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"),
  model: "", conversations: [], conv: null, byId: {}, children: {}, chosen: {},
  streaming: null, open: {},  // open: panels shown under messages, e.g. {id: "rating"}
};

const t = (key) => key.split(".").reduce((o, k) => (o || {})[k], STRINGS[S.lang]) ?? key;

// ---------- talking to the server ----------

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { showSignIn(); throw new Error(t("badKey")); }
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error?.message || `HTTP ${response.status}`);
  return body;
}

// Moss's own tools, switched on per conversation (the choice is kept in this browser). Not python:
// offered beside the calculator it made the default model worse at maths (bench/tools.py).
const TOOLS = ["calculator", "solver", "knowledge_search"];
const toolChoices = () => JSON.parse(localStorage.getItem("moss.tools") || "{}");
const toolsOn = () => S.conv ? !!toolChoices()[S.conv.id] : S.toolsNext;

function setTools(on, convId = S.conv?.id) {
  if (!convId) { S.toolsNext = on; } else {
    const choices = toolChoices();
    if (on) choices[convId] = true; else delete choices[convId];
    localStorage.setItem("moss.tools", JSON.stringify(choices));
  }
  $("#tools").setAttribute("aria-pressed", String(on));
}

// Streams a completion; calls onText with the text so far; resolves with the stored ids.
async function streamCompletion(messages, onText, signal, model, tools = false) {
  const headers = { "Content-Type": "application/json" };
  const body = { model: model || S.model, messages, stream: true, conversation_id: S.conv.id };
  if (tools) body.builtin_tools = TOOLS;
  const response = await fetch("/v1/chat/completions", { method: "POST", headers, signal, body: JSON.stringify(body) });
  if (response.status === 401) { showSignIn(); throw new Error(t("badKey")); }
  if (!response.ok) throw new Error((await response.json().catch(() => null))?.error?.message || `HTTP ${response.status}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "", moss = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6));
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.moss) moss = chunk.moss;
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) { text += piece; onText(text); }
    }
  }
  return moss;
}

// ---------- Markdown, code and math ----------

// Code comes first in the pattern, so "$HOME/$USER" inside `code` or a fenced block stays code.
const CODE_OR_MATH = /(```[\s\S]*?(?:```|$)|~~~[\s\S]*?(?:~~~|$)|`[^`\n]+`)|\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|\$([^\s$](?:[^$\n]*?[^\s$])?)\$/g;
// What a model's answer may not contain once rendered: nothing that submits, takes input, restyles
// the page or loads from elsewhere (the Content-Security-Policy blocks remote loads as well).
const PURIFY = {
  FORBID_TAGS: ["form", "input", "button", "textarea", "select", "option", "style", "iframe", "frame",
    "object", "embed", "link", "meta", "base", "svg", "math", "dialog"],
  FORBID_ATTR: ["style", "srcset", "action", "formaction"],
};
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "IMG" && !/^data:image\//i.test(node.getAttribute("src") || "")) node.remove();
  if (node.tagName === "A" && /^https?:/i.test(node.getAttribute("href") || "")) {
    node.setAttribute("target", "_blank"); node.setAttribute("rel", "noopener noreferrer");
  }
});

function markdown(text) {
  // Math is cut out before Markdown (which would eat its underscores) and typeset after. Its
  // placeholders carry a fresh random tag, so no text can forge one.
  const maths = [];
  const tag = `mossmath${crypto.getRandomValues(new Uint32Array(2)).join("x")}`;
  const guarded = text.replace(CODE_OR_MATH, (m, code, a, b, c, d) => {
    if (code != null) return code;
    maths.push({ tex: a ?? b ?? c ?? d, display: a != null || b != null });
    return `${tag}n${maths.length - 1}e`;
  });
  let html = DOMPurify.sanitize(marked.parse(guarded, { gfm: true, breaks: true }), PURIFY);
  html = html.replace(new RegExp(`${tag}n(\\d+)e`, "g"), (m, i) => maths[+i] ? katex.renderToString(maths[+i].tex,
    { displayMode: maths[+i].display, throwOnError: false, trust: false }) : m);
  const box = el("div", { className: "bubble" });
  box.innerHTML = html;
  for (const code of box.querySelectorAll("pre code")) {
    hljs.highlightElement(code);
    const copy = el("button", { className: "copy-code", type: "button", textContent: t("copy") });
    copy.onclick = () => copyText(code.textContent, copy);
    code.parentElement.append(copy);
  }
  return box;
}

function copyText(text, button) {
  const done = () => { button.textContent = t("copied"); setTimeout(() => (button.textContent = t("copy")), 1200); };
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(text).then(done, done);
  else { const area = el("textarea", { value: text }); document.body.append(area); area.select(); document.execCommand("copy"); area.remove(); done(); }
}

// ---------- the conversation tree ----------

function setConversation(detail) {
  S.conv = detail; S.byId = {}; S.children = {};
  for (const m of detail.messages) {
    S.byId[m.id] = m;
    (S.children[m.parent_id || "root"] ||= []).push(m.id);
  }
}

// The messages of the branch being shown: at each fork, the chosen child (default: newest).
function currentPath() {
  const path = [];
  let key = "root";
  while (S.children[key]?.length) {
    const kids = S.children[key];
    const id = kids.includes(S.chosen[key]) ? S.chosen[key] : kids[kids.length - 1];
    path.push(S.byId[id]);
    key = id;
  }
  return path;
}

// Show the branch that ends at (or passes through) this message; remembered per conversation.
function choose(id) {
  for (let m = S.byId[id]; m; m = S.byId[m.parent_id]) S.chosen[m.parent_id || "root"] = m.id;
  if (S.conv) localStorage.setItem(`moss.chosen.${S.conv.id}`, JSON.stringify(S.chosen));
}

const asChat = (messages) => messages.map(({ role, content }) => ({ role, content }));

// ---------- rendering ----------

function renderStatic() {
  document.documentElement.dataset.theme = S.theme;
  document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
  $("#hl-light").disabled = S.theme === "dark";
  $("#hl-dark").disabled = S.theme !== "dark";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of document.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  $("#lang").textContent = t("language");
  $("#signout").hidden = !S.signedIn;
}

function renderSidebar() {
  const list = $("#conversations");
  list.replaceChildren(...S.conversations.map((c) => {
    const item = el("li", { className: c.id === S.conv?.id ? "current" : "", dataset: { id: c.id } });
    const title = el("span", { className: "title", textContent: c.title || t("untitled"), title: c.title });
    title.onclick = () => openConversation(c.id);
    const rename = el("button", { type: "button", textContent: "✎", title: t("rename"), dataset: { testid: "rename" } });
    rename.onclick = () => {
      const input = el("input", { value: c.title, dataset: { testid: "rename-input" } });
      const save = async () => { if (input.value.trim() && input.value !== c.title) await api(`/v1/conversations/${c.id}`, { method: "PATCH", body: JSON.stringify({ title: input.value.trim() }) }); await loadConversations(); };
      input.onkeydown = (e) => { if (e.key === "Enter") save(); if (e.key === "Escape") renderSidebar(); };
      input.onblur = save;
      item.replaceChildren(input);
      input.focus();
    };
    const del = el("button", { type: "button", textContent: "🗑", title: t("del"), dataset: { testid: "delete" } });
    del.onclick = async () => {
      if (!del.classList.contains("armed")) { del.classList.add("armed"); del.textContent = t("confirmDelete"); return; }
      await api(`/v1/conversations/${c.id}`, { method: "DELETE" });
      if (S.conv?.id === c.id) newChat();
      await loadConversations();
    };
    item.append(title, rename, del);
    return item;
  }));
}

function renderThread() {
  const thread = $("#thread");
  $("#tools").setAttribute("aria-pressed", String(!!toolsOn()));  // each conversation keeps its own choice
  const path = S.conv ? currentPath() : [];
  if (!path.length && !S.streaming) { thread.replaceChildren(el("div", { className: "empty", textContent: t("empty") })); return; }
  thread.replaceChildren(...path.filter((m) => m.role !== "system").map(renderMessage));
}

function branchNav(m) {
  if (m.id.startsWith("pending")) return null;
  const siblings = S.children[m.parent_id || "root"] || [m.id];
  if (siblings.length < 2) return null;
  const at = siblings.indexOf(m.id);
  const go = (step) => { choose(siblings[(at + step + siblings.length) % siblings.length]); renderThread(); };
  const prev = el("button", { type: "button", textContent: "‹", onclick: () => go(-1), dataset: { testid: "branch-prev" } });
  const next = el("button", { type: "button", textContent: "›", onclick: () => go(1), dataset: { testid: "branch-next" } });
  return el("span", { className: "branches", title: t("branch") }, prev,
    el("span", { dataset: { testid: "branch-count" }, textContent: `${at + 1}/${siblings.length}` }), next);
}

function renderMessage(m) {
  const box = el("div", { className: `msg ${m.role}`, dataset: { id: m.id, testid: `msg-${m.role}` } });
  if (m.role === "user") {
    box.append(el("div", { className: "bubble", textContent: m.content }));
    const edit = el("button", { type: "button", textContent: "✎ " + t("edit"), dataset: { testid: "edit" } });
    edit.onclick = () => { S.open[m.id] = "edit"; renderThread(); };
    box.append(el("div", { className: "bar" }, branchNav(m), S.streaming ? null : edit));
    if (S.open[m.id] === "edit") box.append(editPanel(m));
    return box;
  }
  box.append(markdown(m.content || (m.pending ? t("thinking") : "")));
  if (m.pending) return box;
  const fb = Object.fromEntries((m.feedback || []).map((f) => [f.kind, f.value]));
  const standing = (m.feedback || []).filter((f) => f.kind === "correction" || f.kind === "rating");
  const rating = fb.rating?.rating;
  const button = (label, title, testid, onclick, active = false) =>
    el("button", { type: "button", textContent: label, title, onclick, className: active ? "active" : "", dataset: { testid } });
  const bar = el("div", { className: "bar" }, branchNav(m),
    button("👍", t("up"), "up", () => rating === "up" ? withdraw(m, "rating") : sendFeedback(m, { kind: "rating", rating: "up" }), rating === "up"),
    button("👎", t("down"), "down", () => toggle(m, "rating"), rating === "down"),
    button("✎", t("better"), "better", () => toggle(m, "correction"), !!fb.correction),
    button("⚖", t("compare"), "compare", () => startCompare(m), !!fb.comparison),
    button("⚑", fb.flag ? t("unflag") : t("flag"), "flag", () => fb.flag ? withdraw(m, "flag") : sendFeedback(m, { kind: "flag", reason: "" }), !!fb.flag),
    button("↻", t("regenerate"), "regenerate", () => regenerate(m)),
    button("📋", t("copy"), "copy", (e) => copyText(m.content, e.currentTarget)));
  const notes = [];
  if (rating) notes.push(t(`rated.${rating}`) + (fb.rating.reasons?.length ? `: ${fb.rating.reasons.map((r) => t(`reasons.${r}`)).join(", ")}` : ""));
  if (fb.flag) notes.push(t("flagged"));
  if (fb.comparison) notes.push(t(`picked.${fb.comparison.choice}`));
  if (m.finish_reason === "cancelled") notes.push(t("stopped"));
  if (notes.length) bar.append(el("span", { className: "state", dataset: { testid: "feedback-state" }, textContent: notes.join(" · ") }));
  box.append(bar);
  if (fb.correction) box.append(el("div", { className: "correction", dataset: { testid: "correction" } },
    el("div", { className: "label", textContent: t("correctionSaved") }), markdown(fb.correction.content)));
  for (const f of standing) box.append(standingLine(f));
  if (m.memories?.length) box.append(usedMemories(m));
  if (m.tool_runs?.length) box.append(toolRuns(m));
  const panel = { rating: ratingPanel, correction: correctionPanel, compare: comparePanel }[S.open[m.id]];
  if (panel) box.append(panel(m, fb));
  return box;
}

// Where a piece of feedback stands (pending, held for review, learned in v3...) and why.
function stateText(f) {
  let text = t(`states.${f.state}`);
  if (f.learned_in) text += ` · ${t("learnedIn")} ${f.learned_in}`;
  if (f.unlearned_in) text += ` · ${t("unlearnedIn")} ${f.unlearned_in}`;
  return text;
}

function standingLine(f) {
  const line = el("div", { className: `standing ${f.state}`, dataset: { testid: `standing-${f.kind}`, state: f.state } },
    el("strong", { textContent: `${t(`kinds.${f.kind}`)}: ${stateText(f)}` }), f.reason ? el("span", { className: "note", textContent: ` — ${f.reason}` }) : null);
  if (f.memory && f.memory.scope !== "gone") {  // a correction acts at once, for whom its state allows
    const label = f.memory.scope === "learned" ? t("remembered") : t("remember");
    line.append(el("div", { className: "memory-note", dataset: { testid: "will-remember", scope: f.memory.scope } },
      `🧠 ${label}: ${t(`scopes.${f.memory.scope}`)}${f.memory.learned_in ? ` (${f.memory.learned_in})` : ""}`));
  }
  return line;
}

// The calls Moss's tools ran for an answer, folded: each with its arguments and result.
function toolRuns(m) {
  return el("details", { className: "tool-runs", dataset: { testid: "tool-runs" } },
    el("summary", { textContent: `🧮 ${t("toolRuns")}: ${m.tool_runs.length}` }),
    ...m.tool_runs.map((r) => el("div", { className: `tool-run${r.ok ? "" : " failed"}`, dataset: { testid: "tool-run" } },
      el("code", { textContent: `${r.name}(${r.arguments})` }), el("span", { textContent: ` → ${r.result}` }))));
}

// The memories an answer's prompt held: a marker that opens them.
function usedMemories(m) {
  const list = el("ul", { hidden: true }, ...m.memories.map((u) =>
    el("li", { dataset: { testid: "used-memory", id: String(u.id) } }, `${u.question} → ${u.answer}`)));
  const marker = el("button", { type: "button", className: "memory-marker", dataset: { testid: "memory-marker" },
    textContent: `🧠 ${m.memories.length}`, title: t("usedMemories"), onclick: () => { list.hidden = !list.hidden; } });
  return el("div", { className: "memories-used" }, marker, list);
}

function toggle(m, panel) { S.open[m.id] = S.open[m.id] === panel ? null : panel; renderThread(); }

function ratingPanel(m, fb) {
  const chosen = new Set(fb.rating?.rating === "down" ? fb.rating.reasons : []);
  const chips = Object.keys(STRINGS.en.reasons).map((r) => {
    const box = el("input", { type: "checkbox", checked: chosen.has(r), dataset: { reason: r } });
    return el("label", { className: "chip", dataset: { testid: `reason-${r}` } }, box, t(`reasons.${r}`));
  });
  const comment = el("textarea", { value: fb.rating?.comment || "", placeholder: t("comment"), dataset: { testid: "comment" } });
  const submit = el("button", { type: "button", className: "primary", textContent: t("submit"), dataset: { testid: "submit-rating" } });
  submit.onclick = () => sendFeedback(m, { kind: "rating", rating: "down", comment: comment.value,
    reasons: chips.map((c) => c.querySelector("input")).filter((i) => i.checked).map((i) => i.dataset.reason) });
  const row = el("div", { className: "row" }, submit);
  if (fb.rating?.rating === "down") row.append(el("button", { type: "button", textContent: t("withdraw"), dataset: { testid: "withdraw-rating" }, onclick: () => withdraw(m, "rating") }));
  return el("div", { className: "panel", dataset: { testid: "rating-panel" } }, el("strong", { textContent: t("reasonsTitle") }),
    el("div", { className: "row" }, chips), comment, row);
}

function correctionPanel(m, fb) {
  const area = el("textarea", { value: fb.correction?.content || m.content, dataset: { testid: "correction-input" } });
  const save = el("button", { type: "button", className: "primary", textContent: t("save"), dataset: { testid: "save-correction" } });
  save.onclick = () => area.value.trim() && sendFeedback(m, { kind: "correction", content: area.value });
  const row = el("div", { className: "row" }, save, el("button", { type: "button", textContent: t("cancel"), onclick: () => toggle(m, "correction") }));
  if (fb.correction) row.append(el("button", { type: "button", textContent: t("withdraw"), dataset: { testid: "withdraw-correction" }, onclick: () => withdraw(m, "correction") }));
  return el("div", { className: "panel" }, el("strong", { textContent: t("correctionTitle") }), area, row);
}

function editPanel(m) {
  const area = el("textarea", { value: m.content, dataset: { testid: "edit-input" } });
  const send = el("button", { type: "button", className: "primary", textContent: t("editSend"), dataset: { testid: "edit-send" } });
  send.onclick = () => {
    if (!area.value.trim()) return;
    S.open[m.id] = null;
    const before = asChat(currentPath().slice(0, currentPath().indexOf(m)));
    ask([...before, { role: "user", content: area.value }]);
  };
  return el("div", { className: "panel" }, area, el("div", { className: "row" }, send,
    el("button", { type: "button", textContent: t("cancel"), onclick: () => { S.open[m.id] = null; renderThread(); } })));
}

// ---------- compare: a second answer side by side ----------

async function startCompare(m) {
  if (S.open[m.id] === "compare") { toggle(m, "compare"); return; }
  S.open[m.id] = "compare";
  S.compare = { base: m, text: "", other: null, model: S.model };
  renderThread();
  await runCompare();
}

async function runCompare() {
  const c = S.compare, m = c.base;
  const context = asChat(pathTo(m.parent_id));
  const ctrl = new AbortController();
  S.streaming = ctrl; updateComposer();
  try {
    const moss = await streamCompletion(context, (text) => { c.text = text; const b = $("[data-testid=compare-b] .bubble-slot"); if (b) b.replaceChildren(markdown(text)); }, ctrl.signal, c.model);
    c.other = moss?.message_ids?.[0];
    await reloadConversation();
    choose(m.id);
  } catch (error) { c.error = error.message; }
  S.streaming = null; updateComposer(); renderThread();
}

function pathTo(id) {
  const chain = [];
  for (let m = S.byId[id]; m; m = S.byId[m.parent_id]) chain.unshift(m);
  return chain;
}

function comparePanel(m, fb) {
  const c = S.compare?.base?.id === m.id ? S.compare : null;
  const otherId = c?.other || fb.comparison?.other_message_id;
  const otherText = otherId ? S.byId[otherId]?.content : c?.text;
  const slotB = el("div", { className: "bubble-slot" }, markdown(otherText || t("thinking")));
  const models = el("select", { dataset: { testid: "compare-model" } }, ...[...$("#model").options].map((o) => el("option", { value: o.value, textContent: o.textContent })));
  models.value = c?.model || S.model;
  models.onchange = () => { S.compare = { base: m, text: "", other: null, model: models.value }; runCompare(); };
  const pick = (choice, label, testid) => el("button", { type: "button", textContent: label, disabled: !otherId,
    className: fb.comparison?.choice === choice ? "active" : "", dataset: { testid },
    onclick: () => sendFeedback(m, { kind: "comparison", other_message_id: otherId, choice }) });
  return el("div", { className: "panel", dataset: { testid: "compare-panel" } },
    el("div", { className: "row" }, el("strong", { textContent: t("compareTitle") }), el("span", { className: "spacer" }),
      el("span", { className: "note", textContent: t("compareWith") }), models),
    el("div", { className: "compare" },
      el("div", { dataset: { testid: "compare-a" } }, el("h4", { textContent: t("answerA") }), markdown(m.content)),
      el("div", { dataset: { testid: "compare-b" } }, el("h4", { textContent: t("answerB") }), slotB)),
    c?.error ? el("p", { className: "error", textContent: c.error }) : null,
    el("div", { className: "row" }, pick("this", t("pickA"), "pick-a"), pick("other", t("pickB"), "pick-b"),
      pick("tie", t("tie"), "pick-tie"), pick("both_bad", t("bothBad"), "pick-both-bad")));
}

// ---------- feedback ----------

async function sendFeedback(m, body) {
  try {
    await api(`/v1/messages/${m.id}/feedback`, { method: "POST", body: JSON.stringify(body) });
    if (body.kind !== "comparison") S.open[m.id] = null;
    await reloadConversation();
  } catch (error) { alertError(error); }
}

async function withdraw(m, kind) {
  try {
    await api(`/v1/messages/${m.id}/feedback/${kind}`, { method: "DELETE" });
    S.open[m.id] = null;
    await reloadConversation();
  } catch (error) { alertError(error); }
}

function alertError(error) {
  $("#thread").append(el("p", { className: "error", dataset: { testid: "error" }, textContent: `${t("error")}: ${error.message}` }));
}

// ---------- asking ----------

async function ask(messages) {
  if (S.streaming) return;
  try {
    if (!S.conv) {
      setConversation({ ...(await api("/v1/conversations", { method: "POST", body: "{}" })), messages: [] });
      if (S.toolsNext) setTools(true);  // what was chosen before the conversation existed
    }
  } catch (error) { alertError(error); return; }
  const convId = S.conv.id;
  const shown = [...messages.map((m, i) => ({ ...m, id: `pending-${i}` })), { role: "assistant", content: "", id: "pending-answer", pending: true }];
  const ctrl = new AbortController();
  S.streaming = ctrl; updateComposer();
  const thread = $("#thread");
  thread.replaceChildren(...shown.filter((m) => m.role !== "system").map(renderMessage));
  const live = thread.lastElementChild;
  let last = 0, answerId = null;
  try {
    const moss = await streamCompletion(messages, (text) => {
      const now = performance.now();
      if (now - last > 60) { last = now; live.querySelector(".bubble").replaceWith(markdown(text)); thread.scrollTop = thread.scrollHeight; }
    }, ctrl.signal, undefined, toolsOn());
    answerId = moss?.message_ids?.[0];
  } catch (error) {
    if (error.name !== "AbortError") alertError(error);
  }
  const stopped = ctrl.signal.aborted;
  S.streaming = null; updateComposer();
  // A stopped answer is saved by the server once the engine lets go of it: wait for it briefly.
  for (let tries = 0; tries < (stopped ? 20 : 1); tries++) {
    await reloadConversation(convId);
    const leaf = answerId || findNewAnswer(messages);
    if (leaf) { choose(leaf); break; }
    await new Promise((r) => setTimeout(r, 250));
  }
  renderThread();
  loadConversations();
}

function findNewAnswer(messages) {
  // The newest assistant message whose path from the root matches what was asked.
  const candidates = S.conv.messages.filter((m) => m.role === "assistant" && pathTo(m.parent_id).length === messages.length
    && pathTo(m.parent_id).every((p, i) => p.role === messages[i].role && p.content === messages[i].content));
  return candidates.length ? candidates[candidates.length - 1].id : null;
}

function regenerate(m) { ask(asChat(pathTo(m.parent_id))); }

function updateComposer() {
  $("#send").hidden = !!S.streaming;
  $("#stop").hidden = !S.streaming;
}

// ---------- conversations ----------

async function loadConversations() {
  try {
    const q = $("#search").value.trim();
    S.conversations = (await api(`/v1/conversations${q ? `?q=${encodeURIComponent(q)}` : ""}`)).data;
    renderSidebar();
  } catch (error) { /* signed out: the sign-in dialog is showing */ }
}

async function reloadConversation(id = S.conv?.id) {
  if (!id) return;
  setConversation(await api(`/v1/conversations/${id}`));
  renderThread();
}

async function openConversation(id) {
  if (S.streaming) return;
  S.chosen = JSON.parse(localStorage.getItem(`moss.chosen.${id}`) || "{}"); S.open = {};
  await reloadConversation(id);
  renderSidebar();
  $("#sidebar").classList.remove("open");
  $("#thread").scrollTop = $("#thread").scrollHeight;
}

function newChat() {
  if (S.streaming) return;
  S.conv = null; S.byId = {}; S.children = {}; S.chosen = {}; S.open = {}; S.toolsNext = false;
  renderThread(); renderSidebar();
  $("#sidebar").classList.remove("open");
  $("#input").focus();
}

async function loadModels() {
  const models = (await api("/v1/models")).data;
  $("#model").replaceChildren(...models.map((m) => el("option", { value: m.id, textContent: m.id })));
  S.model = models[0]?.id || "moss";
}

// ---------- feedback review: your own feedback, and (admins) what waits for a decision ----------

async function openReview(admin) {
  S.review = { admin, state: admin ? "held,parked,pending" : "all" };
  $("#review").showModal();
  await loadReview();
}

async function loadReview() {
  const r = S.review, list = $("#review-list");
  $("#review-title").textContent = r.admin ? t("reviewTitle") : t("myFeedback");
  $("#review-state").hidden = !r.admin;
  $("#review-state").value = r.state;
  try {
    const rows = (await api(r.admin ? `/v1/admin/feedback?state=${encodeURIComponent(r.state)}` : "/v1/feedback")).data;
    list.replaceChildren(...(rows.length ? rows.map(reviewItem) : [el("p", { className: "note", textContent: t("nothingToReview") })]));
  } catch (error) { list.replaceChildren(el("p", { className: "error", textContent: error.message })); }
}

function reviewItem(e) {
  const taught = e.kind === "correction" ? e.value.content : e.kind === "rating" ? t(`rated.${e.value.rating}`) : JSON.stringify(e.value);
  const item = el("div", { className: "review-item", dataset: { testid: "review-item", id: String(e.id), state: e.state } },
    el("div", {}, el("strong", { textContent: `#${e.id} ${t(`kinds.${e.kind}`) || e.kind}: ${stateText(e)}` }),
      el("span", { className: "note", textContent: ` — ${e.author}` })),
    e.reason ? el("div", { className: "note", dataset: { testid: "review-reason" }, textContent: e.reason }) : null,
    el("div", {}, el("span", { className: "label", textContent: `${t("question")}: ` }), e.question),
    el("div", {}, el("span", { className: "label", textContent: `${t("answered")}: ` }), e.answer),
    el("div", { className: "correction" }, el("span", { className: "label", textContent: `${t("taught")}: ` }), taught),
    ...Object.entries(e.checks || {}).map(([who, text]) => el("div", { className: "note", dataset: { testid: "review-check" } }, `${who}: ${text}`)));
  if (S.review.admin) {
    const decide = async (verb) => {
      try {
        await api(`/v1/admin/feedback/${e.id}/${verb}`, { method: "POST", body: JSON.stringify({ reason: verb === "reject" ? why.value : "" }) });
        await loadReview();
      } catch (error) { item.append(el("p", { className: "error", textContent: error.message })); }
    };
    const why = el("input", { placeholder: t("rejectReason"), dataset: { testid: "reject-reason" } });
    item.append(el("div", { className: "row" },
      e.state === "accepted" ? null : el("button", { type: "button", textContent: t("accept"), dataset: { testid: "accept" }, onclick: () => decide("accept") }),
      e.state === "rejected" ? null : why,
      e.state === "rejected" ? null : el("button", { type: "button", textContent: t("reject"), dataset: { testid: "reject" }, onclick: () => decide("reject") })));
  }
  return item;
}

// ---------- memories: what your corrections taught (admins: everyone's), and forgetting them ----------

async function openMemories() {
  $("#memories").showModal();
  await loadMemories();
}

async function loadMemories() {
  const all = $("#memories-all").checked, list = $("#memories-list");
  $("#memories-title").textContent = all ? t("allMemories") : t("myMemories");
  try {
    const rows = (await api(`/v1/memories${all ? "?all=true" : ""}`)).data;
    list.replaceChildren(...(rows.length ? rows.map(memoryItem) : [el("p", { className: "note", textContent: t("nothingToReview") })]));
  } catch (error) { list.replaceChildren(el("p", { className: "error", textContent: error.message })); }
}

function memoryItem(r) {
  const forget = el("button", { type: "button", textContent: t("deleteMemory"), dataset: { testid: "forget-memory" }, onclick: async () => {
    try { await api(`/v1/memories/${r.id}`, { method: "DELETE" }); await loadMemories(); } catch (error) { alertError(error); }
  } });
  return el("div", { className: "review-item", dataset: { testid: "memory-item", id: String(r.id), scope: r.scope } },
    el("div", {}, el("strong", { textContent: `#${r.id} ${t(`scopes.${r.scope}`)}` }),
      el("span", { className: "note", textContent: ` — ${t("memoryAuthor")} ${r.author}${r.learned_in ? ` · ${t("learnedIn")} ${r.learned_in}` : ""}` })),
    el("div", {}, el("span", { className: "label", textContent: `${t("question")}: ` }), r.question),
    el("div", { className: "correction" }, el("span", { className: "label", textContent: `${t("taught")}: ` }), r.answer),
    r.scope === "gone" ? null : el("div", { className: "row" }, forget));
}

// ---------- sign-in ----------

function showSignIn() {
  const dialog = $("#signin");
  if (!dialog.open) dialog.showModal();
}

$("#signin-form").onsubmit = async (event) => {
  event.preventDefault();
  try {
    const session = await api("/v1/session", { method: "POST", body: JSON.stringify({ key: $("#key").value.trim() }) });
    $("#review-open").hidden = !session.admin;
    $("#memories-all-label").hidden = !session.admin;
    $("#key").value = "";
    S.signedIn = true;
    await loadModels();
    $("#signin").close();
    $("#signin-error").hidden = true;
    renderStatic();
    await loadConversations();
  } catch (error) {
    $("#signin-error").textContent = t("badKey");
    $("#signin-error").hidden = false;
    showSignIn();
  }
};

// ---------- wiring ----------

$("#composer").onsubmit = (event) => {
  event.preventDefault();
  const text = $("#input").value;
  if (!text.trim() || S.streaming) return;
  $("#input").value = "";
  autosize();
  ask([...asChat(S.conv ? currentPath() : []), { role: "user", content: text }]);
};
$("#input").onkeydown = (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); $("#composer").requestSubmit(); }
};
const autosize = () => { const i = $("#input"); i.style.height = "auto"; i.style.height = `${Math.min(i.scrollHeight, innerHeight * 0.4)}px`; };
$("#input").oninput = autosize;
$("#stop").onclick = () => S.streaming?.abort();
$("#new-chat").onclick = newChat;
$("#menu").onclick = () => $("#sidebar").classList.toggle("open");
$("#model").onchange = () => { S.model = $("#model").value; };
let searchTimer;
$("#search").oninput = () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadConversations, 200); };
$("#theme").onclick = () => { S.theme = S.theme === "dark" ? "light" : "dark"; localStorage.setItem("moss.theme", S.theme); renderStatic(); };
$("#lang").onclick = () => { S.lang = S.lang === "zh" ? "en" : "zh"; localStorage.setItem("moss.lang", S.lang); renderStatic(); renderSidebar(); renderThread(); };
$("#mine").onclick = () => openReview(false);
$("#review-open").onclick = () => openReview(true);
$("#review-state").onchange = () => { S.review.state = $("#review-state").value; loadReview(); };
$("#review-close").onclick = () => $("#review").close();
$("#tools").onclick = () => setTools(!toolsOn());
$("#memories-open").onclick = () => openMemories();
$("#memories-close").onclick = () => $("#memories").close();
$("#memories-all").onchange = () => loadMemories();
$("#signout").onclick = async () => {
  await api("/v1/session", { method: "DELETE" }).catch(() => null);
  S.signedIn = false; newChat(); S.conversations = []; renderSidebar(); renderStatic(); showSignIn();
};

(async function start() {
  renderStatic();
  renderThread();
  try {
    const session = await api("/v1/session");
    S.signedIn = session.auth;
    $("#review-open").hidden = !session.admin;
    $("#memories-all-label").hidden = !session.admin;
    renderStatic();
    await loadModels();
    await loadConversations();
  } catch (error) { /* 401: the sign-in dialog is open */ }
})();
