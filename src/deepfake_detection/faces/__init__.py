"""The face stage: find the faces in an image and crop each one as the detector expects it.

Users have photos, screenshots and frames, not the tight face crops detectors are trained
on. With `face=crop`, every path (training, evaluate, robustness, predict, export, serve)
finds the faces first and scores the same aligned, margined, square crop of each, so a model
judges a face framed exactly as in training, wherever it sits in the picture.

- `settings`: the `face.*` keys (torch- and OpenCV-free, for a fast config check);
- `detectors`: the face detectors that run offline (YuNet, Haar) and the plug-in hook;
- `geometry`: which face, the margin, the square, the eye alignment, the crop itself;
- `stage`: `FaceStage`, the above put together, with the no-face policy;
- `store`: crops of a dataset computed once and kept on disk for later epochs and runs.
"""
