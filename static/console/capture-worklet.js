// AudioWorklet processor for audio-capture.js: the microphone (at the context's rate, `sampleRate`)
// to mono PCM16 at the target rate, posted in fixed-size chunks with the chunk's level.
//
// Downsampling averages the input samples that fall into each output sample (a box filter, so
// speech energy above the new Nyquist frequency does not fold back as noise); upsampling
// interpolates linearly. Positions are counted in input samples.

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.targetRate = opts.targetRate || 24000;
    this.chunkSamples = Math.max(1, Math.round((this.targetRate * (opts.chunkMs || 50)) / 1000));
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.next = this.step; // input position where the next output sample ends (down) or sits (up)
    this.position = 0; // input samples seen
    this.sum = 0;
    this.count = 0;
    this.previous = 0;
    this.out = new Int16Array(this.chunkSamples);
    this.outLength = 0;
    this.peak = 0;
    this.squares = 0;
    this.port.onmessage = (message) => {
      if (message.data && message.data.type === "flush") this.post("flushed");
    };
  }

  emit(value) {
    const clamped = value < -1 ? -1 : value > 1 ? 1 : value;
    this.out[this.outLength++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    const magnitude = Math.abs(clamped);
    if (magnitude > this.peak) this.peak = magnitude;
    this.squares += clamped * clamped;
    if (this.outLength === this.chunkSamples) this.post("chunk");
  }

  post(type) {
    const pcm = this.out.slice(0, this.outLength);
    const rms = this.outLength ? Math.sqrt(this.squares / this.outLength) : 0;
    this.port.postMessage({ type, pcm, rms, peak: this.peak }, [pcm.buffer]);
    this.outLength = 0;
    this.peak = 0;
    this.squares = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i++) {
      let x = channels[0][i];
      if (channels.length > 1) {
        for (let c = 1; c < channels.length; c++) x += channels[c][i];
        x /= channels.length;
      }
      if (this.step >= 1) {
        this.sum += x;
        this.count += 1;
        this.position += 1;
        if (this.position >= this.next) {
          this.emit(this.sum / this.count);
          this.sum = 0;
          this.count = 0;
          this.next += this.step;
        }
      } else {
        // Output samples sit at input positions next-1 .. between the previous and this sample.
        this.position += 1;
        while (this.next <= this.position) {
          const fraction = this.next - (this.position - 1);
          this.emit(this.previous + (x - this.previous) * fraction);
          this.next += this.step;
        }
        this.previous = x;
      }
    }
    // Keep the counters small over long sessions without changing their difference.
    if (this.position > 1e7) {
      const whole = Math.floor(this.position);
      this.position -= whole;
      this.next -= whole;
    }
    return true;
  }
}

registerProcessor("switchboard-capture", CaptureProcessor);
