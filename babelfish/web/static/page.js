// The live page: Server-Sent Events from /events, controls to /api/*. Every text from the
// pipeline (recognised speech is untrusted input) goes in with textContent, never as HTML.
"use strict";
(function () {
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  const $ = (id) => document.getElementById(id);
  // #view=caption: the last two lines, large, on a dark background, to sit over a video.
  // #view=conversation (two-way): each side's lines in the reader's language, the reader's own
  // on the right; &reader=other turns the page to the other person (the wearer's by default).
  let mode = "", reader = "wearer";
  function view() {
    const h = new URLSearchParams(location.hash.slice(1));
    mode = ["caption", "conversation"].includes(h.get("view")) ? h.get("view") : "";
    reader = h.get("reader") === "other" ? "other" : "wearer";
    document.body.classList.toggle("caption", mode === "caption");
    document.body.classList.toggle("conversation", mode === "conversation");
    const link = (v, r) => {
      const x = new URLSearchParams(location.hash.slice(1));
      if (v) x.set("view", v); else x.delete("view");
      if (r) x.set("reader", r); else x.delete("reader");
      return "#" + x.toString();
    };
    $("viewlink").href = link(mode === "caption" ? "" : "caption");
    $("viewlink").textContent = mode === "caption" ? "full view" : "caption view";
    $("convlink").href = link(mode === "conversation" ? "" : "conversation");
    $("convlink").textContent = mode === "conversation" ? "full view" : "conversation view";
    $("turn").hidden = mode !== "conversation";
    $("turn").href = link("conversation", reader === "wearer" ? "other" : "");
    $("turn").textContent = reader === "wearer" ? "turn to the other person" : "turn to the wearer";
    for (const c of cards.values()) render(c);
  }
  const cards = new Map(); // utterance id -> {el, src, lang, tr, fill, ms, parts, final, d}
  window.addEventListener("hashchange", view);
  const KEEP = 200; // utterances on the page
  let budget = 1500;

  function make(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function card(id) {
    let c = cards.get(id);
    if (c) return c;
    const el = make("article", "utt partial");
    el.dataset.id = id;
    const src = make("div", "src");
    const lang = make("span", "lang");
    lang.hidden = true;
    const srcText = make("span", "srctext");
    src.append(lang, srcText);
    const tr = make("div", "tr");
    const lat = make("div", "lat");
    const bar = make("span", "bar");
    const fill = make("span", "fill");
    bar.append(fill);
    const ms = make("span", "ms");
    lat.append(bar, ms);
    lat.hidden = true;
    el.append(src, tr, lat);
    c = { el, srcText, lang, tr, lat, fill, ms, parts: [], final: false, source: "", side: "" };
    cards.set(id, c);
    $("subtitles").prepend(el); // newest first: readable without scrolling on a phone
    while (cards.size > KEEP) {
      const [oldId, old] = cards.entries().next().value;
      old.el.remove();
      cards.delete(oldId);
    }
    return c;
  }

  function latency(d) {
    const l = d.latency_ms || {};
    for (const k of ["end_of_speech_to_heard", "end_of_speech_to_first_audio",
                     "end_of_speech_to_text"]) {
      if (typeof l[k] === "number") return l[k];
    }
    return null;
  }

  // the line's text for this view: in the conversation view, in the reader's language (a
  // line of the reader's own side: the words as said; of the other side: their translation)
  function render(c) {
    const side = c.side || "other";
    c.el.dataset.side = side;
    c.el.classList.toggle("mine", side === reader);
    const said = side === reader && mode === "conversation";
    c.tr.textContent = said ? c.source : c.parts.filter(Boolean).join(" ");
  }

  function subtitle(d) {
    if (typeof d.id !== "string") return;
    const c = card(d.id);
    if (d.source_text) { c.srcText.textContent = d.source_text; c.source = d.source_text; }
    if (d.side === "wearer" || d.side === "other") c.side = d.side;
    if (!d.final) {
      if (c.final) return;
      c.parts[d.part | 0] = d.text || "";
      render(c);
      return;
    }
    c.final = true;
    c.el.classList.remove("partial");
    c.parts = [d.text || ""];
    render(c);
    if (d.source_language) {
      const p = typeof d.language_probability === "number"
        ? " " + Math.round(d.language_probability * 100) + "%" : "";
      c.lang.textContent = d.source_language + p;
      c.lang.hidden = false;
    }
    const ms = latency(d);
    if (ms !== null) {
      c.fill.style.width = Math.min(100, (ms / (2 * budget)) * 100).toFixed(1) + "%";
      c.fill.classList.toggle("slow", ms > budget * 0.75 && ms <= budget);
      c.fill.classList.toggle("over", ms > budget);
      c.ms.textContent = Math.round(ms) + " ms" + (d.dropped_audio ? " (text only)" : "");
      c.lat.hidden = false;
    }
  }

  function status(s) {
    $("muted").hidden = !s.muted;
    const list = $("stages");
    list.replaceChildren();
    for (const [name, st] of Object.entries(s.stages || {})) {
      const cls = st.state === "ready" ? "ready"
        : ["backoff", "given_up", "exited"].includes(st.state) ? "down" : "wait";
      let text = name + " " + st.state;
      if (st.restarts) text += " \u00b7 " + st.restarts + " restart" + (st.restarts > 1 ? "s" : "");
      if (st.queue) text += " \u00b7 queue " + st.queue;
      const li = make("li", cls, text);
      li.dataset.stage = name;
      list.append(li);
    }
    const d = s.degradation || {};
    const u = s.utterances || {};
    $("summary").textContent =
      (d.level ? "degraded: level " + d.level + " (" + d.step + ")" : "not degraded") +
      " \u00b7 " + (u.done || 0) + " done, " + (u.in_flight || 0) + " on the way" +
      (u.lost ? ", " + u.lost + " lost" : "");
  }

  function notice(text) {
    $("notice").textContent = text;
  }

  async function command(cmd) {
    try {
      const r = await fetch("/api/" + cmd, {
        method: "POST",
        headers: { Authorization: "Bearer " + token },
        cache: "no-store",
      });
      const body = await r.json();
      if (!body.ok) notice(cmd + ": " + (body.error || r.status));
      else if (cmd === "stop") notice("asked to stop");
      else { notice(body.muted ? "muted: not listening" : "listening"); $("muted").hidden = !body.muted; }
    } catch (e) {
      notice(cmd + ": " + e);
    }
  }

  view();

  if (token) {
    for (const b of ["mute", "unmute", "stop"]) $(b).disabled = false;
    $("mute").addEventListener("click", () => command("mute"));
    $("unmute").addEventListener("click", () => command("unmute"));
    let armed = 0;
    $("stop").addEventListener("click", () => {
      if (Date.now() - armed < 4000) { $("stop").textContent = "Stop"; command("stop"); armed = 0; return; }
      armed = Date.now();
      $("stop").textContent = "Stop? Tap again";
      setTimeout(() => { $("stop").textContent = "Stop"; }, 4000);
    });
  } else {
    notice("open the link with its token to use the controls");
  }

  const es = new EventSource("/events" + (token ? "?token=" + encodeURIComponent(token) : ""));
  es.addEventListener("open", () => { $("conn").textContent = "live"; $("conn").className = "conn up"; });
  es.addEventListener("error", () => { $("conn").textContent = "reconnecting"; $("conn").className = "conn"; });
  es.addEventListener("hello", (e) => {
    const h = JSON.parse(e.data);
    budget = h.budget_ms || budget;
    $("route").textContent = h.source_lang + " \u2192 " + h.target_lang;
  });
  es.addEventListener("subtitle", (e) => subtitle(JSON.parse(e.data)));
  es.addEventListener("status", (e) => status(JSON.parse(e.data)));
})();
