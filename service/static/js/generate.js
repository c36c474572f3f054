// Generate and Variations, and what a result card offers for the next request: its settings
// back in the form, its seed on the clipboard.
import { ApiError } from './api.js';
import { els, notify, reveal, showError } from './dom.js';
import { countOf, extensions, onModelChange, saveSettings, updateCount } from './form.js';
import { nameOf } from './gallery.js';
import { start } from './requests.js';
import { canStream, PARTIALS, randomSeed, rulesOf } from './rules.js';
import { chosenSize, setSize } from './size.js';

export const waitingFor = (n, stream) => (stream ? 'waiting for a preview'
  : `waiting for ${n > 1 ? `${n} images` : 'the image'}`);

export function generate() {
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
  let size;
  try {
    n = countOf(els.n, els.model.value);
    ext = extensions();
    size = chosenSize(els.model.value);
  } catch (err) { showError(err); return; }
  saveSettings();
  const body = { model: els.model.value, prompt, n, response_format: 'b64_json', ...ext };
  if (!els.size.disabled) body.size = size;
  if (!els.quality.disabled) body.quality = els.quality.value;
  if (!els.style.disabled) body.style = els.style.value;
  if (els.guidance.value !== '') body.guidance_scale = Number(els.guidance.value);
  if (els.negative.value.trim()) body.negative_prompt = els.negative.value.trim();
  const stream = canStream(body.model, body.n);
  if (stream && body.seed === undefined) body.seed = randomSeed();
  const make = (streamed) => (streamed
    ? { ...body, stream: true, partial_images: PARTIALS } : body);
  return start({ path: '/v1/images/generations', make, stream, label: 'Generating',
    waiting: waitingFor(n, stream), size: body.size, model: body.model,
    params: { kind: 'generation', model: body.model, prompt, seed: body.seed, steps: body.steps,
      quality: body.quality, style: body.style } });
}

// The size of a result: the image's own size when the model allows it, else the form's size.
function sizeFor(item) {
  const own = `${item.width}x${item.height}`;
  return rulesOf(els.model.value).sizes.includes(own) ? own : els.size.value;
}

export function variations(item) {
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
  const name = `variation of ${item.id + 1}`;
  return start({ path: '/v1/images/variations', make: () => form, stream: false,
    label: 'Making variations', waiting: waitingFor(n, false), size, model,
    params: { kind: 'variation', model, name, steps: ext.steps } });
}

// Puts a result's prompt, model, size, quality, style, seed and steps back into the form.
export function reuse(item) {
  const p = item.params;
  if (p.prompt) els.prompt.value = p.prompt;
  if ([...els.model.options].some((o) => o.value === p.model)) {
    els.model.value = p.model;
    onModelChange();
  }
  setSize(`${item.width}x${item.height}`, els.model.value);
  for (const [el, v] of [[els.quality, p.quality], [els.style, p.style]]) {
    if (v && [...el.options].some((o) => o.value === v)) el.value = v;
  }
  els.seed.value = p.seed ?? '';
  els.steps.value = p.steps ?? '';
  if (p.seed !== undefined || p.steps !== undefined) els.form.querySelector('details').open = true;
  updateCount();
  saveSettings();
  reveal(els.prompt, 'center');
  els.prompt.focus({ preventScroll: true });
  notify(`Settings of ${nameOf(item)} are in the form.`);
}

// The seed on the clipboard (the Clipboard API needs a secure context such as localhost;
// elsewhere a selected hidden field and the copy command do it), and said in the notice.
export async function copySeed(item) {
  const seed = String(item.params.seed);
  let copied = false;
  try {
    await navigator.clipboard.writeText(seed);
    copied = true;
  } catch {
    const field = Object.assign(document.createElement('textarea'), { value: seed });
    field.setAttribute('readonly', '');
    field.className = 'visually-hidden';
    document.body.append(field);
    field.select();
    try { copied = document.execCommand('copy'); } catch { /* not allowed here */ }
    field.remove();
  }
  notify(copied ? `Seed ${seed} of ${nameOf(item)} copied.`
    : `The seed of ${nameOf(item)} is ${seed} (this browser did not allow copying it).`);
}

// Ctrl+Enter / Cmd+Enter submits from a textarea (plain Enter adds a line break there).
export function submitOnCtrlEnter(textarea, form) {
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
}

els.form.addEventListener('submit', (e) => { e.preventDefault(); generate(); });
submitOnCtrlEnter(els.prompt, els.form);
document.querySelectorAll('.chip').forEach((chip) => chip.addEventListener('click', () => {
  els.prompt.value = chip.textContent;
  els.prompt.focus();
}));
