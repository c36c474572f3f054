// Talking to this server's OpenAI Images API: one place that adds the key, reads the server's
// error envelope into an ApiError, and reads `stream: true` answers (server-sent events).
// Each call takes its own AbortSignal, so several requests can be in flight and cancelled apart.

const keyInput = document.getElementById('api-key');

export class ApiError extends Error {
  constructor(message, status, param) { super(message); this.status = status; this.param = param; }
}

// `signal`: aborting it hangs up (the server then drops a job still queued); `onNews`: called
// whenever the server says something (an answer, an event), for the page's "quiet" hints.
export async function api(path, body = null, options = {}) {
  return (await answer(path, body, options)).data;
}

// The same, with the answer's status and headers (a background job answers 202).
export async function answer(path, body = null, { signal, onNews, headers } = {}) {
  const res = await send(path, body, signal, headers);
  onNews?.();
  const data = await jsonOf(res);
  if (!res.ok) throw errorOf(res, data);
  return { data, status: res.status, headers: res.headers };
}

// The JSON of an answer, or null for one that is not JSON (described from its status instead).
async function jsonOf(res) {
  try { return await res.json(); } catch { return null; }
}

export function errorOf(res, data) {
  const message = data?.error?.message || `The server answered ${res.status} ${res.statusText}.`;
  return new ApiError(message, res.status, data?.error?.param);
}

function withKey(headers = {}) {
  const key = keyInput.value.trim();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
}

async function send(path, body, signal, extra = {}, method = body ? 'POST' : 'GET') {
  const headers = withKey(extra);
  const init = { method, headers, signal };
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

// Any other method (DELETE a background job, ...): same key and error handling.
export async function call(method, path, { signal } = {}) {
  const res = await send(path, null, signal, {}, method);
  const data = await jsonOf(res);
  if (!res.ok) throw errorOf(res, data);
  return data;
}

// A `stream: true` request: server-sent events over a POST, so fetch + ReadableStream rather
// than EventSource (GET only). Calls onPartial with each `*.partial_image` payload and returns
// the `*.completed` one in the shape of an ordinary response ({ data: [...] }). Errors before
// the stream starts are ordinary JSON answers; one after it is an `error` event. Until the first
// preview the server's comments tell the job's queue place: onQueue(ahead), null once rendering.
export async function apiStream(path, body, { signal, onPartial, onNews, onQueue } = {}) {
  const res = await send(path, body, signal);
  if (!res.ok || !(res.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
    onNews?.();
    const data = await jsonOf(res);
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
    onNews?.();
    if (type.endsWith('.partial_image')) onPartial?.(data);
    else if (type.endsWith('.completed')) completed = data;
  };
  const comment = (text) => {
    const place = /^queue_position=(\d+)$/.exec(text);
    if (place) onQueue?.(Number(place[1]));
    else if (text === 'rendering') onQueue?.(null);
  };
  await readEvents(res, handle, comment);
  if (!completed) {
    throw new ApiError('The server closed the stream before the image was finished. '
      + 'Try again.', 0);
  }
  return { data: [{ b64_json: completed.b64_json, format: completed.output_format }] };
}

async function readEvents(res, handle, comment) {
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
        dispatch(block, handle, comment);
      }
      if (chunk.done) break;
    }
    if (buffer.trim()) dispatch(buffer, handle, comment);
  } finally {
    reader.cancel().catch(() => {});  // stop reading after an error event (or a page error)
  }
}

// One server-sent event block: `event:` names it, `data:` lines (joined by newlines) carry it.
function dispatch(block, handle, comment) {
  let event = 'message';
  const data = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line.startsWith(':')) comment?.(line.slice(1).trim());  // a keep-alive or queue place
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length) handle(event, data.join('\n'));
}
