// The Generate form: its choices follow the chosen model's rules, its values survive a reload
// (localStorage, never the key), and what the server would refuse is refused here first.
import { api, ApiError } from './api.js';
import { els, fillSelect, showError } from './dom.js';
import {
  DEFAULT_MODEL, editModels, known, maxSteps, offers, rulesOf, setModels,
} from './rules.js';
import { samplerExtensions, setSamplerModels } from './samplers.js';
import { offerCustom, setSize } from './size.js';

const SETTINGS_STORAGE = 'easel.settings';
const SAVED = ['prompt', 'model', 'size', 'sizeW', 'sizeH', 'quality', 'style', 'n', 'seed',
  'steps', 'guidance', 'negative'];
let settingsApplied = false;
const chosen = { quality: '', n: 0 };  // what the user picked, not what a model forced

function loadSettings() {
  try { return JSON.parse(localStorage.getItem(SETTINGS_STORAGE)) || {}; } catch { return {}; }
}

export function saveSettings() {
  if (!settingsApplied) return;  // the saved ones are not in the form yet
  const out = {};
  for (const k of SAVED) out[k] = els[k].value;
  try { localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(out)); } catch { /* full */ }
}

export function restoreFields() {
  const saved = loadSettings();
  for (const k of ['prompt', 'sizeW', 'sizeH', 'n', 'seed', 'steps', 'guidance', 'negative']) {
    if (typeof saved[k] === 'string') els[k].value = saved[k];
  }
}

export async function loadModels() {
  let models = [];
  try {
    models = (await api('/v1/models'))?.data || [];
  } catch (err) {
    showError(err);  // e.g. a key is required: entering one loads the list again
  }
  setModels(models);
  setSamplerModels(models);  // sampler and LoRA choices (samplers.js)
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
    setSize(els.size.value, els.model.value);
  }
}

export function onModelChange() {
  const rules = rulesOf(els.model.value);
  fillSelect(els.size, rules.sizes, rules.default_size, '(server default)');
  offerCustom(els.model.value);
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

els.quality.addEventListener('change', () => { chosen.quality = els.quality.value; });
els.n.addEventListener('input', () => {
  const n = Number(els.n.value);
  if (Number.isInteger(n) && n >= 1) chosen.n = n;
});

// A whole number from 1 to the model's max_n, or an ApiError naming the field.
export function countOf(input, model) {
  const n = Number(input.value === '' ? '1' : input.value);
  const max = rulesOf(model).max_n;
  if (!Number.isInteger(n) || n < 1 || n > max) {
    input.focus();
    throw new ApiError(`Images (n) must be a whole number from 1 to ${max} for ${model}.`, 0, 'n');
  }
  return n;
}

// The prompt's length against the model's limit (rules.max_prompt).
export function updateCount() {
  const limit = rulesOf(els.model.value).max_prompt;
  const length = els.prompt.value.length;
  els.promptCount.textContent = limit ? `${length} / ${limit}` : `${length} characters`;
  els.promptCount.classList.toggle('over', Boolean(limit) && length > limit);
}

// Whether a card's Edit button shows: wherever some model edits (the editor has its own model).
export const editOffered = () => (known() ? editModels().length > 0
  : offers(els.model.value, 'edit'));

// Edit and Variations only where the chosen model offers them (dall-e-3 offers neither, GPT
// image models no variations): the server would refuse them.
// The editor has its own model (only models that edit): Edit shows wherever one of them exists;
// Variations use the Generate form's model.
export function showActions() {
  const model = els.model.value;
  const edits = editOffered();
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
export function extensions(model = els.model.value) {
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
  return Object.assign(out, samplerExtensions(model));
}
