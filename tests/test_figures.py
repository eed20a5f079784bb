"""The run's figures: the grid of confident mistakes."""

from __future__ import annotations

import logging

import torch
from PIL import Image

from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.reports.figures import confident_mistakes_figure, render_pngs


def _predictions(tmp_path, probs, targets):
    paths = []
    for i in range(len(probs)):
        path = tmp_path / f"img_{i}.png"
        Image.new("RGB", (40, 24), (i * 40, 0, 0)).save(path)
        paths.append(str(path))
    return Predictions(torch.tensor(probs), torch.tensor(targets), tuple(paths))


def _captions(fig):
    return [text.get_text() for ax in fig.axes for text in ax.texts]


def test_mistakes_are_shown_most_confident_first(tmp_path, caplog):
    # 0: right; 1: Real scored 0.9 (wrong, confident); 2: Fake scored 0.4 (wrong, less so)
    predictions = _predictions(tmp_path, [0.1, 0.9, 0.4], [0, 0, 1])
    fig = confident_mistakes_figure(predictions, 0.5)
    assert _captions(fig) == ["img_1.png\nReal, P(Fake)=0.900", "img_2.png\nFake, P(Fake)=0.400"]
    assert fig.get_suptitle() == "Most confident mistakes (2 of 2)"
    (tmp_path / "img_2.png").unlink()  # a file gone since scoring: logged, still drawn
    with caplog.at_level(logging.WARNING):
        fig = confident_mistakes_figure(predictions, 0.5)
        png = render_pngs({"mistakes": fig})["mistakes"]
    assert png.startswith(b"\x89PNG") and "img_2.png" in caplog.text


def test_no_mistakes_says_so(tmp_path):
    fig = confident_mistakes_figure(_predictions(tmp_path, [0.1, 0.9], [0, 1]), 0.5)
    assert _captions(fig) == ["no mistakes"]
    assert render_pngs({"mistakes": fig})["mistakes"].startswith(b"\x89PNG")
