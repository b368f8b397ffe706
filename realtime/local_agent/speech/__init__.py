"""Offline speech for the local agent, one module per stage:

- ``vad``: voice activity detection (webrtcvad) over a 16 kHz stream;
- ``stt``: speech to text (pocketsphinx with its shipped English model);
- ``tts``: text to speech (eSpeak NG from the espeakng-loader wheel, through ctypes);
- ``listener``: streaming turn detection and recognition of one input stream, living in a worker;
- ``pool``: the bounded thread pool (synthesis: eSpeak runs in C without the GIL);
- ``workers``: the recognition worker processes (pocketsphinx holds the GIL while it decodes).

Nothing CPU-heavy runs on the event loop.
"""
