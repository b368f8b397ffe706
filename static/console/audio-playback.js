// Gapless playback of PCM16 through an AudioWorklet. Knows nothing of the protocol or of capture.
//
// enqueue(pcm, tag) queues audio; stop() drops everything not yet played at once and resolves with
// what was played, per tag (so a caller can say exactly how much of one item the listener heard).
// Events: "progress" (detail: stats, with `rms` the output level since the last report) a few times a
// second while playing, "drained" when the queue runs dry.

export class AudioPlayback extends EventTarget {
  constructor({ workletUrl, sampleRate = 24000 }) {
    super();
    this.workletUrl = workletUrl;
    this.sampleRate = sampleRate;
    this.context = null;
    this.node = null;
    this.stats = { played: 0, nonSilent: 0, queued: 0, playedByTag: {} };
    this._stopId = 0;
    this._stops = new Map();
  }

  async start() {
    if (this.context) return;
    // A context at the stream's rate: the browser converts to the device's rate on output.
    const context = new AudioContext({ sampleRate: this.sampleRate, latencyHint: "interactive" });
    await context.audioWorklet.addModule(this.workletUrl);
    const node = new AudioWorkletNode(context, "switchboard-playback", {
      numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
    });
    node.port.onmessage = (message) => this._onMessage(message.data);
    node.connect(context.destination);
    if (context.state === "suspended") await context.resume();
    this.context = context;
    this.node = node;
  }

  _onMessage(data) {
    const { type, id, ...stats } = data;
    this.stats = stats;
    if (type === "stopped" && this._stops.has(id)) {
      this._stops.get(id)(stats);
      this._stops.delete(id);
    }
    this.dispatchEvent(new CustomEvent(type === "stopped" ? "progress" : type, { detail: stats }));
  }

  /** Seconds of audio that `samples` played samples make. */
  seconds(samples) {
    return samples / this.sampleRate;
  }

  get playing() {
    return this.stats.queued > 0;
  }

  enqueue(pcm, tag = "") {
    if (!this.node) return;
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
    this.stats.queued += samples.length; // optimistic until the worklet reports
    this.node.port.postMessage({ type: "push", samples, tag }, [samples.buffer]);
  }

  /** Stop at once. Resolves with {played, nonSilent, queued: 0, playedByTag}. */
  stop() {
    if (!this.node) return Promise.resolve({ ...this.stats, queued: 0 });
    const id = ++this._stopId;
    return new Promise((resolve) => {
      this._stops.set(id, resolve);
      this.node.port.postMessage({ type: "stop", id });
    });
  }

  async close() {
    const context = this.context;
    this.context = this.node = null;
    this._stops.forEach((resolve) => resolve({ ...this.stats, queued: 0 }));
    this._stops.clear();
    if (context) await context.close();
  }
}
