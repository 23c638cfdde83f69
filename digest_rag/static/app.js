// The digest_rag search page: calls the server's own JSON API (/search, /papers/{id}, /similar/{id}, /info);
// no external code. Results come a page (k papers) at a time; "more like this" lists a paper's neighbours.
"use strict";

const $ = (id) => document.getElementById(id);
const MODES = { hybrid: "하이브리드", dense: "의미", lexical: "키워드" };
const SECTIONS = { summary: "요약 summary", abstract: "초록 abstract", commentary: "코멘트 commentary",
                   key_points: "주요 내용 key points", body: "본문 text", title: "제목 title" };
const FIELDS = ["q", "mode", "lang", "from", "to", "tag", "k"];

function authHeaders() {
  const token = sessionStorage.getItem("digest_rag_token");
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() } });
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (res.status === 401) { $("token-box").hidden = false; $("token").focus(); }
  if (!res.ok) {
    const err = new Error((body && body.detail) || res.statusText);
    err.name = (body && body.error) || "HTTPError";
    throw err;
  }
  return { body, generation: res.headers.get("X-Index-Generation") };
}

// A corpus URL becomes a link only when it is http(s): a "javascript:" or "data:" URL from a hostile file
// is shown as text, never emitted as an href (the CSP would stop it today; it should not depend on that).
function webUrl(u) {
  try {
    const url = new URL(String(u));
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (e) {
    return null;
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function params() {
  const p = new URLSearchParams();
  for (const f of FIELDS) {
    const v = $(f).value.trim();
    if (v) p.set(f, f === "tag" ? v.replace(/^#/, "") : v);
  }
  return p;
}

// title_html, title_ko_html and snippet_html come from the server's highlighter: escaped text, only <mark> added.
function marked(node, html, text) {
  if (html !== undefined && html !== null) node.innerHTML = html; else node.textContent = text;
  return node;
}

function renderHit(hit) {
  const li = el("li", { class: "hit" });
  const title = marked(el("a", { class: "title", href: "#paper=" + encodeURIComponent(hit.paper_id) }),
                       hit.title_html, hit.title);
  li.append(el("h2", {}, title));
  if (hit.title_ko && hit.title_ko !== hit.title) {
    li.append(marked(el("div", { class: "title-ko" }), hit.title_ko_html, hit.title_ko));
  }
  const meta = el("div", { class: "meta" });
  meta.append(el("span", { class: "date" }, hit.date || "날짜 없음"));
  for (const t of hit.tags || []) meta.append(el("span", { class: "tag" }, "#" + t));
  meta.append(el("span", { class: "score" },
    "score " + Number(hit.score).toFixed(4) + " (" + (hit.modes || []).join("+") + ")"));
  li.append(meta);
  const snippet = el("p", { class: "snippet" });
  snippet.append(el("span", { class: "section" }, "[" + (SECTIONS[hit.section] || hit.section) + ", " + hit.language + "] "));
  const text = el("span", {});
  // snippet_html is built by the server's highlighter: the text is HTML-escaped, only <mark> is added.
  if (hit.snippet_html !== undefined) text.innerHTML = hit.snippet_html; else text.textContent = hit.snippet;
  snippet.append(text);
  li.append(snippet);
  const links = el("div", { class: "links" });
  links.append(el("a", { href: "#paper=" + encodeURIComponent(hit.paper_id) }, "전문 보기 Full text"));
  links.append(el("a", { class: "similar", href: "#similar=" + encodeURIComponent(hit.paper_id) },
    "비슷한 논문 More like this"));
  const paperUrl = (hit.urls || []).map(webUrl).find((u) => u);
  if (paperUrl) {
    links.append(el("a", { href: paperUrl, target: "_blank", rel: "noopener noreferrer" }, "원문 링크 Paper ↗"));
  }
  li.append(links);
  return li;
}

// What the result list shows now: a search or a paper's neighbours, and where its page starts.
let current = { kind: "search", id: null, offset: 0 };

function showHits(body, offset, label) {
  const k = Number($("k").value) || 10;
  $("results").style.counterReset = "hit " + offset;  // ranks continue on later pages
  $("results").replaceChildren(...body.map(renderHit));
  const weak = body.length && body[0].strong_match === false
    ? " · 확실한 결과 없음: no strong match, these are the closest papers" : "";
  $("status").textContent = body.length
    ? `${label} · ${offset + 1}–${offset + body.length}위${weak}`
    : (offset ? "더 없습니다. No more papers." : "결과가 없습니다. No matching papers.");
  $("prev-page").disabled = offset === 0;
  $("next-page").disabled = body.length < k;  // a short page is the last one
  $("pager").hidden = offset === 0 && body.length < k;
}

async function search(push, offset = 0) {
  const p = params();
  if (!p.get("q")) return;
  // The paper panel lies over the results (style.css): a new search or page closes it, as its paper was
  // one of the previous results.
  if (!$("paper").hidden && /^#paper=/.test(location.hash)) {
    history.replaceState(null, "", location.pathname + location.search);
    $("paper").hidden = true;
  }
  current = { kind: "search", id: null, offset };
  if (offset) p.set("offset", String(offset));
  if (push) history.replaceState(null, "", "?" + p.toString() + location.hash);
  $("status").textContent = "검색 중… Searching…";
  $("results").replaceChildren();
  p.set("highlight", "html");
  const started = performance.now();
  try {
    const { body } = await api("/search?" + p.toString());
    const ms = Math.round(performance.now() - started);
    showHits(body, offset, `${MODES[$("mode").value] || $("mode").value}, ${ms} ms`);
  } catch (err) {
    $("status").textContent = `오류 ${err.name}: ${err.message}`;
  }
}

async function similar(id, offset = 0) {
  current = { kind: "similar", id, offset };
  const p = params();
  p.delete("q");
  if (offset) p.set("offset", String(offset));
  $("paper").hidden = true;
  $("status").textContent = "비슷한 논문을 찾는 중… Finding similar papers…";
  $("results").replaceChildren();
  try {
    const { body } = await api("/similar/" + encodeURIComponent(id) + "?" + p.toString());
    showHits(body, offset, `비슷한 논문 More like this: ${id}`);
  } catch (err) {
    $("status").textContent = `오류 ${err.name}: ${err.message}`;
  }
}

function page(step) {
  const k = Number($("k").value) || 10;
  const offset = Math.max(0, current.offset + step * k);
  if (current.kind === "similar") similar(current.id, offset); else search(true, offset);
  $("status").scrollIntoView({ block: "start" });
}

async function openPaper(id) {
  const q = $("q").value.trim();
  const path = "/papers/" + encodeURIComponent(id) + (q ? "?q=" + encodeURIComponent(q) : "");
  const body = $("paper-body");
  body.replaceChildren(el("p", {}, "불러오는 중… Loading…"));
  $("paper").hidden = false;
  try {
    const { body: paper } = await api(path);
    const parts = [marked(el("h2", {}), paper.title_html, paper.title)];
    if (paper.title_ko && paper.title_ko !== paper.title) {
      parts.push(marked(el("div", { class: "title-ko" }), paper.title_ko_html, paper.title_ko));
    }
    const meta = el("div", { class: "meta" }, el("span", { class: "date" }, paper.date || "날짜 없음"));
    for (const t of paper.tags || []) meta.append(el("span", { class: "tag" }, "#" + t));
    parts.push(meta);
    if (paper.authors && paper.authors.length) parts.push(el("p", { class: "authors" }, paper.authors.join(", ")));
    for (const u of paper.urls || []) {
      const href = webUrl(u);
      parts.push(el("p", { class: "url" }, href ? el("a", { href, target: "_blank", rel: "noopener noreferrer" }, u) : u));
    }
    for (const s of paper.sections || []) {
      parts.push(el("h3", {}, (SECTIONS[s.kind] || s.kind) + " · " + s.language));
      const text = el("div", { class: "section-text" });
      if (s.html !== undefined) text.innerHTML = s.html; else text.textContent = s.text;  // html: escaped + <mark>
      parts.push(text);
    }
    parts.push(el("p", { class: "source" }, "출처 source: " + paper.source));
    parts.push(el("p", { class: "links" }, el("a", { class: "similar", href: "#similar=" + encodeURIComponent(paper.paper_id) },
      "비슷한 논문 More like this")));
    body.replaceChildren(...parts);
    $("paper").scrollTop = 0;  // the panel lies over the results (style.css): the list keeps its scroll position
  } catch (err) {
    body.replaceChildren(el("p", { class: "error" }, `오류 ${err.name}: ${err.message}`));
  }
}

function route() {
  const m = location.hash.match(/^#(paper|similar)=(.+)$/);
  if (m && m[1] === "paper") openPaper(decodeURIComponent(m[2]));
  else {
    $("paper").hidden = true;
    if (m) similar(decodeURIComponent(m[2]));
  }
}

async function loadInfo() {
  try {
    const { body: info } = await api("/info");
    const model = info.model ? info.model : "lexical-only (BM25)";
    $("footer").textContent = `논문 ${info.papers}편 · ${info.date_from || "?"} – ${info.date_to || "?"} · ` +
      `모델 model: ${model} · ${info.generation} · digest_rag ${info.library_version}`;
    $("tags").replaceChildren(...Object.keys(info.top_tags || {}).map((t) => el("option", { value: t })));
    // A lexical-only index has no vectors: dense and hybrid are not offered, whatever the address asked for.
    for (const option of $("mode").options) {
      option.disabled = !info.model && option.value !== "lexical";
      option.title = option.disabled ? "이 색인에는 임베딩 모델이 없습니다 (lexical-only index)" : "";
    }
    if (!info.model) $("mode").value = "lexical";
  } catch (err) {
    $("footer").textContent = `오류 ${err.name}: ${err.message}`;
  }
}

function init() {
  const url = new URLSearchParams(location.search);
  for (const f of FIELDS) if (url.get(f)) $(f).value = url.get(f);
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(true); });
  for (const f of ["mode", "lang", "from", "to", "k"]) {
    $(f).addEventListener("change", () => { if (current.kind === "similar") similar(current.id); else search(true); });
  }
  $("prev-page").addEventListener("click", () => page(-1));
  $("next-page").addEventListener("click", () => page(1));
  $("token").addEventListener("change", () => {
    sessionStorage.setItem("digest_rag_token", $("token").value);
    loadInfo(); search(false);
  });
  $("close-paper").addEventListener("click", () => { history.replaceState(null, "", location.pathname + location.search); route(); });
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("paper").hidden) $("close-paper").click(); });
  const start = Math.max(0, parseInt(url.get("offset") || "0", 10) || 0);
  loadInfo().then(() => { if (url.get("q")) search(false, start); route(); });
}

document.addEventListener("DOMContentLoaded", init);
