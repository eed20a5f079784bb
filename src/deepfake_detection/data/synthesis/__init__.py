"""Synthetic fakes made from real faces at training time (the `synth` group).

A detector that only ever sees one generator's fakes learns that generator. Two families of
synthetic fakes teach what fakes share instead:

- `sbi` (Self-Blended Images, Shiohara & Yamasaki, CVPR 2022): a real face blended back
  into itself through a soft mask, after a slight colour, sharpness, scale and position
  change of the copy: the blending boundary and its statistics, without any generator;
- `upsample`: a real face scaled down and brought back up as generators' decoders do
  (nearest, bilinear, bicubic, transposed-convolution checkerboards, a small randomly
  initialised decoder): the up-sampling traces behind NPR (CVPR 2024) and DRCT (ICML 2024).

`settings` holds the keys, `blending` and `upsampling` the two families, `mixing` where in a
training split synthetic fakes take their place. Every draw comes from the sample's own
seed, so a run stays deterministic and resumable.
"""
