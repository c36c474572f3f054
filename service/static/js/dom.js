// The page's elements and the small helpers every part shares: messages, announcements,
// scrolling into view, filling a <select>.
import { ApiError } from './api.js';

export const $ = (id) => document.getElementById(id);
export const els = {
  key: $('api-key'), form: $('generate-form'), prompt: $('prompt'), model: $('model'),
  size: $('size'), sizeW: $('size-w'), sizeH: $('size-h'), customSize: $('custom-size'),
  quality: $('quality'), style: $('style'), n: $('n'), seed: $('seed'),
  steps: $('steps'), guidance: $('guidance'), negative: $('negative'), upload: $('upload'),
  error: $('error'), gallery: $('gallery'), empty: $('empty'), editor: $('editor'),
  stage: $('stage'), image: $('image-canvas'), mask: $('mask-canvas'), info: $('canvas-info'),
  brush: $('brush-size'),
  editForm: $('edit-form'), editPrompt: $('edit-prompt'), editSize: $('edit-size'),
  editN: $('edit-n'), editSubmit: $('edit-submit'), editNote: $('edit-note'),
  editModel: $('edit-model'), editPlan: $('edit-plan'), editPreview: $('edit-preview'),
  notice: $('notice'), announcer: $('announcer'), promptCount: $('prompt-count'),
  clearHistory: $('clear-history'),
};

const SHORT = 60;  // characters of a prompt in alt texts and labels
// A prompt cut short for alt texts and labels (the card shows it all, clamped).
export const short = (text) => (text.length > SHORT
  ? `${text.slice(0, SHORT - 1).trimEnd()}…` : text);

export const still = () => matchMedia('(prefers-reduced-motion: reduce)').matches;

export function reveal(node, block = 'nearest') {
  node.scrollIntoView({ behavior: still() ? 'auto' : 'smooth', block });
}

export function notify(text) {
  els.notice.textContent = text;
  els.notice.hidden = !text;
}

// Said to screen readers only (a visually hidden live region): a request that finished, ...
// Cleared first so the same words twice are announced twice.
export function announce(text) {
  els.announcer.textContent = '';
  setTimeout(() => { els.announcer.textContent = text; }, 50);
}

export function showError(err) {
  let text = err instanceof ApiError ? err.message : `Something went wrong in the page: ${err}`;
  if (err.status === 401) text += ' Check the API key field at the top of the page.';
  els.error.textContent = text;
  els.error.hidden = false;
  els.error.scrollIntoView({ block: 'nearest' });
}

export function clearError() { els.error.hidden = true; els.error.textContent = ''; }

// Keeps the current choice when the new list has it, unless `keep` is false.
export function fillSelect(select, values, preferred, emptyLabel, keep = true) {
  const previous = keep ? select.value : undefined;
  select.replaceChildren(...values.map((v) => new Option(v, v)));
  if (!values.length) select.append(new Option(emptyLabel, ''));
  select.disabled = !values.length;  // e.g. dall-e-2 has no style: don't send one
  const pick = [previous, preferred].find((v) => values.includes(v));
  if (pick) select.value = pick;
}

// Where the user is typing or choosing: a result arriving must not take the focus from there.
export function isTyping(node = document.activeElement) {
  if (!node || node === document.body) return false;
  if (node.isContentEditable || node.matches('textarea, select')) return true;
  return node.matches('input') && !['button', 'submit', 'checkbox', 'radio', 'range', 'file',
    'reset'].includes(node.type);
}
