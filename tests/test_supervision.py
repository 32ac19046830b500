import pytest
import torch
from samzoo.engine import ViewPromptInferer
from samzoo.losses import IGNORE_VALUE
from samzoo.transforms.supervision import DiscardUnlabelledd, IgnoreUnlabelledFramesd, ViewIndexd, view_choices


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


def test_view_choices_put_the_default_first():
    assert view_choices() == ["SAX", "LAX"]
    assert view_choices("lax") == ["LAX", "SAX"]
    with pytest.raises(ValueError, match="unknown view '4CH'"):
        view_choices("4CH")


def test_view_prompt_inferer_gives_every_clip_the_chosen_view():
    seen = []

    def network(image, view=None):
        seen.append(None if view is None else (view.tolist(), view.dtype))
        return image

    clips = torch.rand(3, 1, 4, 4, 2)
    assert torch.equal(ViewPromptInferer("LAX")(clips, network), clips)
    ViewPromptInferer(["SAX", "LAX"])(clips, network)  # a drop-down option: its first entry is the choice
    ViewPromptInferer("LAX", prompted=False)(clips, network)
    assert seen == [([1, 1, 1], torch.long), ([0, 0, 0], torch.long), None]
    with pytest.raises(ValueError, match="unknown view '2CH'"):
        ViewPromptInferer("2CH")
