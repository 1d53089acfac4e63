// Talk page microphone capture (an AudioWorklet): the first input channel, resampled from the
// context's rate to 24 kHz, posted to the page as PCM16 chunks of 40 ms with their level.
// Resampling averages the input over each output sample's span (a box filter), which keeps
// 48 kHz or 44.1 kHz speech from aliasing without a filter design; below 24 kHz it holds.
"use strict";

const OUT_RATE = 24000;
const CHUNK = OUT_RATE / 25;  // 40 ms per message: what is left unsent at a release

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / OUT_RATE;  // input samples per output sample
    this.sum = 0;  // weighted input gathered for the output sample being made
    this.filled = 0;  // how much of its span is gathered, in input samples
    this.out = new Int16Array(CHUNK);
    this.length = 0;
    this.energy = 0;
  }

  emit(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.out[this.length++] = clipped < 0 ? clipped * 32768 : clipped * 32767;
    this.energy += clipped * clipped;
    if (this.length === CHUNK) {
      const level = Math.sqrt(this.energy / CHUNK);
      this.port.postMessage({ pcm: this.out.buffer, level }, [this.out.buffer]);
      this.out = new Int16Array(CHUNK);
      this.length = 0;
      this.energy = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;  // no microphone connected (yet)
    for (let i = 0; i < channel.length; i++) {
      let weight = 1;
      while (this.filled + weight >= this.ratio) {
        const take = this.ratio - this.filled;
        this.emit((this.sum + channel[i] * take) / this.ratio);
        this.sum = 0;
        this.filled = 0;
        weight -= take;
      }
      this.sum += channel[i] * weight;
      this.filled += weight;
    }
    return true;
  }
}

registerProcessor("vo-capture", Capture);
