// The shopper page: search by words, photo or voice; facets, paging, "more like this", "why
// this result", product details, and (with a shopper id cookie) click recording and "for you".
import { call, GrpcError } from './grpc.js';
import { record } from './wav.js';

const PAGE = 12;
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
};

// ------------------------------------------------------------------ state

const state = {
  query: null,        // {text} | {image, preview} | {audio} | {item_id, title} | null (browse)
  page: 0,
  category: null,
  price: null,        // {min, max}
  controller: null,
  last: null,         // the last SearchResponse
};

// The key lives in this tab only (sessionStorage), never in a cookie or localStorage.
const key = () => sessionStorage.getItem('mms_key') || '';
$('key').value = key();
$('key').addEventListener('change', () => {
  sessionStorage.setItem('mms_key', $('key').value.trim());
  run();
});

// Shopper id: an opaque random id in a first-party cookie; clicks are recorded under it.
function shopperId() {
  const m = document.cookie.match(/(?:^|; )mms_shopper=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : null;
}
function ensureShopper() {
  let id = shopperId();
  if (!id) {
    id = `s-${crypto.randomUUID()}`;
    document.cookie = `mms_shopper=${id}; Path=/; Max-Age=31536000; SameSite=Strict`;
  }
  $('shopper').textContent = `Shopper id ${id.slice(0, 10)}…`;
  return id;
}
$('forget').addEventListener('click', () => {
  document.cookie = 'mms_shopper=; Path=/; Max-Age=0; SameSite=Strict';
  $('shopper').textContent = 'No shopper id: clicks are not recorded.';
  $('for-you').hidden = true;
});

// ------------------------------------------------------------------ rendering helpers

const money = (p, digits = 2) => p.toLocaleString(undefined, { style: 'currency', currency: 'USD', minimumFractionDigits: digits, maximumFractionDigits: digits });

// Thumbnails: a plain <img> when no key is needed; with a key, fetched with it (an <img>
// cannot send headers) and shown from a blob URL.
const blobs = new Map();
function thumb(id, alt, size = 'card') {
  const box = el('div', { class: `thumb ${size}` });
  const fallback = () => { box.textContent = (alt || id).slice(0, 1).toUpperCase(); box.classList.add('none'); };
  const url = `/images/${encodeURIComponent(id)}`;
  const show = (src) => {
    const img = el('img', { alt, loading: 'lazy', decoding: 'async', src });
    img.addEventListener('error', fallback, { once: true });
    box.append(img);
  };
  if (!key()) { show(url); return box; }
  const cached = blobs.get(id);
  if (cached) { show(cached); return box; }
  fetch(url, { headers: { authorization: `Bearer ${key()}` } })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.status))))
    .then((b) => { const u = URL.createObjectURL(b); blobs.set(id, u); show(u); })
    .catch(fallback);
  return box;
}

function setStatus(text, kind = '') {
  const s = $('status');
  s.textContent = text;
  s.className = kind;
}

function explainError(e) {
  if (!(e instanceof GrpcError)) return `Something went wrong: ${e.message}`;
  switch (e.codeName) {
    case 'UNAUTHENTICATED': $('key-box').open = true; return 'This shop needs an API key: enter one above.';
    case 'PERMISSION_DENIED': return `This key may not do that: ${e.message}`;
    case 'RESOURCE_EXHAUSTED': return `The server is busy or you are going too fast: ${e.message}`;
    case 'INVALID_ARGUMENT': return `The server could not use that query: ${e.message}`;
    case 'UNIMPLEMENTED': return `This server cannot do that: ${e.message}`;
    case 'UNAVAILABLE': return `The server cannot be reached: ${e.message}`;
    default: return `${e.codeName}: ${e.message}`;
  }
}

// ------------------------------------------------------------------ search

function request() {
  const q = state.query;
  const req = { top_k: PAGE, offset: state.page * PAGE, explain: true, facets: true };
  const filter = {};
  if (state.category) filter.categories = [state.category];
  if (state.price) { filter.price_min = state.price.min; if (state.price.max) filter.price_max = state.price.max; }
  if (Object.keys(filter).length) req.filter = filter;
  if (q === null) req.sort = 'SORT_BY_NEWEST';
  else if (q.text !== undefined) req.text = q.text;
  else if (q.image) req.image = q.image;
  else if (q.audio) req.audio = q.audio;
  else if (q.item_id) req.item_id = q.item_id;
  return req;
}

async function run() {
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  const grid = $('results');
  grid.setAttribute('aria-busy', 'true');
  setStatus(state.query && state.query.audio ? 'Listening to your question…' : 'Searching…', 'loading');
  const started = performance.now();
  let arrived = 0;
  try {
    const resp = await call('SearchService', 'Search', 'SearchRequest', 'SearchResponse', request(), {
      key: key(), signal: controller.signal, onResponse: () => { arrived = performance.now(); },
    });
    if (controller !== state.controller) return;
    state.last = resp;
    render(resp);
    // Two frames later the results have been painted: the time from the response's arrival
    // to there is what the page costs a shopper (kept for the browser test to read).
    requestAnimationFrame(() => requestAnimationFrame(() => {
      const painted = performance.now();
      window.mmsLastSearch = { roundTripMs: arrived - started, responseToPaintMs: painted - arrived, hits: resp.hits.length };
      document.body.dataset.searchDone = String((Number(document.body.dataset.searchDone) || 0) + 1);
    }));
  } catch (e) {
    if (e.name === 'AbortError') return;
    grid.replaceChildren();
    $('pager').hidden = true;
    setStatus(explainError(e), 'error');
    document.body.dataset.searchError = String((Number(document.body.dataset.searchError) || 0) + 1);
  } finally {
    grid.removeAttribute('aria-busy');
  }
}

function render(resp) {
  const grid = $('results');
  grid.replaceChildren(...resp.hits.map((h, i) => card(h, state.page * PAGE + i + 1)));
  const q = state.query;
  const info = $('query-info');
  info.hidden = !q || !(q.preview || q.item_id || q.audio);
  info.replaceChildren();
  if (q && q.preview) info.append(el('img', { src: q.preview, alt: 'Your photo' }), 'Products like your photo');
  if (q && q.item_id) info.append(`More like “${q.title}”`);
  if (q && q.audio) info.append(el('span', { id: 'transcript' }, `You said: “${resp.transcript.trim()}”`));
  if (resp.hits.length === 0) {
    setStatus(state.page > 0 ? 'No more results.' : 'No products match. Try other words, or clear the filters.', 'empty');
  } else {
    const total = resp.total !== null && resp.total !== 0 ? ` of ${resp.total}` : '';
    const first = state.page * PAGE + 1;
    setStatus(`Results ${first}–${first + resp.hits.length - 1}${total}`);
  }
  renderFacets(resp);
  const more = resp.total ? (state.page + 1) * PAGE < resp.total : resp.hits.length === PAGE;
  $('pager').hidden = state.page === 0 && !more;
  $('prev').disabled = state.page === 0;
  $('next').disabled = !more;
  $('page-no').textContent = `Page ${state.page + 1}`;
}

function card(h, rank) {
  const item = h.item || {};
  const open = () => showDetail(h);
  return el('li', { class: 'card', 'data-id': h.id, 'data-rank': rank },
    el('button', { class: 'card-open', onclick: open, 'aria-label': `${item.title}, details` },
      thumb(h.id, item.title)),
    el('h3', {}, el('button', { class: 'link title', onclick: open, text: item.title || h.id })),
    el('p', { class: 'meta' }, `${money(item.price)}${item.category ? ` · ${item.category}` : ''}`),
    h.snippet ? snippet(h.snippet) : null,
    el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'more', onclick: () => moreLike(h.id, item.title), text: 'More like this' }),
      h.explanation ? el('button', { type: 'button', class: 'why', onclick: () => showWhy(h), text: 'Why?' }) : null));
}

// The server HTML-escapes snippets and adds only <b>; they are rebuilt here as text + <b>
// elements rather than trusted as HTML.
function snippet(s) {
  const p = el('p', { class: 'snippet' });
  const parts = s.split(/<\/?b>/);
  const txt = document.createElement('textarea');
  parts.forEach((part, i) => {
    txt.innerHTML = part; // decodes &amp; etc. without rendering anything
    const t = txt.value;
    p.append(i % 2 ? el('b', {}, t) : t);
  });
  return p;
}

function renderFacets(resp) {
  const box = $('facets');
  box.replaceChildren();
  const heading = (t) => el('h2', {}, t);
  const counted = resp.facet_counted;
  if (!counted && !state.category && !state.price) return;
  const scope = state.query ? `top ${counted} matches` : `${counted} items`;
  box.append(el('p', { class: 'scope' }, `Counts over the ${scope}`));
  box.append(heading('Category'));
  const cats = el('ul', { class: 'facet-list' });
  if (state.category) cats.append(el('li', {}, el('button', { type: 'button', class: 'link', onclick: () => setFilter({ category: null }), text: '← All categories' })));
  for (const c of resp.categories) {
    cats.append(el('li', {}, el('button', {
      type: 'button', class: 'facet', 'aria-pressed': String(state.category === c.value),
      'data-category': c.value, onclick: () => setFilter({ category: state.category === c.value ? null : c.value }),
    }, c.value, el('span', { class: 'count' }, String(c.count)))));
  }
  box.append(cats);
  box.append(heading('Price'));
  const prices = el('ul', { class: 'facet-list' });
  if (state.price) prices.append(el('li', {}, el('button', { type: 'button', class: 'link', onclick: () => setFilter({ price: null }), text: '← Any price' })));
  for (const r of resp.price_ranges) {
    const label = !r.min ? `Under ${money(r.max, 0)}` : r.max ? `${money(r.min, 0)} – ${money(r.max, 0)}` : `${money(r.min, 0)} and up`;
    const on = state.price && state.price.min === r.min && state.price.max === r.max;
    prices.append(el('li', {}, el('button', {
      type: 'button', class: 'facet', 'aria-pressed': String(!!on),
      onclick: () => setFilter({ price: on ? null : { min: r.min, max: r.max } }),
    }, label, el('span', { class: 'count' }, String(r.count)))));
  }
  box.append(prices);
}

function setFilter(change) {
  Object.assign(state, change);
  state.page = 0;
  run();
}

function newQuery(q) {
  if (state.query && state.query.preview) URL.revokeObjectURL(state.query.preview);
  state.query = q;
  state.page = 0;
  state.category = null;
  state.price = null;
  run();
}

function moreLike(id, title) {
  $('detail').open && $('detail').close();
  newQuery({ item_id: id, title: title || id });
  window.scrollTo({ top: 0 });
}

// ------------------------------------------------------------------ query inputs

$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('q').value.trim();
  newQuery(text ? { text } : null);
});

async function photoQuery(file) {
  if (!file || !file.type.startsWith('image/')) { setStatus('That is not a photo.', 'error'); return; }
  const bytes = new Uint8Array(await file.arrayBuffer());
  $('q').value = '';
  newQuery({ image: bytes, preview: URL.createObjectURL(file) });
}
$('photo').addEventListener('change', () => { photoQuery($('photo').files[0]); $('photo').value = ''; });
$('photo-btn').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('photo').click(); }
});

// Drag and drop anywhere on the page.
let dragDepth = 0;
document.addEventListener('dragenter', (e) => { if (e.dataTransfer.types.includes('Files')) { dragDepth++; $('drop-zone').hidden = false; } });
document.addEventListener('dragleave', () => { if (--dragDepth <= 0) { dragDepth = 0; $('drop-zone').hidden = true; } });
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => {
  e.preventDefault();
  dragDepth = 0;
  $('drop-zone').hidden = true;
  photoQuery(e.dataTransfer.files[0]);
});

let recording = null;
$('mic').addEventListener('click', async () => {
  const mic = $('mic');
  if (recording) {
    const r = recording;
    recording = null;
    mic.setAttribute('aria-pressed', 'false');
    mic.classList.remove('on');
    const wav = await r.stop();
    $('q').value = '';
    newQuery({ audio: wav });
    return;
  }
  try {
    recording = await record(10);
  } catch (e) {
    setStatus(`The microphone is not available: ${e.message}`, 'error');
    return;
  }
  mic.setAttribute('aria-pressed', 'true');
  mic.classList.add('on');
  setStatus('Recording… press the microphone again to search (10 s at most).', 'loading');
  const mine = recording;
  mine.finished.then(() => { if (recording === mine) mic.click(); });
});

$('prev').addEventListener('click', () => { state.page = Math.max(0, state.page - 1); run(); });
$('next').addEventListener('click', () => { state.page += 1; run(); });

// "/" jumps to the search box, as on most shops.
document.addEventListener('keydown', (e) => {
  if (e.key === '/' && document.activeElement.tagName !== 'INPUT') { e.preventDefault(); $('q').focus(); }
});

// ------------------------------------------------------------------ details, why, clicks

for (const d of document.querySelectorAll('dialog')) {
  d.addEventListener('click', (e) => { if (e.target === d || e.target.hasAttribute('data-close')) d.close(); });
}

async function showDetail(h) {
  const item = h.item || {};
  recordClick(h.id);
  $('detail-photo').replaceChildren(thumb(h.id, item.title, 'big'));
  $('detail-title').textContent = item.title || h.id;
  $('detail-meta').textContent = `${money(item.price)}${item.category ? ` · ${item.category}` : ''}`;
  $('detail-desc').textContent = item.description || '';
  const attrs = $('detail-attrs');
  attrs.replaceChildren();
  for (const [k, v] of Object.entries(item.attributes || {})) attrs.append(el('dt', {}, k), el('dd', {}, v));
  const similar = $('detail-similar');
  similar.replaceChildren(el('li', { class: 'loading' }, 'Loading…'));
  $('detail').showModal();
  try {
    const resp = await call('SearchService', 'Search', 'SearchRequest', 'SearchResponse', { item_id: h.id, top_k: 6 }, { key: key() });
    similar.replaceChildren(...resp.hits.map(mini));
    if (!resp.hits.length) similar.replaceChildren(el('li', {}, 'Nothing similar.'));
  } catch (e) {
    similar.replaceChildren(el('li', { class: 'error' }, explainError(e)));
  }
}

function mini(h) {
  const item = h.item || {};
  return el('li', { class: 'mini', 'data-id': h.id },
    el('button', { type: 'button', class: 'mini-open', onclick: () => showDetail(h) },
      thumb(h.id, item.title, 'small'), el('span', {}, item.title || h.id), el('span', { class: 'meta' }, money(item.price))));
}

const pct = (x) => `${(x * 100).toFixed(0)}%`;
const num = (x) => x.toFixed(3);

function showWhy(h) {
  const e = h.explanation;
  const body = $('why-body');
  body.replaceChildren();
  body.append(el('p', {}, `“${h.item.title}” scored ${num(h.score)}. Candidates were found by `, el('code', {}, e.plan || 'browse'), '.'));
  if (e.spaces.length) {
    const t = el('table', {}, el('thead', {}, el('tr', {}, ...['Space', 'Compares', 'Similarity', 'Weight', 'Rank'].map((c) => el('th', { scope: 'col' }, c)))));
    const tb = el('tbody');
    for (const s of e.spaces) {
      tb.append(el('tr', {}, el('td', {}, s.space), el('td', {}, s.role || '—'),
        el('td', {}, `${num(s.score)}${s.estimated ? ' (at most)' : ''}`), el('td', {}, num(s.weight)),
        el('td', {}, s.rank ? `#${s.rank}` : 'not listed')));
    }
    t.append(tb);
    body.append(el('h3', {}, 'Meaning (vector search)'), t);
  }
  if (e.lexical) {
    body.append(el('h3', {}, 'Exact words (BM25)'),
      el('p', {}, e.lexical.rank ? `Rank #${e.lexical.rank} in the word matches, BM25 ${num(e.lexical.bm25)}, adding ${num(e.lexical.contribution)}.` : 'None of the words matched.'));
  }
  if (e.fusion) {
    body.append(el('p', {}, `Both lists were fused with `, el('code', {}, e.fusion), `: meaning added ${num(e.vector_contribution)}${e.lexical ? `, words ${num(e.lexical.contribution)}` : ''}.`));
  }
  if (e.parts.length) {
    body.append(el('h3', {}, 'Personal'), el('ul', {}, ...e.parts.map((p) => el('li', {}, `${p.name}: ${num(p.value)} × ${pct(p.weight)} = ${num(p.contribution)}`))));
  }
  if (h.snippet) body.append(el('h3', {}, 'Matching text'), snippet(h.snippet));
  $('why').showModal();
}

const recorded = new Set();
async function recordClick(id) {
  const user = shopperId();
  if (!user) return;
  try {
    await call('RecommendService', 'RecordInteractions', 'Interaction', 'RecordSummary',
      [{ user_id: user, item_id: id, kind: 'CLICK', idempotency_key: crypto.randomUUID() }], { key: key() });
    recorded.add(id);
    forYou();
  } catch (e) {
    // Recording is best effort: a key without the role must not break browsing.
    console.warn('click not recorded', e);
  }
}

async function forYou() {
  const user = shopperId();
  const box = $('for-you');
  if (!user) { box.hidden = true; return; }
  try {
    const resp = await call('RecommendService', 'RecommendForUser', 'RecommendForUserRequest', 'RecommendResponse',
      { user_id: user, top_k: 6 }, { key: key() });
    $('for-you-list').replaceChildren(...resp.hits.map(mini));
    box.hidden = resp.hits.length === 0;
  } catch {
    box.hidden = true;
  }
}

// ------------------------------------------------------------------ start

ensureShopper();
const initial = new URLSearchParams(location.search).get('q');
if (initial) { $('q').value = initial; state.query = { text: initial }; }
run();
forYou();
