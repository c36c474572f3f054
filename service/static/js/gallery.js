// The gallery: one card per image (newest first) with its prompt, parameters and actions;
// restored from the browser's history on load. Which action a button runs is main.js's business.
import { $, els, notify, short } from './dom.js';
import { editOffered } from './form.js';
import { clearAll, forget, recall, remember } from './history.js';
import { offers } from './rules.js';

let nextId = 0;
export const items = new Map();  // id -> { id, blob, url, width, height, params, key }

export const itemOf = (node) => items.get(Number(node?.closest('.item')?.dataset.id));
export const nameOf = (item) => `${item.params.kind} ${item.id + 1}`;

export function b64ToBlob(b64, format = 'png') {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: `image/${format}` });
}

export async function addItem(blob, params, saved = null) {
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
  listParams(node.querySelector('.params'), { kind: params.kind, model: params.model,
    size: `${item.width}x${item.height}`, seed: params.seed, steps: params.steps,
    quality: params.quality, style: params.style });
  const a = node.querySelector('.download');
  a.href = item.url;
  a.download = `easel-${params.kind}-${params.seed ?? item.id}.png`;
  const name = nameOf(item);  // short: the alt text carries the prompt
  const label = (cls, words) => node.querySelector(cls).setAttribute('aria-label', words);
  a.setAttribute('aria-label', `Download ${name}`);
  label('.edit', `Edit ${name}`);
  label('.variations', `Variations of ${name}`);
  label('.reuse', `Reuse the settings of ${name}`);
  label('.copy-seed', `Copy the seed of ${name}`);
  label('.delete', `Delete ${name}`);
  node.querySelector('.reuse').hidden = params.kind === 'upload';
  node.querySelector('.copy-seed').hidden = params.seed === undefined || params.seed === null;
  node.tabIndex = -1;  // focusable, so a new result can take the focus
  node.setAttribute('aria-label', `${name}: ${short(text) || 'image'}`);
  node.querySelector('.edit').hidden = !editOffered();
  node.querySelector('.variations').hidden = !offers(els.model.value, 'variation');
  return node;
}

function listParams(dl, shown) {
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
}

// Newest first, but a batch keeps its own order (image i used seed + i). The results take the
// place of their request's card (and record how many previews that card showed).
export async function addResults(response, params, card = null) {
  const nodes = [];
  for (const d of response.data) {
    const blob = d.b64_json ? b64ToBlob(d.b64_json, d.format || response.output_format)
      : await (await fetch(d.url)).blob();
    nodes.push(await addItem(blob, { ...params, seed: d.seed ?? params.seed }));
  }
  if (card?.node.isConnected && nodes.length) {
    if (card.streamed) for (const node of nodes) node.dataset.partials = String(card.shown);
    card.node.replaceWith(...nodes);
  } else {
    els.gallery.prepend(...nodes);
  }
  els.empty.hidden = els.gallery.children.length > 0;
  for (const node of [...nodes].reverse()) remember(itemOf(node));
  return nodes;
}

// Delete: off the page and out of the history; the focus goes to the next card.
export async function deleteItem(item, keepUrl) {
  const node = els.gallery.querySelector(`.item[data-id="${item.id}"]`);
  const next = node?.nextElementSibling || node?.previousElementSibling;
  node?.remove();
  items.delete(item.id);
  if (!keepUrl) URL.revokeObjectURL(item.url);
  els.empty.hidden = els.gallery.children.length > 0;
  (next || els.prompt).focus({ preventScroll: true });
  await forget(item.key);
}

export async function restoreHistory() {
  const records = await recall();
  const nodes = [];
  for (const record of records.reverse()) {  // newest first
    try {
      nodes.push(await addItem(record.blob, record.params, record.key));
    } catch { /* an unreadable record is skipped */ }
  }
  els.gallery.append(...nodes);
  els.empty.hidden = els.gallery.children.length > 0;
}

els.gallery.addEventListener('click', (e) => {
  const more = e.target.closest('.more');
  if (!more) return;
  const open = more.getAttribute('aria-expanded') !== 'true';
  more.setAttribute('aria-expanded', String(open));
  more.textContent = open ? 'Show less' : 'Show full prompt';
  more.closest('figcaption').querySelector('.prompt').classList.toggle('clamped', !open);
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

// Download all: each card's own link, newest first (the browser may ask once to allow several).
$('download-all').addEventListener('click', () => {
  els.gallery.querySelectorAll('.item:not(.pending) .download').forEach((a) => a.click());
});

els.clearHistory.addEventListener('click', async () => {
  await clearAll();
  for (const item of items.values()) URL.revokeObjectURL(item.url);
  items.clear();
  els.gallery.querySelectorAll('.item:not(.pending)').forEach((n) => n.remove());
  els.empty.hidden = els.gallery.children.length > 0;
  if (!els.editor.hidden) $('edit-close').click();
  notify('History cleared: the results are gone from this browser.');
});
