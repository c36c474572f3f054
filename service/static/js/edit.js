// Apply edit: the editor's canvas (padded to the result's shape) and mask go to
// /v1/images/edits. The edit's previews show over the picture, and when it is done the editor
// continues from its result, unless another picture was opened meanwhile.
import { ApiError } from './api.js';
import { els, notify, showError } from './dom.js';
import { editor, openEditor, padToShape } from './editor.js';
import { countOf, extensions } from './form.js';
import { itemOf } from './gallery.js';
import { submitOnCtrlEnter, waitingFor } from './generate.js';
import { buildMask } from './mask.js';
import { start } from './requests.js';
import { canStream, PARTIALS, randomSeed } from './rules.js';

const pngOf = (canvas) => new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));

async function submitEdit() {
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
  const session = editor.session;
  // The editor continues from the edit's result, where the user is looking.
  const onResult = async (nodes, takeFocus) => {
    if (els.editor.hidden || editor.session !== session) return false;
    await openEditor(itemOf(nodes[0]), { keepPrompt: true, focus: takeFocus });
    notify(`The edit is done: it is in the editor now, and first in Results (${nodes.length}`
      + ` image${nodes.length > 1 ? 's' : ''}).`);
    return true;
  };
  await start({ path: '/v1/images/edits', make, stream, label: 'Editing', size, model,
    waiting: waitingFor(n, stream), inEditor: true, onResult,
    params: { kind: 'edit', model, prompt, seed: ext.seed, steps: ext.steps } });
}

els.editForm.addEventListener('submit', (e) => { e.preventDefault(); submitEdit(); });
submitOnCtrlEnter(els.editPrompt, els.editForm);
