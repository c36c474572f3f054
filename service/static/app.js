// Easel playground: plain JS talking to this server's OpenAI Images API (/v1/...).
// No build step and nothing from the internet; the CSP in service/pages.py enforces the latter.
'use strict';

// Every model's rules come from the server: each /v1/models entry carries `easel.rules` (sizes,
// qualities, styles, n, streaming, the endpoints it offers), the same data the server validates
// with (core/rules.py). The page knows no family and guesses nothing from a model's id; until the
// list loads (a key may be needed) it sends no size, quality or style and the server's defaults
// apply. `streaming`: the model answers `stream: true` (one image) with partial previews.
const DEFAULT_MODEL = 'easel-shapes';
const NO_RULES = { sizes: [], default_size: '', qualities: [], default_quality: '', styles: [],
  max_n: 10, streaming: false, operations: ['generate', 'edit', 'variation'], max_prompt: 0 };
let rulesById = new Map();  // model id -> easel.rules from /v1/models
let maxStepsById = new Map();  // model id -> easel.max_steps (its pipeline's limit)
const DEFAULT_MAX_STEPS = 100;
const PARTIALS = 3;  // previews asked for while a streamed image renders (the API allows 0-3)
const KEY_STORAGE = 'easel.apiKey';
const SETTINGS_STORAGE = 'easel.settings';  // the form (not the key) in localStorage
const HISTORY_DB = 'easel-history';  // results in IndexedDB: the newest HISTORY_KEEP of them
const HISTORY_KEEP = 40;
const HISTORY_MAX_BYTES = 4 * 1024 * 1024;  // larger images are not kept across reloads
// Seconds without news (no preview, no answer) before the page says why it may be slow.
const HINT_AFTER_S = Number(window.EASEL_HINT_AFTER_S) || 20;
const SHORT = 60;  // characters of a prompt in alt texts and labels
const EXTEND_FRACTION = 0.25;

const $ = (id) => document.getElementById(id);
const els = {
  key: $('api-key'), form: $('generate-form'), prompt: $('prompt'), model: $('model'),
  size: $('size'), quality: $('quality'), style: $('style'), n: $('n'), seed: $('seed'),
  steps: $('steps'), guidance: $('guidance'), negative: $('negative'), upload: $('upload'),
  status: $('status'), statusText: $('status-text'), statusTime: $('status-time'),
  error: $('error'), gallery: $('gallery'), empty: $('empty'), editor: $('editor'),
  stage: $('stage'), image: $('image-canvas'), mask: $('mask-canvas'), info: $('canvas-info'),
  brush: $('brush-size'),
  editForm: $('edit-form'), editPrompt: $('edit-prompt'), editSize: $('edit-size'),
  editN: $('edit-n'), editSubmit: $('edit-submit'), editNote: $('edit-note'),
  editModel: $('edit-model'), editPlan: $('edit-plan'), editPreview: $('edit-preview'),
  cancel: $('cancel'), statusHint: $('status-hint'), notice: $('notice'),
  promptCount: $('prompt-count'), clearHistory: $('clear-history'),
};

const rulesOf = (model) => rulesById.get(model) || NO_RULES;
const offers = (model, operation) => rulesOf(model).operations.includes(operation);
const maxSteps = (model) => maxStepsById.get(model) || DEFAULT_MAX_STEPS;
const editModels = () => [...rulesById.keys()].filter((m) => offers(m, 'edit'));
// A prompt cut short for alt texts and labels (the card shows it all, clamped).
const short = (text) => (text.length > SHORT ? `${text.slice(0, SHORT - 1).trimEnd()}…` : text);

// Streaming returns exactly one image, so it is used for n == 1 only; otherwise the page waits.
const canStream = (model, n) => rulesOf(model).streaming && n === 1;

// Keeps the current choice when the new list has it, unless `keep` is false.
function fillSelect(select, values, preferred, emptyLabel, keep = true) {
  const previous = keep ? select.value : undefined;
  select.replaceChildren(...values.map((v) => new Option(v, v)));
  if (!values.length) select.append(new Option(emptyLabel, ''));
  select.disabled = !values.length;  // e.g. dall-e-2 has no style: don't send one
  const pick = [previous, preferred].find((v) => values.includes(v));
  if (pick) select.value = pick;
}

// ---- talking to the API ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status, param) { super(message); this.status = status; this.param = param; }
}

// One place for every request: adds the key, and turns any failure into a readable ApiError
// carrying the server's own envelope message (never a bare "Failed" or a swallowed error).
async function api(path, body) {
  const res = await send(path, body);
  progressed();
  let data = null;
  try { data = await res.json(); } catch { /* not JSON: described below from the status */ }
  if (!res.ok) throw errorOf(res, data);
  return data;
}

function errorOf(res, data) {
  const message = data?.error?.message || `The server answered ${res.status} ${res.statusText}.`;
  return new ApiError(message, res.status, data?.error?.param);
}

async function send(path, body) {
  const headers = {};
  const key = els.key.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method: body ? 'POST' : 'GET', headers };
  if (current) init.signal = current.signal;  // Cancel aborts it; the server sees a hang-up
  if (body instanceof FormData) {
    init.body = body;  // the browser writes the multipart boundary itself
  } else if (body) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(`Could not reach the Easel server (${err.message}).`, 0);
  }
}

// A `stream: true` request: server-sent events over a POST, so fetch + ReadableStream rather
// than EventSource (GET only). Calls onPartial with each `*.partial_image` payload and returns
// the `*.completed` one in the shape of an ordinary response ({ data: [...] }). Errors before
// the stream starts are ordinary JSON answers; one after it is an `error` event.
async function apiStream(path, body, onPartial) {
  const res = await send(path, body);
  if (!res.ok || !(res.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
    let data = null;
    try { data = await res.json(); } catch { /* described from the status */ }
    if (!res.ok) throw errorOf(res, data);
    return data;  // a server that answered without streaming: an ordinary response
  }
  let completed = null;
  const handle = (event, text) => {
    let data;
    try { data = JSON.parse(text); } catch {
      throw new ApiError('The server sent a progress update the page could not read.', 0);
    }
    if (event === 'error' || data.error) {
      throw new ApiError(data.error?.message || 'The image failed while it was being made.',
        0, data.error?.param);
    }
    const type = data.type || event;
    progressed();
    if (type.endsWith('.partial_image')) onPartial(data);
    else if (type.endsWith('.completed')) completed = data;
  };
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (err.name === 'AbortError') throw err;
        throw new ApiError('The connection to the Easel server broke off before the image was '
          + `finished (${err.message}).`, 0);
      }
      if (chunk.value) buffer += chunk.value;
      // An event ends at a blank line; a half-received one waits in the buffer.
      let end;
      while ((end = buffer.search(/\r\n\r\n|\n\n|\r\r/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 4 : 2));
        dispatch(block, handle);
      }
      if (chunk.done) break;
    }
    if (buffer.trim()) dispatch(buffer, handle);
  } finally {
    reader.cancel().catch(() => {});  // stop reading after an error event (or a page error)
  }
  if (!completed) {
    throw new ApiError('The server closed the stream before the image was finished. '
      + 'Try again.', 0);
  }
  return { data: [{ b64_json: completed.b64_json, format: completed.output_format }] };
}

// One server-sent event block: `event:` names it, `data:` lines (joined by newlines) carry it.
function dispatch(block, handle) {
  let event = 'message';
  const data = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (!line || line.startsWith(':')) continue;  // a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length) handle(event, data.join('\n'));
}

function showError(err) {
  let text = err instanceof ApiError ? err.message : `Something went wrong in the page: ${err}`;
  if (err.status === 401) text += ' Check the API key field at the top of the page.';
  els.error.textContent = text;
  els.error.hidden = false;
  els.error.scrollIntoView({ block: 'nearest' });
}

function clearError() { els.error.hidden = true; els.error.textContent = ''; }

// A request is a wait of seconds to minutes: show a spinner with the elapsed time, disable the
// submit buttons (one request at a time) and mark the area busy. Streamed requests also show
// their previews in a pending gallery card (see streamInto).
let busy = false;
let current = null;  // the AbortController of the request in flight
let lastNews = 0;  // when the server last said something (an answer, a preview)
const progressed = () => { lastNews = performance.now(); };

function notify(text) {
  els.notice.textContent = text;
  els.notice.hidden = !text;
}

async function run(label, task) {
  if (busy) return;
  busy = true;
  clearError();
  notify('');
  current = new AbortController();
  const started = performance.now();
  lastNews = started;
  // The label is announced once; the ticking seconds are hidden from screen readers.
  els.statusText.textContent = `${label}…`;
  els.statusHint.hidden = true;
  els.cancel.disabled = false;
  const tick = () => {
    const now = performance.now();
    els.statusTime.textContent = `${Math.floor((now - started) / 1000)} s`;
    const quiet = (now - lastNews) / 1000;
    if (quiet >= HINT_AFTER_S && els.statusHint.hidden) {
      els.statusHint.textContent = 'The server is still working on it. If nothing changes, its '
        + 'worker may be busy or restarting: wait, or Cancel and try again.';
      els.statusHint.hidden = false;
    }
  };
  tick();
  const timer = setInterval(tick, 250);
  els.status.hidden = false;
  els.status.scrollIntoView({ block: 'nearest' });  // on a phone the form hides it otherwise
  els.gallery.setAttribute('aria-busy', 'true');
  document.querySelectorAll('button.primary, .item-actions button').forEach((b) => {
    b.disabled = true;
  });
  try {
    await task();
  } catch (err) {
    if (err.name === 'AbortError') {
      notify(`Cancelled after ${els.statusTime.textContent}: the server drops the request.`);
    } else {
      showError(err);
    }
  } finally {
    const focusLost = document.activeElement === els.cancel
      || document.activeElement === document.body;
    current = null;
    clearInterval(timer);
    els.status.hidden = true;
    els.statusHint.hidden = true;
    els.gallery.setAttribute('aria-busy', 'false');
    document.querySelectorAll('button.primary, .item-actions button').forEach((b) => {
      b.disabled = false;
    });
    busy = false;
    if (focusLost && resultFocus?.isConnected) resultFocus.focus({ preventScroll: true });
    resultFocus = null;
  }
}

els.cancel.addEventListener('click', () => {
  if (!current) return;
  els.cancel.disabled = true;
  els.statusText.textContent = 'Cancelling…';
  current.abort();
});

async function loadModels() {
  let models = [];
  try {
    models = (await api('/v1/models'))?.data || [];
  } catch (err) {
    showError(err);  // e.g. a key is required: entering one loads the list again
  }
  rulesById = new Map(models.filter((m) => m.easel?.rules).map((m) => [m.id, m.easel.rules]));
  maxStepsById = new Map(models.filter((m) => m.easel?.max_steps)
    .map((m) => [m.id, m.easel.max_steps]));
  const saved = loadSettings();
  fillSelect(els.model, models.map((m) => m.id), saved.model || DEFAULT_MODEL,
    '(server default)');
  fillSelect(els.editModel, editModels(), els.model.value, '(server default)');
  onModelChange();
  if (!settingsApplied) {  // once: the saved size, quality, ... now that their options exist
    settingsApplied = true;
    for (const k of ['size', 'quality', 'style']) {
      if ([...els[k].options].some((o) => o.value === saved[k])) els[k].value = saved[k];
    }
  }
}

// ---- settings and prompt, kept in localStorage (never the key) --------------------------------

const SAVED = ['prompt', 'model', 'size', 'quality', 'style', 'n', 'seed', 'steps', 'guidance',
  'negative'];
let settingsApplied = false;

function loadSettings() {
  try { return JSON.parse(localStorage.getItem(SETTINGS_STORAGE)) || {}; } catch { return {}; }
}

function saveSettings() {
  if (!settingsApplied) return;  // the saved ones are not in the form yet
  const out = {};
  for (const k of SAVED) out[k] = els[k].value;
  try { localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(out)); } catch { /* full */ }
}

function restoreFields() {
  const saved = loadSettings();
  for (const k of ['prompt', 'n', 'seed', 'steps', 'guidance', 'negative']) {
    if (typeof saved[k] === 'string') els[k].value = saved[k];
  }
}

function onModelChange() {
  const rules = rulesOf(els.model.value);
  fillSelect(els.size, rules.sizes, rules.default_size, '(server default)');
  // A quality the user picked follows them to models that have it; else the model's default
  // (a default such as gpt-image's "auto" does not stick to the next model).
  fillSelect(els.quality, rules.qualities, rules.qualities.includes(chosen.quality)
    ? chosen.quality : rules.default_quality, '(server default)', false);
  fillSelect(els.style, rules.styles, 'vivid', '(not supported)');
  els.n.max = String(rules.max_n);
  // The n the user asked for comes back when a model allows it again (dall-e-3 takes 1).
  if (chosen.n) els.n.value = String(Math.min(chosen.n, rules.max_n));
  else if (Number(els.n.value) > rules.max_n) els.n.value = String(rules.max_n);
  els.steps.max = String(maxSteps(els.model.value));
  updateCount();
  showActions();
}

const chosen = { quality: '', n: 0 };  // what the user picked, not what a model forced
els.quality.addEventListener('change', () => { chosen.quality = els.quality.value; });
els.n.addEventListener('input', () => {
  const n = Number(els.n.value);
  if (Number.isInteger(n) && n >= 1) chosen.n = n;
});

// A whole number from 1 to the model's max_n, or an ApiError naming the field.
function countOf(input, model) {
  const n = Number(input.value === '' ? '1' : input.value);
  const max = rulesOf(model).max_n;
  if (!Number.isInteger(n) || n < 1 || n > max) {
    input.focus();
    throw new ApiError(`Images (n) must be a whole number from 1 to ${max} for ${model}.`, 0, 'n');
  }
  return n;
}

function onEditModelChange() {
  const rules = rulesOf(els.editModel.value);
  els.editN.max = String(rules.max_n);
  if (Number(els.editN.value) > rules.max_n) els.editN.value = String(rules.max_n);
  if (!els.editor.hidden) {
    fillSelect(els.editSize, rules.sizes, suggestSize(els.image.width, els.image.height), '',
      false);
  }
  showPlan();
}

// The prompt's length against the model's limit (rules.max_prompt).
function updateCount() {
  const limit = rulesOf(els.model.value).max_prompt;
  const length = els.prompt.value.length;
  els.promptCount.textContent = limit ? `${length} / ${limit}` : `${length} characters`;
  els.promptCount.classList.toggle('over', Boolean(limit) && length > limit);
}

// Edit and Variations only where the chosen model offers them (dall-e-3 offers neither, GPT
// image models no variations): the server would refuse them.
// The editor has its own model (only models that edit): Edit shows wherever one of them exists;
// Variations use the Generate form's model.
function showActions() {
  const model = els.model.value;
  const edits = rulesById.size ? editModels().length > 0 : offers(model, 'edit');
  document.querySelectorAll('.item .edit').forEach((b) => { b.hidden = !edits; });
  document.querySelectorAll('.item .variations').forEach((b) => {
    b.hidden = !offers(model, 'variation');
  });
  const editor = els.editModel.value || model;
  const ok = offers(editor, 'edit');
  els.editSubmit.hidden = !ok;
  els.editNote.hidden = ok;
  els.editNote.textContent = ok ? '' : `Model ${editor} does not edit images: choose another.`;
}

// Optional Easel extensions from the Advanced section; empty fields are not sent at all.
// Throws (before anything is sent) what the server would refuse for `model`.
function extensions(model = els.model.value) {
  const out = {};
  if (els.seed.value !== '') out.seed = Number(els.seed.value);
  if (els.steps.value !== '') {
    const steps = Number(els.steps.value);
    const max = maxSteps(model);
    if (!Number.isInteger(steps) || steps < 1 || steps > max) {
      els.steps.focus();
      throw new ApiError(`Steps must be a whole number from 1 to ${max} for ${model}.`, 0,
        'steps');
    }
    out.steps = steps;
  }
  return out;
}

// ---- gallery --------------------------------------------------------------------------------

let nextId = 0;
const items = new Map();  // id -> { blob, url, width, height, params }

function b64ToBlob(b64, format = 'png') {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: `image/${format}` });
}

async function addItem(blob, params, saved = null) {
  const bitmap = await createImageBitmap(blob);
  const item = { id: nextId++, blob, url: URL.createObjectURL(blob), width: bitmap.width,
    height: bitmap.height, params, key: saved };
  bitmap.close();
  items.set(item.id, item);
  const node = $('item-template').content.firstElementChild.cloneNode(true);
  node.dataset.id = String(item.id);
  const img = node.querySelector('img');
  img.src = item.url;
  img.width = item.width;
  img.height = item.height;
  const text = params.prompt || params.name || '';
  img.alt = `${params.kind}: ${short(text) || 'image'}`;
  node.querySelector('.prompt').textContent = text;
  // Long prompts are clamped to a few lines (CSS); a button shows the rest.
  const more = node.querySelector('.more');
  more.hidden = text.length <= 160;
  node.querySelector('.prompt').classList.toggle('clamped', !more.hidden);
  const shown = { kind: params.kind, model: params.model, size: `${item.width}x${item.height}`,
    seed: params.seed, steps: params.steps, quality: params.quality, style: params.style };
  const dl = node.querySelector('.params');
  for (const [k, v] of Object.entries(shown)) {
    if (v === undefined || v === null || v === '') continue;
    const pair = document.createElement('div');  // <div> groups a dt/dd pair for layout
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = k;
    dd.textContent = String(v);
    pair.append(dt, dd);
    dl.append(pair);
  }
  const a = node.querySelector('.download');
  a.href = item.url;
  a.download = `easel-${params.kind}-${params.seed ?? item.id}.png`;
  const name = `${params.kind} ${item.id + 1}`;  // short: the alt text carries the prompt
  a.setAttribute('aria-label', `Download ${name}`);
  node.querySelector('.edit').setAttribute('aria-label', `Edit ${name}`);
  node.querySelector('.variations').setAttribute('aria-label', `Variations of ${name}`);
  node.querySelector('.reuse').setAttribute('aria-label', `Reuse the settings of ${name}`);
  node.querySelector('.reuse').hidden = params.kind === 'upload';
  node.querySelector('.delete').setAttribute('aria-label', `Delete ${name}`);
  node.tabIndex = -1;  // focusable, so a new result can take the focus
  node.setAttribute('aria-label', `${name}: ${short(text) || 'image'}`);
  node.querySelector('.edit').hidden = rulesById.size ? !editModels().length
    : !offers(els.model.value, 'edit');
  node.querySelector('.variations').hidden = !offers(els.model.value, 'variation');
  if (busy) {
    node.querySelectorAll('.item-actions button').forEach((b) => { b.disabled = true; });
  }
  return node;
}

// Newest first, but a batch keeps its own order (image i used seed + i). A streamed result
// takes the place of its pending card (and records how many previews that card showed).
async function addResults(response, params, pending = null) {
  const nodes = [];
  for (const d of response.data) {
    const blob = d.b64_json ? b64ToBlob(d.b64_json, d.format || response.output_format)
      : await (await fetch(d.url)).blob();
    nodes.push(await addItem(blob, { ...params, seed: d.seed ?? params.seed }));
  }
  if (pending?.node.isConnected) {
    for (const node of nodes) node.dataset.partials = String(pending.shown);
    pending.node.replaceWith(...nodes);
  } else {
    els.gallery.prepend(...nodes);
  }
  els.empty.hidden = true;
  for (const node of [...nodes].reverse()) remember(items.get(Number(node.dataset.id)));
  if (!nodes.length) return [];
  resultFocus = nodes[0];
  if (params.kind === 'edit' && !els.editor.hidden) {
    // The editor continues from the edit's result, where the user is looking.
    await openEditor(items.get(Number(nodes[0].dataset.id)), { keepPrompt: true });
    notify(`The edit is done: it is in the editor now, and first in Results (${nodes.length}`
      + ` image${nodes.length > 1 ? 's' : ''}).`);
  } else {
    reveal(nodes[0]);
  }
  return nodes;
}

let resultFocus = null;  // the newest card: focused once the request ends (if focus was lost)

function reveal(node) {
  const still = matchMedia('(prefers-reduced-motion: reduce)').matches;
  node.scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'nearest' });
}

els.gallery.addEventListener('click', (e) => {
  const more = e.target.closest('.more');
  if (!more) return;
  const open = more.getAttribute('aria-expanded') !== 'true';
  more.setAttribute('aria-expanded', String(open));
  more.textContent = open ? 'Show less' : 'Show full prompt';
  more.closest('figcaption').querySelector('.prompt').classList.toggle('clamped', !open);
});

// ---- live previews (stream: true) -------------------------------------------------------------

// The card a streamed image renders into: a spinner until the first preview, then each preview
// as the picture sharpens ("preview 1/3", ...); the result card replaces it at the end.
class PendingCard {
  constructor(params, size, label) {
    this.params = params;
    this.label = label;
    this.shown = 0;
    this.url = null;
    this.node = $('pending-template').content.firstElementChild.cloneNode(true);
    this.img = this.node.querySelector('img');
    this.badge = this.node.querySelector('.badge-text');
    this.progress = this.node.querySelector('.progress');
    const [w, h] = size === 'auto' || !size ? [1, 1] : dims(size);
    this.node.querySelector('.frame').style.aspectRatio = `${w} / ${h}`;
    this.node.querySelector('.prompt').textContent = params.prompt || '';
    this.node.dataset.partials = '0';
    els.gallery.prepend(this.node);
    els.empty.hidden = true;
    // An edit's previews show over the editor's picture; others where the gallery begins.
    this.inEditor = params.kind === 'edit' && !els.editor.hidden;
    if (!this.inEditor) reveal(this.node);
  }

  show(partial) {
    const k = (Number(partial.partial_image_index) || 0) + 1;
    const url = URL.createObjectURL(b64ToBlob(partial.b64_json, partial.output_format));
    this.img.src = url;
    this.img.alt = `Preview ${k} of ${PARTIALS}: ${short(this.params.prompt || '')}`;
    if (this.inEditor) {
      els.editPreview.src = url;
      els.editPreview.hidden = false;
    }
    this.img.hidden = false;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = url;
    this.shown += 1;
    this.node.dataset.partials = String(this.shown);
    this.node.classList.add('has-preview');
    this.badge.textContent = `preview ${k}/${PARTIALS}`;
    this.progress.textContent = k < PARTIALS ? 'Sharpening…' : 'Finishing…';
    els.statusText.textContent = `${this.label}… preview ${k}/${PARTIALS}`;
  }

  remove() {
    if (this.inEditor) {
      els.editPreview.hidden = true;
      els.editPreview.removeAttribute('src');
    }
    this.node.remove();
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    if (!els.gallery.children.length) els.empty.hidden = false;
  }
}

// Sends one request, streamed when `stream` is set, and puts the result in the gallery.
// `make(stream)` builds the body for either way. A server that refuses streaming for this model
// (a custom catalog id with other rules) gets the same request again without it.
async function request(path, make, params, stream, label, size) {
  if (stream) {
    const card = new PendingCard(params, size, label);
    try {
      const res = await apiStream(path, make(true), (p) => card.show(p));
      await addResults(res, params, card);
      return;
    } catch (err) {
      if (!(err.status === 400 && ['stream', 'partial_images'].includes(err.param))) throw err;
    } finally {
      card.remove();  // a no-op once the result has replaced it
    }
    els.statusText.textContent = `${label}…`;
  }
  await addResults(await api(path, make(false)), params);
}

// The seed of a streamed image is not in the stream's events, so the page picks it itself
// (as the server would) to show it on the result and keep the image reproducible.
const randomSeed = () => Math.floor(Math.random() * 2 ** 31);

els.gallery.addEventListener('click', (e) => {
  const button = e.target.closest('button');
  if (!button || button.classList.contains('more')) return;
  const item = items.get(Number(button.closest('.item').dataset.id));
  if (button.classList.contains('edit')) openEditor(item);
  if (button.classList.contains('variations')) variations(item);
  if (button.classList.contains('reuse')) reuse(item);
  if (button.classList.contains('delete')) forget(item);
});

// Puts a result's prompt, model, size, quality, style, seed and steps back into the form.
function reuse(item) {
  const p = item.params;
  if (p.prompt) els.prompt.value = p.prompt;
  if ([...els.model.options].some((o) => o.value === p.model)) {
    els.model.value = p.model;
    onModelChange();
  }
  const size = `${item.width}x${item.height}`;
  for (const [el, v] of [[els.size, size], [els.quality, p.quality], [els.style, p.style]]) {
    if (v && [...el.options].some((o) => o.value === v)) el.value = v;
  }
  els.seed.value = p.seed ?? '';
  els.steps.value = p.steps ?? '';
  if (p.seed !== undefined || p.steps !== undefined) els.form.querySelector('details').open = true;
  updateCount();
  saveSettings();
  const still = matchMedia('(prefers-reduced-motion: reduce)').matches;
  els.prompt.scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'center' });
  els.prompt.focus({ preventScroll: true });
  notify(`Settings of ${p.kind} ${item.id + 1} are in the form.`);
}

// ---- generate -------------------------------------------------------------------------------

function generate() {
  if (busy) return;  // Ctrl+Enter still works while the buttons are disabled
  const prompt = els.prompt.value.trim();
  if (!prompt) {
    showError(new ApiError('Write a prompt first (or pick an example below the box).', 0));
    els.prompt.focus();
    return;
  }
  const limit = rulesOf(els.model.value).max_prompt;
  if (limit && prompt.length > limit) {
    showError(new ApiError(`The prompt has ${prompt.length} characters; ${els.model.value} `
      + `takes at most ${limit}.`, 0));
    els.prompt.focus();
    return;
  }
  let ext;
  let n;
  try {
    n = countOf(els.n, els.model.value);
    ext = extensions();
  } catch (err) { showError(err); return; }
  saveSettings();
  const body = { model: els.model.value, prompt, n, response_format: 'b64_json', ...ext };
  if (!els.size.disabled) body.size = els.size.value;
  if (!els.quality.disabled) body.quality = els.quality.value;
  if (!els.style.disabled) body.style = els.style.value;
  if (els.guidance.value !== '') body.guidance_scale = Number(els.guidance.value);
  if (els.negative.value.trim()) body.negative_prompt = els.negative.value.trim();
  const stream = canStream(body.model, body.n);
  if (stream && body.seed === undefined) body.seed = randomSeed();
  const label = body.n > 1 ? `Generating ${body.n} images` : 'Generating';
  const make = (streamed) => (streamed
    ? { ...body, stream: true, partial_images: PARTIALS } : body);
  return run(label, () => request('/v1/images/generations', make,
    { kind: 'generation', model: body.model, prompt, seed: body.seed, steps: body.steps,
      quality: body.quality, style: body.style }, stream, label, body.size));
}

els.form.addEventListener('submit', (e) => { e.preventDefault(); generate(); });

// Ctrl+Enter / Cmd+Enter submits from a textarea (plain Enter adds a line break there).
function submitOnCtrlEnter(textarea, form) {
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
}
submitOnCtrlEnter(els.prompt, els.form);
submitOnCtrlEnter(els.editPrompt, els.editForm);

document.querySelectorAll('.chip').forEach((chip) => chip.addEventListener('click', () => {
  els.prompt.value = chip.textContent;
  els.prompt.focus();
}));

// ---- variations -----------------------------------------------------------------------------

// The size of a result: the image's own size when the model allows it, else the form's size.
function sizeFor(item) {
  const own = `${item.width}x${item.height}`;
  return rulesOf(els.model.value).sizes.includes(own) ? own : els.size.value;
}

function variations(item) {
  const form = new FormData();
  const model = els.model.value;
  let ext;
  try { ext = extensions(model); } catch (err) { showError(err); return; }
  const size = sizeFor(item);
  const n = Math.min(Number(els.n.value) || 1, rulesOf(model).max_n);
  form.append('image', item.blob, 'image.png');
  if (model) form.append('model', model);
  form.append('n', String(n));
  if (size) form.append('size', size);
  form.append('response_format', 'b64_json');
  for (const [k, v] of Object.entries(ext)) form.append(k, String(v));
  return run('Making variations', async () => {
    const res = await api('/v1/images/variations', form);
    await addResults(res, { kind: 'variation', model, name: `variation of ${item.id + 1}`,
      steps: ext.steps });
  });
}

// ---- upload ---------------------------------------------------------------------------------

// Uploaded files join the gallery (so Edit and Variations work the same) and open the editor.
// Edits need PNG, so other formats are redrawn to a PNG first.
els.upload.addEventListener('change', async () => {
  const file = els.upload.files[0];
  if (file) await uploadFile(file);
  els.upload.value = '';
});

// Drag-and-drop anywhere on the page, or paste an image (Ctrl+V), do the same as the button.
document.addEventListener('dragover', (e) => {
  if ([...(e.dataTransfer?.types || [])].includes('Files')) e.preventDefault();
});
document.addEventListener('drop', (e) => {
  const file = [...(e.dataTransfer?.files || [])].find((f) => f.type.startsWith('image/'));
  if (!file) return;
  e.preventDefault();
  uploadFile(file);
});
document.addEventListener('paste', (e) => {
  const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith('image/'));
  if (!file) return;
  e.preventDefault();
  uploadFile(file);
});

async function uploadFile(file) {
  clearError();
  try {
    let blob = file;
    if (file.type !== 'image/png') {
      const bitmap = await createImageBitmap(file);
      const c = document.createElement('canvas');
      c.width = bitmap.width;
      c.height = bitmap.height;
      c.getContext('2d').drawImage(bitmap, 0, 0);
      blob = await new Promise((resolve) => c.toBlob(resolve, 'image/png'));
    }
    const node = await addItem(blob, { kind: 'upload', name: file.name });
    els.gallery.prepend(node);
    els.empty.hidden = true;
    openEditor(items.get(Number(node.dataset.id)));
  } catch (err) {
    const why = String(err.message || err).replace(/\.+$/, '');  // "(... decoded.)." no more
    showError(new ApiError(`That file could not be read as an image (${why}).`, 0));
  }
}

// ---- editor: mask painting and outpainting ----------------------------------------------------

// Two stacked canvases of the image's pixel size: image-canvas holds the picture (with
// transparent margins after "Extend"), mask-canvas holds brush strokes (opaque = to change),
// shown tinted on top through CSS opacity.
const editor = { item: null, painting: false, last: null };
const imageCtx = els.image.getContext('2d', { willReadFrequently: true });
const maskCtx = els.mask.getContext('2d', { willReadFrequently: true });

async function openEditor(item, { keepPrompt = false } = {}) {
  editor.item = item;
  // The editor's own model: the image's if it edits, else the one chosen before.
  const models = editModels();
  if (models.includes(item.params.model) && !keepPrompt) els.editModel.value = item.params.model;
  else if (!models.includes(els.editModel.value) && models.includes(els.model.value)) {
    els.editModel.value = els.model.value;
  }
  onEditModelChange();
  const bitmap = await createImageBitmap(item.blob);
  els.editor.hidden = false;
  setCanvasSize(bitmap.width, bitmap.height);
  imageCtx.drawImage(bitmap, 0, 0);
  bitmap.close();
  if (!keepPrompt) els.editPrompt.value = item.params.prompt || els.prompt.value;
  els.info.textContent += ` Editing ${item.params.kind} ${item.id + 1}.`;
  const still = matchMedia('(prefers-reduced-motion: reduce)').matches;
  els.editor.scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'start' });
  els.editPrompt.focus({ preventScroll: true });
}

function setCanvasSize(w, h) {
  for (const c of [els.image, els.mask]) { c.width = w; c.height = h; }
  // Fit the stage to the space while keeping the aspect ratio (CSS scales both canvases).
  els.stage.style.aspectRatio = `${w} / ${h}`;
  els.stage.style.maxWidth = `min(100%, ${Math.round(480 * Math.min(1, w / h))}px)`;
  els.info.textContent = `Canvas ${w}×${h} px.`;
  fillSelect(els.editSize, rulesOf(els.editModel.value).sizes, suggestSize(w, h), '', false);
  showPlan();
}

// Before submitting: the canvas that will be sent (padded to the result's shape) and the size
// that comes back, so nothing is padded by surprise.
function showPlan() {
  const size = els.editSize.value;
  const { width: w, height: h } = els.image;
  if (!size || !w || !h) { els.editPlan.textContent = ''; return; }
  if (size === 'auto') {
    els.editPlan.textContent = `Sends ${w}×${h}; the server picks the result size.`;
    return;
  }
  const [nw, nh] = paddedSize(size, w, h);
  const padded = nw !== w || nh !== h
    ? ` padded (centred, transparent) from ${w}×${h} to ${nw}×${nh} to match its shape;` : '';
  els.editPlan.textContent = `Sends the canvas${padded || ` as ${w}×${h};`} the result is `
    + `${size.replace('x', '×')}.`;
}

function paddedSize(size, w, h) {
  const [sw, sh] = dims(size);
  if (Math.abs(w / h - sw / sh) < 0.01) return [w, h];
  return [Math.max(w, Math.round((h * sw) / sh)), Math.max(h, Math.round((w * sh) / sw))];
}

const dims = (size) => size.split('x').map(Number);

// The allowed size nearest the canvas's shape (so little or nothing is padded), and of those
// the smallest that holds the whole canvas (outpainting grows the picture), else the largest.
function suggestSize(w, h) {
  const sizes = rulesOf(els.editModel.value).sizes.filter((s) => s !== 'auto');
  if (!sizes.length || !w || !h) return sizes[0];
  const off = (s) => Math.abs(Math.log((dims(s)[0] / dims(s)[1]) / (w / h)));
  const best = Math.min(...sizes.map(off));
  const shaped = sizes.filter((s) => off(s) - best < 1e-6);
  const area = (s) => dims(s)[0] * dims(s)[1];
  shaped.sort((a, b) => area(a) - area(b));
  return shaped.find((s) => dims(s)[0] >= w && dims(s)[1] >= h) || shaped[shaped.length - 1];
}

// The server scales the image to the result size, so a canvas of another shape (after
// extending one side) would come back squashed. Pad it instead, centred, with transparent
// pixels: the model then draws those strips too, and nothing is distorted.
function padToShape(size) {
  if (!size || size === 'auto') return;
  const { width: w, height: h } = els.image;
  const [nw, nh] = paddedSize(size, w, h);
  if (nw === w && nh === h) return;
  const old = [els.image, els.mask].map(copyOf);
  setCanvasSize(nw, nh);
  els.editSize.value = size;  // setCanvasSize suggested one; keep the user's choice
  const dx = Math.floor((nw - w) / 2);
  const dy = Math.floor((nh - h) / 2);
  imageCtx.drawImage(old[0], dx, dy);
  maskCtx.drawImage(old[1], dx, dy);
  els.info.textContent += ` Padded from ${w}×${h} to the shape of ${size}.`;
}

function copyOf(canvas) {
  const copy = document.createElement('canvas');
  copy.width = canvas.width;
  copy.height = canvas.height;
  copy.getContext('2d').drawImage(canvas, 0, 0);
  return copy;
}

function brushRadius() {
  // The slider is in screen pixels; the canvas may be drawn larger or smaller than it is.
  const r = els.mask.getBoundingClientRect();
  return (Number(els.brush.value) / 2) * (els.mask.width / (r.width || els.mask.width));
}

function toCanvas(e) {
  const r = els.mask.getBoundingClientRect();
  return { x: (e.clientX - r.left) * els.mask.width / r.width,
    y: (e.clientY - r.top) * els.mask.height / r.height };
}

function stroke(from, to) {
  const eraser = document.querySelector('input[name="tool"]:checked').value === 'eraser';
  maskCtx.globalCompositeOperation = eraser ? 'destination-out' : 'source-over';
  maskCtx.strokeStyle = maskCtx.fillStyle = '#ff2d8a';
  maskCtx.lineCap = maskCtx.lineJoin = 'round';
  maskCtx.lineWidth = brushRadius() * 2;
  maskCtx.beginPath();
  maskCtx.moveTo(from.x, from.y);
  maskCtx.lineTo(to.x + 0.01, to.y);  // a zero-length line draws nothing: nudge it for dots
  maskCtx.stroke();
}

// Undo: the mask as it was before each stroke (or rectangle), the newest last.
const undoStack = [];
function checkpoint() {
  undoStack.push(maskCtx.getImageData(0, 0, els.mask.width, els.mask.height));
  if (undoStack.length > 30) undoStack.shift();
}
function undoMask() {
  const last = undoStack.pop();
  if (last && last.width === els.mask.width && last.height === els.mask.height) {
    maskCtx.putImageData(last, 0, 0);
  }
}
$('undo-mask').addEventListener('click', undoMask);
els.editor.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'z' && !e.target.matches('textarea, input')) {
    e.preventDefault();
    undoMask();
  }
});

// The keyboard way to mark the area: a rectangle in percent of the picture.
$('rect-mark').addEventListener('click', () => {
  const pct = (id) => Math.min(100, Math.max(0, Number($(id).value) || 0)) / 100;
  const { width: w, height: h } = els.mask;
  checkpoint();
  maskCtx.globalCompositeOperation = 'source-over';
  maskCtx.fillStyle = '#ff2d8a';
  maskCtx.fillRect(pct('rect-x') * w, pct('rect-y') * h, pct('rect-w') * w, pct('rect-h') * h);
});

els.mask.addEventListener('pointerdown', (e) => {
  e.preventDefault();
  checkpoint();
  els.mask.setPointerCapture(e.pointerId);
  editor.painting = true;
  editor.last = toCanvas(e);
  stroke(editor.last, editor.last);
});
els.mask.addEventListener('pointermove', (e) => {
  if (!editor.painting) return;
  const p = toCanvas(e);
  stroke(editor.last, p);
  editor.last = p;
});
for (const type of ['pointerup', 'pointercancel']) {
  els.mask.addEventListener(type, () => { editor.painting = false; });
}
$('clear-mask').addEventListener('click', () => {
  checkpoint();
  maskCtx.clearRect(0, 0, els.mask.width, els.mask.height);
});
$('reset-canvas').addEventListener('click', () => { if (editor.item) openEditor(editor.item); });

// Outpainting: grow the canvas on one side, keeping the picture and the mask where they were;
// the new margin stays transparent, which the API treats as the area to draw.
document.querySelectorAll('[data-extend]').forEach((button) => {
  button.addEventListener('click', () => {
    const side = button.dataset.extend;
    const horizontal = side === 'left' || side === 'right';
    const w = els.image.width;
    const h = els.image.height;
    const grow = Math.max(8, Math.round(((horizontal ? w : h) * EXTEND_FRACTION) / 8) * 8);
    const old = [els.image, els.mask].map(copyOf);
    setCanvasSize(horizontal ? w + grow : w, horizontal ? h : h + grow);
    const dx = side === 'left' ? grow : 0;
    const dy = side === 'top' ? grow : 0;
    imageCtx.drawImage(old[0], dx, dy);
    maskCtx.drawImage(old[1], dx, dy);
  });
});

// The mask the API wants: same size as the image, alpha 0 where the picture may change
// (painted, or already transparent in the image), alpha 255 where it must stay.
function buildMask() {
  const { width: w, height: h } = els.image;
  const picture = imageCtx.getImageData(0, 0, w, h).data;
  const painted = maskCtx.getImageData(0, 0, w, h).data;
  const out = new ImageData(w, h);
  let paintedAny = false;
  let transparentAny = false;
  for (let i = 3; i < out.data.length; i += 4) {
    const p = painted[i] > 0;
    const t = picture[i] === 0;
    paintedAny ||= p;
    transparentAny ||= t;
    out.data[i - 3] = out.data[i - 2] = out.data[i - 1] = 0;
    out.data[i] = p || t ? 0 : 255;
  }
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  c.getContext('2d').putImageData(out, 0, 0);
  return { canvas: c, paintedAny, transparentAny };
}

const pngOf = (canvas) => new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));

async function submitEdit() {
  if (busy) return;
  const prompt = els.editPrompt.value.trim();
  if (!prompt) {
    showError(new ApiError('Describe the change first.', 0));
    els.editPrompt.focus();
    return;
  }
  padToShape(els.editSize.value);
  const mask = buildMask();
  if (!mask.paintedAny && !mask.transparentAny) {
    showError(new ApiError('Paint over the part to change, or extend the canvas, first.', 0));
    return;
  }
  const model = els.editModel.value;
  const size = els.editSize.value;
  let ext;
  let n;
  try {
    n = countOf(els.editN, model);
    ext = extensions(model);
  } catch (err) { showError(err); return; }
  const stream = canStream(model, n);
  if (stream && ext.seed === undefined) ext.seed = randomSeed();
  const image = await pngOf(els.image);
  // Without paint, the image's own transparent margin is the edit area (outpainting): no mask.
  const maskPng = mask.paintedAny ? await pngOf(mask.canvas) : null;
  const make = (streamed) => {
    const form = new FormData();
    form.append('image', image, 'image.png');
    if (maskPng) form.append('mask', maskPng, 'mask.png');
    form.append('prompt', prompt);
    if (model) form.append('model', model);
    form.append('n', String(n));
    if (size) form.append('size', size);
    form.append('response_format', 'b64_json');
    for (const [k, v] of Object.entries(ext)) form.append(k, String(v));
    if (streamed) {
      form.append('stream', 'true');
      form.append('partial_images', String(PARTIALS));
    }
    return form;
  };
  await run('Editing', () => request('/v1/images/edits', make,
    { kind: 'edit', model, prompt, seed: ext.seed, steps: ext.steps }, stream, 'Editing', size));
}

els.editForm.addEventListener('submit', (e) => { e.preventDefault(); submitEdit(); });
els.editModel.addEventListener('change', () => { onEditModelChange(); showActions(); });
els.editSize.addEventListener('change', showPlan);
$('edit-close').addEventListener('click', () => {
  els.editor.hidden = true;
  editor.item = null;
});

// ---- history: results kept in IndexedDB across reloads ---------------------------------------

// One record per image: { blob, params, at }. Only the newest HISTORY_KEEP are kept and images
// over HISTORY_MAX_BYTES are not kept at all, so the browser's quota is never the limit.
let dbPromise = null;
function db() {
  dbPromise ??= new Promise((resolve) => {
    let open;
    try { open = indexedDB.open(HISTORY_DB, 1); } catch { resolve(null); return; }
    open.onupgradeneeded = () => open.result.createObjectStore('images', { autoIncrement: true });
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => resolve(null);  // private mode and the like: no history, no error
  });
  return dbPromise;
}

function store(mode, work) {
  return db().then((d) => d && new Promise((resolve) => {
    const tx = d.transaction('images', mode);
    const result = work(tx.objectStore('images'));
    tx.oncomplete = () => resolve(result.result ?? result);
    tx.onerror = tx.onabort = () => resolve(null);
  }));
}

async function remember(item) {
  if (!item || item.blob.size > HISTORY_MAX_BYTES || item.params.kind === 'upload') return;
  const key = await store('readwrite', (os) => os.add({ blob: item.blob, params: item.params,
    at: Date.now() }));
  item.key = key;
  const keys = await store('readonly', (os) => os.getAllKeys());
  if (Array.isArray(keys) && keys.length > HISTORY_KEEP) {
    const old = keys.slice(0, keys.length - HISTORY_KEEP);
    await store('readwrite', (os) => os.delete(IDBKeyRange.upperBound(old[old.length - 1])));
  }
}

// Delete: off the page and out of the history; the focus goes to the next card.
async function forget(item) {
  const node = els.gallery.querySelector(`.item[data-id="${item.id}"]`);
  const next = node?.nextElementSibling || node?.previousElementSibling;
  node?.remove();
  items.delete(item.id);
  if (editor.item !== item) URL.revokeObjectURL(item.url);
  els.empty.hidden = els.gallery.children.length > 0;
  (next || els.prompt).focus({ preventScroll: true });
  if (item.key !== null && item.key !== undefined) {
    await store('readwrite', (os) => os.delete(item.key));
  }
}

async function restoreHistory() {
  const records = await store('readonly', (os) => os.getAll());
  const keys = await store('readonly', (os) => os.getAllKeys());
  if (!Array.isArray(records) || !records.length) return;
  const nodes = [];
  for (let i = records.length - 1; i >= 0; i -= 1) {  // newest first
    try {
      nodes.push(await addItem(records[i].blob, records[i].params, keys[i]));
    } catch { /* an unreadable record is skipped */ }
  }
  els.gallery.append(...nodes);
  els.empty.hidden = !els.gallery.children.length;
  showActions();
}

// Download all: each card's own link, newest first (the browser may ask once to allow several).
$('download-all').addEventListener('click', () => {
  els.gallery.querySelectorAll('.item:not(.pending) .download').forEach((a) => a.click());
});

// Lightbox: a click on a result shows it at full size; Escape or Close ends it.
els.gallery.addEventListener('click', (e) => {
  const img = e.target.closest('.item:not(.pending) img');
  if (!img) return;
  const box = $('lightbox-image');
  box.src = img.src;
  box.alt = img.alt;
  $('lightbox').showModal();
});

els.clearHistory.addEventListener('click', async () => {
  await store('readwrite', (os) => os.clear());
  for (const item of items.values()) URL.revokeObjectURL(item.url);
  items.clear();
  els.gallery.querySelectorAll('.item:not(.pending)').forEach((n) => n.remove());
  els.empty.hidden = els.gallery.children.length > 0;
  if (!els.editor.hidden) $('edit-close').click();
  notify('History cleared: the results are gone from this browser.');
});

// ---- start ----------------------------------------------------------------------------------

els.key.value = sessionStorage.getItem(KEY_STORAGE) || '';
els.key.addEventListener('input', () => {
  // sessionStorage only: the key lives as long as this tab and is never written to disk.
  if (els.key.value) sessionStorage.setItem(KEY_STORAGE, els.key.value);
  else sessionStorage.removeItem(KEY_STORAGE);
});
els.key.addEventListener('change', () => { clearError(); loadModels(); });
els.model.addEventListener('change', onModelChange);
els.prompt.addEventListener('input', updateCount);
els.form.addEventListener('change', saveSettings);
els.prompt.addEventListener('input', saveSettings);
restoreFields();
updateCount();
loadModels().then(restoreHistory);
