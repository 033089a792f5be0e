// Microphone capture for voice queries: PCM from the Web Audio API, encoded as a 16-bit mono
// WAV (what the server's speech path reads; it resamples to 16 kHz itself).

export function encodeWav(samples, sampleRate) {
  const out = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(out);
  const text = (at, s) => { for (let i = 0; i < s.length; i++) v.setUint8(at + i, s.charCodeAt(i)); };
  text(0, 'RIFF'); v.setUint32(4, 36 + samples.length * 2, true); text(8, 'WAVE');
  text(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  text(36, 'data'); v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    v.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Uint8Array(out);
}

// Starts recording; `stop()` resolves to the WAV bytes. Recording ends by itself after
// `maxSeconds`. (ScriptProcessorNode is deprecated but needs no worklet file and is
// supported everywhere that has getUserMedia.)
export async function record(maxSeconds = 10) {
  const media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false } });
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(media);
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  let length = 0;
  const max = maxSeconds * ctx.sampleRate;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  node.onaudioprocess = (e) => {
    if (length >= max) { finish(); return; }
    const data = e.inputBuffer.getChannelData(0);
    chunks.push(new Float32Array(data));
    length += data.length;
  };
  source.connect(node);
  node.connect(ctx.destination);
  const stop = async () => {
    node.disconnect(); source.disconnect();
    media.getTracks().forEach((t) => t.stop());
    const all = new Float32Array(length);
    let at = 0;
    for (const c of chunks) { all.set(c, at); at += c.length; }
    const rate = ctx.sampleRate;
    await ctx.close();
    return encodeWav(all, rate);
  };
  return { stop, finished, sampleRate: ctx.sampleRate };
}
