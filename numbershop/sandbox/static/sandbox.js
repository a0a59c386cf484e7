// The sandbox chat page: a Telegram-like view of one private chat with the shop's bot.
//
// Everything goes through the emulator's control API on this same origin, exactly as the
// tests drive it: the chat is read by long polling (?since=<version>), a message is a POST to
// /users/{id}/messages, a button a POST to /press, a Stars invoice a POST to /pay. The bot's
// text arrives as plain text plus entities (Telegram's own model), and is rendered here with
// DOM nodes only — never innerHTML — so nothing the bot or a provider says can inject markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  const state = {
    bot: null,
    userId: null,
    firstName: null,
    version: -1,
    rendered: new Map(), // message_id -> {key, el}
    answersSeen: null, // how many callback answers were already shown
    pending: new Map(), // callback query id -> button element
    commands: [],
    online: true,
    languageCode: "en", // what the simulated Telegram app reports (the bot follows it)
  };

  // ------------------------------------------------------------------ helpers

  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data;
    try {
      data = await res.json();
    } catch (_) {
      throw new Error(`HTTP ${res.status}`);
    }
    if (!data.ok) throw new Error(data.error || `HTTP ${res.status}`);
    return data.result;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const botPath = (rest) => `/control/bots/${state.bot.id}${rest}`;

  function flag(cc) {
    if (!/^[A-Za-z]{2}$/.test(cc || "")) return "";
    return String.fromCodePoint(...[...cc.toUpperCase()].map((c) => 0x1f1e6 + c.charCodeAt(0) - 65));
  }

  function clock(epochSeconds) {
    const d = new Date(epochSeconds * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function duration(seconds) {
    if (seconds == null) return "";
    const m = Math.floor(seconds / 60), s = seconds % 60;
    return m > 0 ? `${m}:${String(s).padStart(2, "0")}` : `${s}s`;
  }

  let toastTimer = null;
  function toast(text, { alert = false } = {}) {
    const box = $("toast");
    box.replaceChildren(el("div", null, text));
    box.className = alert ? "toast alert" : "toast";
    box.hidden = false;
    clearTimeout(toastTimer);
    if (alert) {
      const ok = el("button", null, "OK");
      ok.type = "button";
      ok.onclick = () => { box.hidden = true; };
      box.append(ok);
    } else {
      toastTimer = setTimeout(() => { box.hidden = true; }, 3200);
    }
  }

  function banner(text) {
    const b = $("banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  // ------------------------------------------------------- text with entities

  function entityNode(entity, text) {
    switch (entity.type) {
      case "bold": return el("b");
      case "italic": return el("i");
      case "underline": return el("u");
      case "strikethrough": return el("s");
      case "spoiler": {
        const n = el("span", "spoiler");
        n.onclick = () => n.classList.add("shown");
        return n;
      }
      case "code": {
        const n = el("code");
        n.title = "Copy";
        n.onclick = () => copy(n.textContent);
        return n;
      }
      case "pre": return el("pre");
      case "blockquote": case "expandable_blockquote": return el("blockquote");
      case "text_link": case "url": {
        const href = entity.type === "url" ? text : entity.url;
        if (!/^https?:\/\//i.test(href || "")) return el("span");
        const a = el("a");
        a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer";
        return a;
      }
      case "bot_command": {
        const n = el("span", "command");
        n.onclick = () => sendText(n.textContent);
        return n;
      }
      default: return el("span");
    }
  }

  // Entities are UTF-16 offsets, which is what JavaScript strings index by.
  function renderText(parent, text, entities) {
    const ents = (entities || []).slice().sort((a, b) => a.offset - b.offset || b.length - a.length);
    let i = 0;
    const build = (node, start, end) => {
      let pos = start;
      while (i < ents.length && ents[i].offset < end) {
        const e = ents[i++];
        if (e.offset < pos) continue; // overlapping entities are not nested by Telegram
        if (e.offset > pos) node.append(text.slice(pos, e.offset));
        const stop = Math.min(e.offset + e.length, end);
        const child = entityNode(e, text.slice(e.offset, stop));
        build(child, e.offset, stop);
        node.append(child);
        pos = stop;
      }
      if (pos < end) node.append(text.slice(pos, end));
    };
    build(parent, 0, text.length);
  }

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast(`Copied ${text}`);
    } catch (_) {
      toast(text);
    }
  }

  // ------------------------------------------------------------------ messages

  function messageNode(m) {
    if (m.successful_payment) {
      const p = m.successful_payment;
      const amount = p.currency === "XTR" ? `⭐ ${p.total_amount} Stars` : `${p.total_amount} ${p.currency}`;
      const node = el("div", "service-msg", `You paid ${amount}`);
      node.dataset.testid = "payment";
      return node;
    }
    const wrap = el("div", `msg ${m.sender}`);
    wrap.dataset.testid = "message";
    wrap.dataset.messageId = m.message_id;
    wrap.dataset.sender = m.sender;
    let bubble;
    if (m.invoice) {
      const inv = m.invoice;
      bubble = el("div", "bubble invoice");
      bubble.dataset.testid = "invoice";
      bubble.append(el("div", "invoice-title", inv.title));
      bubble.append(el("div", "invoice-desc", inv.description));
      const amount = inv.currency === "XTR" ? `⭐ ${inv.total_amount}` : `${inv.total_amount} ${inv.currency}`;
      bubble.append(el("div", "invoice-amount", amount));
      if (inv.paid) bubble.append(el("div", "invoice-paid", "✓ Paid"));
    } else {
      bubble = el("div", "bubble");
      bubble.dataset.testid = "bubble";
      renderText(bubble, m.text || "", m.entities);
    }
    const meta = el("span", "meta", (m.edited ? "edited " : "") + clock(m.date));
    bubble.append(meta);
    wrap.append(bubble);
    if (m.keyboard && m.keyboard.length) wrap.append(keyboardNode(m));
    return wrap;
  }

  // A CopyTextButton copies its text on this device and says so, as Telegram's apps do;
  // nothing goes to the bot.
  function copyText(text, btn) {
    const done = () => {
      const label = btn.textContent;
      btn.textContent = "✓ Copied";
      btn.dataset.copied = text;
      setTimeout(() => { btn.textContent = label; }, 2500);
    };
    const fallback = () => {
      const area = el("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.append(area);
      area.select();
      try { document.execCommand("copy"); } catch (e) { /* shown as copied anyway */ }
      area.remove();
      done();
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }

  function keyboardNode(m) {
    const kb = el("div", "keyboard");
    for (const row of m.keyboard) {
      const r = el("div", "row");
      for (const b of row) {
        const btn = el("button", "kb-button", b.text);
        btn.type = "button";
        btn.title = b.text;
        btn.dataset.testid = "inline-button";
        if (b.pay) {
          btn.classList.add("pay");
          if (m.invoice && m.invoice.paid) {
            btn.textContent = "✓ Paid";
            btn.disabled = true;
          } else {
            btn.onclick = () => pay(m.message_id, btn);
          }
        } else if (b.url) {
          btn.onclick = () => {
            if (/^https?:\/\//i.test(b.url)) window.open(b.url, "_blank", "noopener");
          };
        } else if (b.copy_text != null) {
          btn.classList.add("copy");
          btn.onclick = () => copyText(b.copy_text, btn);
        } else if (b.callback_data != null) {
          btn.onclick = () => press(m.message_id, b.callback_data, btn);
        }
        r.append(btn);
      }
      kb.append(r);
    }
    return kb;
  }

  function renderChat(chat) {
    const list = $("messages");
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    const seen = new Set();
    let appended = false;
    for (const m of chat.messages) {
      seen.add(m.message_id);
      const key = JSON.stringify(m);
      const held = state.rendered.get(m.message_id);
      if (held && held.key === key) continue;
      const node = messageNode(m);
      if (held) {
        held.el.replaceWith(node);
      } else {
        list.append(node);
        appended = true;
      }
      state.rendered.set(m.message_id, { key, el: node });
    }
    for (const [id, held] of state.rendered) {
      if (!seen.has(id)) {
        held.el.remove();
        state.rendered.delete(id);
      }
    }
    $("empty-chat").hidden = chat.messages.length > 0;
    renderReplyKeyboard(chat.reply_keyboard || []);
    showNewAnswers(chat.callback_answers || []);
    if (appended || nearBottom) list.scrollTop = list.scrollHeight;
  }

  function renderReplyKeyboard(rows) {
    const box = $("reply-keyboard");
    box.replaceChildren();
    box.hidden = rows.length === 0;
    for (const row of rows) {
      const r = el("div", "row");
      for (const text of row) {
        const btn = el("button", "kb-button", text);
        btn.type = "button";
        btn.onclick = () => sendText(text);
        r.append(btn);
      }
      box.append(r);
    }
  }

  function showNewAnswers(answers) {
    for (const a of answers) {
      const btn = state.pending.get(a.query_id);
      if (btn) {
        btn.classList.remove("pending");
        state.pending.delete(a.query_id);
      }
    }
    if (state.answersSeen === null) { // first view: old toasts are history
      state.answersSeen = answers.length;
      return;
    }
    const fresh = answers.slice(state.answersSeen);
    state.answersSeen = answers.length;
    const last = fresh.filter((a) => a.text).pop();
    if (last) toast(last.text, { alert: !!last.show_alert });
  }

  // ------------------------------------------------------------------ actions

  async function sendText(text) {
    text = (text || "").trim();
    if (!text) return;
    try {
      await api("POST", `/control/bots/${state.bot.id}/users/${state.userId}/messages`,
        { text, first_name: state.firstName, language_code: state.languageCode });
    } catch (err) {
      toast(`Could not send: ${err.message}`);
    }
  }

  async function press(messageId, data, btn) {
    btn.classList.add("pending");
    try {
      const p = await api("POST", botPath(`/chats/${state.userId}/press`), { message_id: messageId, data });
      state.pending.set(p.query_id, btn);
      setTimeout(() => btn.classList.remove("pending"), 10000);
    } catch (err) {
      btn.classList.remove("pending");
      toast(`Could not press: ${err.message}`);
    }
  }

  async function pay(messageId, btn) {
    btn.disabled = true;
    const label = btn.textContent;
    btn.textContent = "Paying…";
    try {
      const p = await api("POST", botPath(`/chats/${state.userId}/pay`), { message_id: messageId, timeout: 15 });
      if (p.status === "declined") toast(p.error_message || "The payment was declined.", { alert: true });
      if (p.status === "timeout") toast("The bot did not confirm the payment in time; nothing was charged.", { alert: true });
    } catch (err) {
      toast(`Could not pay: ${err.message}`);
    } finally {
      if (btn.isConnected) { btn.textContent = label; btn.disabled = false; }
    }
  }

  // ------------------------------------------------------------------ loops

  async function chatLoop() {
    let delay = 500;
    for (;;) {
      try {
        const chat = await api("GET", botPath(`/chats/${state.userId}?since=${state.version}&timeout=25`));
        if (!state.online) { state.online = true; banner(""); }
        delay = 500;
        if (chat.version !== state.version) {
          state.version = chat.version;
          renderChat(chat);
          refreshActivations();
          if (!state.commands.length) loadCommands();
        }
      } catch (err) {
        if (state.online) { state.online = false; banner("The sandbox is not answering — is `numbershop run` still running?"); }
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  let activationsBusy = false;
  async function refreshActivations() {
    if (activationsBusy) return;
    activationsBusy = true;
    try {
      renderActivations(await api("GET", "/sandbox/api/activations"));
    } catch (_) {
      // the chat loop shows the banner
    } finally {
      activationsBusy = false;
    }
  }

  function renderActivations(items) {
    const list = $("activations");
    $("activations-empty").hidden = items.length > 0;
    const focusId = document.activeElement && document.activeElement.dataset.activation;
    list.replaceChildren(...items.map(activationNode));
    if (focusId) {
      const again = list.querySelector(`[data-activation="${CSS.escape(focusId)}"]`);
      if (again) again.focus();
    }
  }

  function activationNode(a) {
    const li = el("li", "activation");
    li.dataset.testid = "activation";
    li.dataset.activationId = a.activation_id;
    const top = el("div", "top");
    top.append(el("span", "what", `${a.service_name} · ${flag(a.country)} ${a.country_name}`));
    const got = a.codes > 0;
    top.append(el("span", `badge ${got ? "code" : "waiting"}`, got ? `${a.codes} code${a.codes > 1 ? "s" : ""} sent` : "waiting for SMS"));
    li.append(top);
    li.append(el("div", "phone-number", a.phone));
    const who = a.order_id ? `Order ${a.order_id.slice(0, 8)} · user ${a.telegram_id} · ${a.order_status}` : "no order (yet)";
    li.append(el("div", "details", `${who} · closes in ${duration(a.expires_in)}`));
    const bottom = el("div", "bottom");
    const hint = a.auto_code_in == null ? (got ? "" : "codes arrive only when you deliver one")
      : (a.auto_code_in > 0 ? `next code on its own in ~${duration(a.auto_code_in)}` : "next code is due now");
    bottom.append(el("span", "details", hint));
    const btn = el("button", "deliver-button", got ? "Deliver another" : "Deliver code");
    btn.type = "button";
    btn.dataset.testid = "deliver";
    btn.dataset.activation = a.activation_id;
    btn.onclick = () => deliver(a.activation_id, btn);
    bottom.append(btn);
    li.append(bottom);
    return li;
  }

  async function deliver(activationId, btn) {
    btn.disabled = true;
    btn.textContent = "Delivering…";
    try {
      const d = await api("POST", `/sandbox/api/activations/${encodeURIComponent(activationId)}/deliver`, {});
      toast(`SMS with code ${d.code} delivered`);
    } catch (err) {
      toast(`Could not deliver: ${err.message}`);
    }
    refreshActivations();
  }

  async function activationsLoop() {
    for (;;) {
      await refreshActivations();
      await sleep(1500);
    }
  }

  async function loadCommands() {
    try {
      state.commands = await api("GET", `/sandbox/api/commands?language_code=${encodeURIComponent(state.languageCode)}`);
    } catch (_) {
      state.commands = [];
    }
    renderCommands();
  }

  function renderCommands() {
    const menu = $("commands-menu");
    menu.replaceChildren(...state.commands.map((c) => {
      const b = el("button");
      b.type = "button";
      b.append(el("span", "cmd", `/${c.command}`), el("span", "desc", c.description));
      b.onclick = () => { menu.hidden = true; sendText(`/${c.command}`); };
      return b;
    }));
  }

  // ------------------------------------------------------------------ start

  async function main() {
    let cfg;
    for (;;) {
      try {
        cfg = await api("GET", "/sandbox/api/config");
        break;
      } catch (_) {
        banner("Waiting for the sandbox…");
        await sleep(1000);
      }
    }
    banner("");
    state.bot = cfg.bot;
    const asked = parseInt(params.get("user") || "", 10);
    state.userId = Number.isInteger(asked) && asked > 0 && asked < 1e12 ? asked : cfg.user.id;
    state.firstName = (params.get("name") || "").slice(0, 64)
      || (state.userId === cfg.user.id ? cfg.user.first_name : `User ${state.userId}`);
    const picker = $("language");
    const known = [...picker.options].map((o) => o.value);
    const wanted = [params.get("lang"), localStorage.getItem("numbershop.sandbox.lang"),
      (navigator.language || "").toLowerCase(), (navigator.language || "").slice(0, 2).toLowerCase()];
    state.languageCode = wanted.find((l) => l && known.includes(l)) || "en";
    picker.value = state.languageCode;
    picker.onchange = async () => {
      state.languageCode = picker.value;
      localStorage.setItem("numbershop.sandbox.lang", state.languageCode);
      state.commands = [];
      await api("POST", botPath(`/users/${state.userId}`), { language_code: state.languageCode });
      toast("App language changed. Send /start: the bot follows it unless you picked one with /language.");
    };
    await api("POST", botPath(`/users/${state.userId}`),
      { first_name: state.firstName, language_code: state.languageCode });

    $("bot-name").textContent = cfg.bot.first_name;
    $("bot-status").textContent = `@${cfg.bot.username} · bot`;
    $("who").textContent = `You are ${state.firstName} (Telegram id ${state.userId})`;
    const other = new URL(location.href);
    other.searchParams.set("user", String(state.userId + 1));
    other.searchParams.delete("name");
    $("other-user").href = other.toString();
    if (cfg.auto_codes) {
      const [lo, hi] = cfg.auto_codes;
      $("auto-codes").textContent = `Numbers you buy appear here. Their code arrives on its own ${Math.round(lo)}–${Math.round(hi)} s after purchase, or press Deliver code.`;
    } else {
      $("auto-codes").textContent = "Numbers you buy appear here. Codes arrive only when you press Deliver code.";
    }
    if (cfg.dashboard) {
      $("dashboard-card").hidden = false;
      $("dashboard-link").href = cfg.dashboard.url;
      $("dashboard-link").textContent = cfg.dashboard.url;
      $("dashboard-login").textContent = cfg.dashboard.password
        ? `Log in as ${cfg.dashboard.username} / ${cfg.dashboard.password}`
        : `Log in as ${cfg.dashboard.username} (password printed when the sandbox started)`;
    }

    $("composer").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("composer-input");
      const text = input.value;
      input.value = "";
      $("commands-menu").hidden = true;
      sendText(text);
    });
    $("start-button").onclick = () => sendText("/start");
    $("commands-button").onclick = () => {
      const menu = $("commands-menu");
      if (menu.hidden && !state.commands.length) loadCommands();
      menu.hidden = !menu.hidden;
    };
    document.addEventListener("click", (ev) => {
      const menu = $("commands-menu");
      if (!menu.hidden && !menu.contains(ev.target) && ev.target !== $("commands-button")) menu.hidden = true;
    });

    chatLoop();
    activationsLoop();
  }

  main();
})();
