import pytest
import torch
from samzoo.losses import IGNORE_VALUE
from samzoo.transforms.supervision import DiscardUnlabelledd, IgnoreUnlabelledFramesd, ViewIndexd


def test_unlabelled_frames_become_ignored_and_metrics_see_only_labelled_frames():
    label = torch.zeros(1, 4, 4, 3)
    label[0, 1:3, 1:3, :] = 1
    out = IgnoreUnlabelledFramesd("label")({"label": label, "frame_mask": torch.tensor([1.0, 0.0, 1.0])})
    assert torch.all(out["label"][..., 1] == IGNORE_VALUE)
    assert torch.equal(out["label"][..., 0], label[..., 0]) and torch.equal(out["label"][..., 2], label[..., 2])

    pred = torch.ones(1, 4, 4, 3)
    cleaned = DiscardUnlabelledd("pred")({"pred": pred, "label": out["label"]})
    assert torch.all(cleaned["pred"][..., 1] == 0) and torch.all(cleaned["label"][..., 1] == 0)
    assert torch.all(cleaned["pred"][..., 0] == 1)


def test_view_index_and_unknown_view():
    assert ViewIndexd()({"view": "LAX"})["view_index"].item() == 1
    assert ViewIndexd()({"view": "sax"})["view_index"].item() == 0
    with pytest.raises(ValueError, match="unknown view"):
        ViewIndexd()({"view": "2CH", "case_id": "p1"})
