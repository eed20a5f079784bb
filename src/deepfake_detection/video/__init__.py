"""Video clips: the frames a detector scores, read once from the file.

Most fakes that reach people are videos, and the field's benchmarks score a clip by sampling
frames (32 per clip in DeepfakeBench) and averaging their scores. This package reads a clip
and samples its frames; scoring them is the detector's (`detector.clip_scoring`).

- `settings`: the `video.*` keys (which frames, the clip's score, the limits; torch-free);
- `reading`: PyAV decoding by presentation time, upright, with every failure a short reason.
"""
