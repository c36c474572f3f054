// Background jobs (`Prefer: respond-async`, service/job_routes.py): a request that is not
// streamed is answered 202 with a job, which the page polls for its place in the queue until
// it holds the answer. A server without background jobs answers at once, as before. Cancel
// deletes a job no worker has started; one already rendering is finished by the server and
// dropped by the page.
import { answer, api, ApiError, call } from './api.js';

const POLL_MS = Number(window.EASEL_JOB_POLL_MS) || 1000;
const rendered = new Map();  // model -> seconds its last job took to render (for estimates)

// A guess at the wait of a job with `ahead` jobs before it: seconds, or NaN when unknown.
export function waitFor(model, ahead) {
  const each = rendered.get(model);
  return Number.isInteger(ahead) && each ? (ahead + 1) * each : NaN;
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  if (signal.aborted) { reject(signal.reason); return; }
  const timer = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); },
    { once: true });
});

function aborted(note) {
  const err = new DOMException('The user cancelled the request.', 'AbortError');
  err.note = note;
  return err;
}

// The answer of `path` for `body`, shown on `card` while it waits (see card.js).
export async function viaJob(path, body, card) {
  const { signal } = card;
  const first = await answer(path, body, { signal, onNews: () => card.news(),
    headers: { Prefer: 'respond-async' } });
  if (first.status !== 202 || first.data?.object !== 'image.job') return first.data;
  const watch = new JobWatch(first.data, card);
  try {
    for (;;) {
      const done = watch.update();
      if (done) return done;
      await sleep(POLL_MS, signal);
      watch.job = await poll(watch.job, signal);
    }
  } catch (err) {
    if (err.name !== 'AbortError' || !signal.aborted) throw err;
    throw aborted(await watch.cancel());
  }
}

// The job as it is now; while the server cannot say (unreachable, 503 while Redis is away) the
// job runs on, so the page keeps the last answer and asks again (the card's hint shows the gap).
async function poll(job, signal) {
  try {
    return await api(`/v1/images/jobs/${encodeURIComponent(job.id)}`, null, { signal });
  } catch (err) {
    if (err.name === 'AbortError' || ![0, 502, 503, 504].includes(err.status)) throw err;
    return job;
  }
}

// One job as the page last saw it; the card hears only changes (so a job stuck in one state
// long enough gets the card's "no news" hint and its worker check).
class JobWatch {
  constructor(job, card) {
    this.job = job;
    this.card = card;
    this.seen = '';
    this.renderingSince = null;
  }

  update() {
    const { job, card } = this;
    if (typeof job?.status !== 'string') {
      throw new ApiError('The server sent a job status the page could not read.', 0);
    }
    if (job.status === 'completed') {
      if (this.renderingSince) {
        rendered.set(card.model, (performance.now() - this.renderingSince) / 1000);
      }
      return job.result;
    }
    if (job.status === 'failed') {
      throw new ApiError(job.error?.message || 'The image failed while it was being made.',
        job.status_code || 0, job.error?.param);
    }
    if (job.status === 'cancelled') throw aborted('');
    const seen = `${job.status}/${job.queue_position}`;
    if (seen === this.seen) return null;
    const was = this.seen.split('/')[0];
    this.seen = seen;
    card.news();
    if (job.status === 'in_progress') {
      this.renderingSince = performance.now();
      card.rendering();
    } else {
      this.queued(was === 'in_progress');  // back in the queue: its worker was lost
    }
    return null;
  }

  // Its place in the queue, and a guess at the wait from the last render of the same model.
  queued(again) {
    const ahead = this.job.queue_position;
    this.renderingSince = null;
    this.card.queued(Number.isInteger(ahead) ? ahead : null, waitFor(this.card.model, ahead),
      again);
  }

  // Returns what the notice should say when the job could not simply be dropped.
  async cancel() {
    try {
      await call('DELETE', `/v1/images/jobs/${encodeURIComponent(this.job.id)}`);
      return '';
    } catch (err) {
      if (err.status === 409) {
        return `Stopped waiting for ${this.card.title}: it was already rendering, so the `
          + 'server finishes it, but the page drops it.';
      }
      return '';  // gone already, or the server unreachable: nothing more to do here
    }
  }
}
