// The app's side of seed 004's example: its playAudio (the seed leaves playback to the app). Preloaded
// with `node --require`; counts what would be played and reports it when the process exits.
let playedBytes = 0;
globalThis.playAudio = (audioBuffer) => {
  playedBytes += audioBuffer.length;
};
process.on('exit', (code) => console.log('Exit:', code, 'audio bytes played:', playedBytes));
