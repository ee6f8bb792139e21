"""The wake word in the real pipeline: only what follows it is translated."""

from __future__ import annotations

from devtools.harness import babelfish, load_report, replay_fast, stage_processes, write_config
from devtools.testspeech import concat, piper_speak


def test_only_the_utterance_after_the_wake_word_is_translated(
    tmp_path, models_dir, piper_voice_dir
):
    parts = [
        piper_speak(t, piper_voice_dir, tmp_path / f"p{i}.wav", pad_s=0.3)
        for i, t in enumerate(
            ["I would like a coffee.", "Okay Nabu.", "Where is the train station?"]
        )
    ]
    wav = concat(parts, tmp_path / "in.wav", gap_s=1.2)
    cfg = write_config(
        tmp_path,
        '[pipeline]\nsource_lang = "en"\n[wakeword]\nmode = "next_utterance"\n'
        'model = "okay_nabu"\n',
    )
    r, report = replay_fast(tmp_path, wav, cfg)
    assert r.returncode == 0, r.stderr
    rep = load_report(report)
    texts = [u["translated_text"].lower() for u in rep["utterances"]]
    assert len(texts) == 1 and "station" in texts[0], texts  # not the coffee, not the wake word
    info = rep["summary"]["stage_info"]["capture"]
    assert info["wakeword_backend"] == "cpu"  # no Edge TPU here: the CPU, and the report says so
    assert float(info["wakeword_ms_per_inference"]) > 0
    assert "edge tpu" in info["accelerator"].lower() or "libedgetpu" in info["accelerator"]
    assert not stage_processes(str(tmp_path / "rt"))


def test_edgetpu_required_without_one_is_a_usage_error(tmp_path, models_dir):
    wav = tmp_path / "silence.wav"
    import numpy as np
    import soundfile as sf

    sf.write(wav, np.zeros(16000, np.float32), 16000)
    cfg = write_config(
        tmp_path, '[wakeword]\nmode = "toggle"\n[accelerator]\nedgetpu = "required"\n'
    )
    r = babelfish("replay", wav, "--config", cfg, "--out", tmp_path / "o.wav", timeout=120)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("babelfish: error:") and "required" in last, r.stderr
    assert not stage_processes(str(tmp_path / "rt"))
