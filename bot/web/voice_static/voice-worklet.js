// AudioWorklet: microphone samples (Float32 at the context's 16 kHz) → 20 ms chunks of 16-bit PCM for the socket.
class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = new Int16Array(320);  // 20 ms at 16 kHz
    this.filled = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.chunk[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.chunk.length) {
        this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]);
        this.chunk = new Int16Array(320);
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("mic-capture", MicCapture);
