// Uploads join the gallery (so Edit and Variations work the same) and open the editor: from
// the button, dropped anywhere on the page, or pasted (Ctrl+V). Edits need PNG, so other
// formats are redrawn to a PNG first.
import { ApiError } from './api.js';
import { clearError, els, showError } from './dom.js';
import { openEditor } from './editor.js';
import { addItem, itemOf } from './gallery.js';

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
    openEditor(itemOf(node));
  } catch (err) {
    const why = String(err.message || err).replace(/\.+$/, '');  // "(... decoded.)." no more
    showError(new ApiError(`That file could not be read as an image (${why}).`, 0));
  }
}

els.upload.addEventListener('change', async () => {
  const file = els.upload.files[0];
  if (file) await uploadFile(file);
  els.upload.value = '';
});

const imageIn = (files) => [...(files || [])].find((f) => f.type.startsWith('image/'));

document.addEventListener('dragover', (e) => {
  if ([...(e.dataTransfer?.types || [])].includes('Files')) e.preventDefault();
});
document.addEventListener('drop', (e) => {
  const file = imageIn(e.dataTransfer?.files);
  if (!file) return;
  e.preventDefault();
  uploadFile(file);
});
document.addEventListener('paste', (e) => {
  const file = imageIn(e.clipboardData?.files);
  if (!file) return;
  e.preventDefault();
  uploadFile(file);
});
