// Sampler and LoRA adapter choices, from the chosen model's `easel.schedulers` and
// `easel.adapters` in /v1/models (docs/api.md): the page offers exactly what the server takes.
// The controls are added to the Advanced section by this module; form.js hands it the model
// list (setSamplerModels) and merges samplerExtensions(model) into each request.
import { els } from './dom.js';

let easelById = new Map();  // model id -> the entry's `easel` object

const box = document.createElement('div');
box.className = 'grid2';
box.innerHTML = `
  <div><label for="scheduler">Sampler</label>
    <select id="scheduler" data-testid="scheduler"></select></div>
  <div><label for="lora">LoRA adapter</label>
    <select id="lora" data-testid="lora"></select></div>
  <div><label for="lora-scale">Adapter scale</label>
    <input id="lora-scale" type="number" min="-2" max="2" step="0.1"
           placeholder="catalog's" inputmode="decimal"></div>`;
document.querySelector('details.advanced small')?.before(box);
const scheduler = box.querySelector('#scheduler');
const lora = box.querySelector('#lora');
const scale = box.querySelector('#lora-scale');

function fill(select, options, emptyLabel) {
  const kept = select.value;
  select.replaceChildren(new Option(emptyLabel, ''),
    ...options.map(([value, label]) => new Option(label, value)));
  if (options.some(([value]) => value === kept)) select.value = kept;
}

function usable(easel) {
  return (easel.adapters || []).filter((a) => !a.error);
}

function refresh() {
  const easel = easelById.get(els.model.value) || {};
  fill(scheduler, (easel.schedulers || []).map((s) => [s, s]), "(the model's own)");
  // An adapter the workers failed to load carries `error`: offering it would only fail.
  fill(lora, usable(easel).map((a) => [a.name,
    a.description ? `${a.name}: ${a.description}` : a.name]), '(none)');
  scheduler.disabled = scheduler.options.length < 2;
  lora.disabled = lora.options.length < 2;
  scale.disabled = lora.disabled;
}

export function setSamplerModels(models) {
  easelById = new Map(models.map((m) => [m.id, m.easel || {}]));
  refresh();
}

els.model.addEventListener('change', refresh);

// The chosen sampler and adapter, where `model` takes them (the editor may use another model).
export function samplerExtensions(model) {
  const easel = easelById.get(model) || {};
  const out = {};
  if (scheduler.value && (easel.schedulers || []).includes(scheduler.value)) {
    out.scheduler = scheduler.value;
  }
  if (lora.value && usable(easel).some((a) => a.name === lora.value)) {
    const chosen = { name: lora.value };
    if (scale.value !== '') chosen.scale = Number(scale.value);
    const loras = [chosen];
    // Multipart requests send String(value): the server reads this field as JSON text there.
    loras.toString = () => JSON.stringify(loras);
    out.loras = loras;
  }
  return out;
}
