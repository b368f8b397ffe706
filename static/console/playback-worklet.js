// AudioWorklet processor for audio-playback.js: plays queued Float32 chunks back to back (no gaps
// between chunks: the next one starts in the same render quantum), stops at once on request, and
// reports how many samples of each tag were actually played.

const REPORT_EVERY_QUANTA = 8; // about 40 ms at 24 kHz
const SILENCE = 1 / 1024; // below about -60 dBFS counts as silent

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // {data: Float32Array, offset, tag}
    this.queued = 0;
    this.played = 0;
    this.nonSilent = 0;
    this.playedByTag = {};
    this.quanta = 0;
    this.wasPlaying = false;
    this.levelSum = 0; // sum of squares since the last report, for the output level meter
    this.levelCount = 0;
    this.port.onmessage = (message) => this.onMessage(message.data);
  }

  onMessage(data) {
    if (data.type === "push") {
      this.queue.push({ data: data.samples, offset: 0, tag: data.tag || "" });
      this.queued += data.samples.length;
    } else if (data.type === "stop") {
      // Everything not yet played is dropped now; the report says what was heard.
      this.queue = [];
      this.queued = 0;
      this.report("stopped", data.id);
      this.wasPlaying = false;
    }
  }

  report(type, id) {
    const rms = this.levelCount ? Math.sqrt(this.levelSum / this.levelCount) : 0;
    this.levelSum = 0;
    this.levelCount = 0;
    this.port.postMessage({
      type, id, played: this.played, nonSilent: this.nonSilent, queued: this.queued,
      playedByTag: { ...this.playedByTag }, rms,
    });
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.queue.length) {
      const head = this.queue[0];
      const count = Math.min(out.length - written, head.data.length - head.offset);
      for (let i = 0; i < count; i++) {
        const sample = head.data[head.offset + i];
        out[written + i] = sample;
        this.levelSum += sample * sample;
        if (sample > SILENCE || sample < -SILENCE) this.nonSilent += 1;
      }
      head.offset += count;
      written += count;
      this.levelCount += count;
      this.played += count;
      this.queued -= count;
      this.playedByTag[head.tag] = (this.playedByTag[head.tag] || 0) + count;
      if (head.offset >= head.data.length) this.queue.shift();
    }
    for (let i = written; i < out.length; i++) out[i] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    const playing = this.queue.length > 0;
    if (written && ++this.quanta % REPORT_EVERY_QUANTA === 0) this.report("progress");
    if (this.wasPlaying && !playing) this.report("drained");
    this.wasPlaying = playing;
    return true;
  }
}

registerProcessor("switchboard-playback", PlaybackProcessor);
