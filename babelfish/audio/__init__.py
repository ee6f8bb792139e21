"""Audio: WAV files, live sound devices (listing, microphone source, earphone sink, echo gate),
the segmenter that cuts speech into utterances, and the system sound server (PulseAudio)."""
