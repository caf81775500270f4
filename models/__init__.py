"""Engine adapters (one module per engine) and the catalogues they validate against.

Heavy libraries (torch, faster_whisper, dashscope, demucs, qwen_tts) are imported inside the adapters,
never at package import, so `python -m flows.dub --help` stays instant.
"""
