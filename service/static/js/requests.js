// Requests in flight, several at once: each gets a card of its own (see card.js) that shows
// its progress and can cancel it; the results take the card's place, come into view and get
// the focus when the focus was where the request left it. Cancel hangs up a stream (the server
// then drops a job still queued, EASEL_ON_DISCONNECT=cancel) or deletes a background job.
import { apiStream } from './api.js';
import { announce, clearError, els, isTyping, notify, reveal, showError } from './dom.js';
import { RequestCard } from './card.js';
import { addResults } from './gallery.js';
import { viaJob, waitFor } from './jobs.js';

// Streaming errors that mean "this id does not stream": the same request goes again without.
const STREAM_PARAMS = ['stream', 'partial_images'];

// spec: { path, make(streamed) -> body, params, stream, label, size, model, waiting,
//         inEditor, onResult(nodes, takeFocus) -> true when it placed them itself (the editor) }
export async function start(spec) {
  clearError();
  const origin = document.activeElement;
  const card = new RequestCard(spec);
  if (!card.inEditor) reveal(card.node);
  try {
    const response = await fetchResult(spec, card);
    // Taken here, before the card goes: the focus was on it, on nothing, or still on the
    // button that sent it. Someone typing elsewhere keeps their place (the announcement says).
    const takeFocus = card.hasFocus() || document.activeElement === document.body
      || (document.activeElement === origin && !isTyping(origin));
    const nodes = await addResults(response, spec.params, card);
    const count = `${nodes.length} image${nodes.length === 1 ? '' : 's'}`;
    if (nodes.length && !(await spec.onResult?.(nodes, takeFocus))) {
      reveal(nodes[0]);
      if (takeFocus) nodes[0].focus({ preventScroll: true });
    }
    announce(`${card.title} is done: ${count}, first in Results.`);
  } catch (err) {
    const hadFocus = card.hasFocus();
    if (err.name === 'AbortError') {
      notify(err.note || `Cancelled ${card.title} after ${card.seconds()} s: the server drops `
        + 'the request.');
    } else {
      showError(err);
    }
    if (hadFocus) (origin?.isConnected && !card.node.contains(origin) ? origin : els.prompt)
      .focus({ preventScroll: true });
  } finally {
    card.remove();  // a no-op once the results have replaced it
  }
}

// A stream's queue place, from the server's comments until the first preview (null: rendering).
function placeOf(card, ahead) {
  if (card.shown || ahead === card.ahead) return;
  card.ahead = ahead;
  if (ahead === null) card.rendering();
  else card.queued(ahead, waitFor(card.model, ahead));
}

// Streamed when asked (previews on the card); a server that refuses streaming for this model
// (a custom catalog id with other rules) gets the same request again without it.
async function fetchResult(spec, card) {
  const options = { signal: card.signal, onNews: () => card.news() };
  if (spec.stream) {
    try {
      return await apiStream(spec.path, spec.make(true),
        { ...options, onPartial: (p) => card.show(p), onQueue: (ahead) => placeOf(card, ahead) });
    } catch (err) {
      if (!(err.status === 400 && STREAM_PARAMS.includes(err.param))) throw err;
    }
    card.streamed = false;
    card.say('waiting for the image');
  }
  return viaJob(spec.path, spec.make(false), card);
}
