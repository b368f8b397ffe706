// Microphone capture: getUserMedia -> AudioWorklet -> mono PCM16 at `targetRate`, in chunks of
// `chunkMs`. Knows nothing of the protocol or of playback.
//
// Events: "chunk" (detail: {pcm: Int16Array, rms, peak}) while not muted, "level" (detail: {rms, peak})
// for every chunk (zero while muted).

export class AudioCapture extends EventTarget {
  constructor({ workletUrl, targetRate = 24000, chunkMs = 50, processing = {} }) {
    super();
    if (chunkMs < 40 || chunkMs > 100) throw new RangeError("chunkMs must be from 40 to 100");
    this.workletUrl = workletUrl;
    this.targetRate = targetRate;
    this.chunkMs = chunkMs;
    // The browser's own processing: echo cancellation keeps the agent's voice out of the microphone
    // (so it cannot barge in on itself); noise suppression and automatic gain are optional because
    // they can distort speech for some recognisers.
    this.processing = { echoCancellation: true, noiseSuppression: true, autoGainControl: true, ...processing };
    this.context = null;
    this.stream = null;
    this.node = null;
    this.muted = false;
    this._flushWaiters = [];
  }

  get running() {
    return this.context !== null;
  }

  async start() {
    if (this.context) return;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, ...this.processing },
    });
    // The device's own rate: the worklet resamples, so any microphone works in any browser.
    const context = new AudioContext({ latencyHint: "interactive" });
    try {
      await context.audioWorklet.addModule(this.workletUrl);
      const source = context.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(context, "switchboard-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { targetRate: this.targetRate, chunkMs: this.chunkMs },
      });
      node.port.onmessage = (message) => this._onMessage(message.data);
      source.connect(node);
      // Connected to the output (it writes silence) so the browser keeps pulling the graph.
      node.connect(context.destination);
      if (context.state === "suspended") await context.resume();
      this.context = context;
      this.stream = stream;
      this.node = node;
      this.setMuted(this.muted);
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      await context.close();
      throw error;
    }
  }

  _onMessage(data) {
    const level = this.muted ? { rms: 0, peak: 0 } : { rms: data.rms, peak: data.peak };
    this.dispatchEvent(new CustomEvent("level", { detail: level }));
    if (!this.muted && data.pcm.length) {
      this.dispatchEvent(new CustomEvent("chunk", { detail: { pcm: data.pcm, ...level } }));
    }
    if (data.type === "flushed") {
      const waiters = this._flushWaiters;
      this._flushWaiters = [];
      waiters.forEach((resolve) => resolve());
    }
  }

  /** Emit the partial chunk now (e.g. at the end of a push-to-talk turn); resolves after its "chunk". */
  flush() {
    if (!this.node) return Promise.resolve();
    return new Promise((resolve) => {
      this._flushWaiters.push(resolve);
      this.node.port.postMessage({ type: "flush" });
    });
  }

  /** Muted: the track is disabled (the device sends silence) and no chunks are emitted. */
  setMuted(muted) {
    this.muted = Boolean(muted);
    if (this.stream) this.stream.getAudioTracks().forEach((track) => { track.enabled = !this.muted; });
  }

  async stop() {
    const { context, stream } = this;
    this.context = this.stream = this.node = null;
    this._flushWaiters.splice(0).forEach((resolve) => resolve());
    if (stream) stream.getTracks().forEach((track) => track.stop());
    if (context) await context.close();
  }
}
