// The editor: two stacked canvases of the image's pixel size. image-canvas holds the picture
// (with transparent margins after "Extend"), mask-canvas holds brush strokes (opaque = to
// change), shown tinted on top through CSS opacity. The editor has its own model (only models
// that edit) and shows, before anything is sent, the canvas that goes out and the size that
// comes back.
import { $, els, fillSelect, reveal } from './dom.js';
import { showActions } from './form.js';
import { dims, editModels, rulesOf } from './rules.js';

// `session` counts the pictures opened, so a finished edit knows whether the editor still
// shows the picture it was made from.
export const editor = { item: null, session: 0 };
export const imageCtx = els.image.getContext('2d', { willReadFrequently: true });
export const maskCtx = els.mask.getContext('2d', { willReadFrequently: true });

// `focus`: the edit prompt takes the focus (not when a finished edit opens while the user is
// typing elsewhere).
export async function openEditor(item, { keepPrompt = false, focus = true } = {}) {
  editor.item = item;
  editor.session += 1;
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
  reveal(els.editor, 'start');
  if (focus) els.editPrompt.focus({ preventScroll: true });
}

export function closeEditor() {
  els.editor.hidden = true;
  editor.item = null;
  editor.session += 1;
}

export function onEditModelChange() {
  const rules = rulesOf(els.editModel.value);
  els.editN.max = String(rules.max_n);
  if (Number(els.editN.value) > rules.max_n) els.editN.value = String(rules.max_n);
  if (!els.editor.hidden) {
    fillSelect(els.editSize, rules.sizes, suggestSize(els.image.width, els.image.height), '',
      false);
  }
  showPlan();
}

export function setCanvasSize(w, h) {
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
export function showPlan() {
  const size = els.editSize.value;
  const { width: w, height: h } = els.image;
  $('edit-plan-canvas').hidden = true;
  if (!size || !w || !h) { els.editPlan.textContent = ''; return; }
  if (size === 'auto') {
    els.editPlan.textContent = `Sends ${w}×${h}; the server picks the result size.`;
    return;
  }
  const [nw, nh] = paddedSize(size, w, h);
  requestAnimationFrame(drawPlan);  // once the caller has drawn the picture
  const padded = nw !== w || nh !== h
    ? ` padded (centred, transparent) from ${w}×${h} to ${nw}×${nh} to match its shape;` : '';
  els.editPlan.textContent = `Sends the canvas${padded || ` as ${w}×${h};`} the result is `
    + `${size.replace('x', '×')}.`;
}

// The canvas as it will go out: the picture centred on its padded size, transparent around it
// (the checkerboard shows through), so an outpainting's final shape is seen before submit.
function drawPlan() {
  const plan = $('edit-plan-canvas');
  const size = els.editSize.value;
  if (els.editor.hidden || !size || size === 'auto' || !els.image.width) return;
  const [nw, nh] = paddedSize(size, els.image.width, els.image.height);
  plan.width = nw;
  plan.height = nh;
  const ctx = plan.getContext('2d');
  ctx.clearRect(0, 0, nw, nh);
  ctx.drawImage(els.image, Math.floor((nw - els.image.width) / 2),
    Math.floor((nh - els.image.height) / 2));
  plan.hidden = false;
}

function paddedSize(size, w, h) {
  const [sw, sh] = dims(size);
  if (Math.abs(w / h - sw / sh) < 0.01) return [w, h];
  return [Math.max(w, Math.round((h * sw) / sh)), Math.max(h, Math.round((w * sh) / sw))];
}

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
export function padToShape(size) {
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

export function copyOf(canvas) {
  const copy = document.createElement('canvas');
  copy.width = canvas.width;
  copy.height = canvas.height;
  copy.getContext('2d').drawImage(canvas, 0, 0);
  return copy;
}

els.editModel.addEventListener('change', () => { onEditModelChange(); showActions(); });
els.editSize.addEventListener('change', showPlan);
$('edit-close').addEventListener('click', closeEditor);
$('reset-canvas').addEventListener('click', () => { if (editor.item) openEditor(editor.item); });
