"""SAM prompting model and data pipeline: decoder-only gradients, grids, samples, prompts on the encoder grid."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from samzoo.data.nifti import load_label, save_nifti
from samzoo.engine.prompted_slices import SlicePredictions, segment_file
from samzoo.errors import DataError
from samzoo.losses import MaskedDiceBCELoss
from samzoo.networks.sam_prompt import SamPromptModel, combine_masks, resized_size
from samzoo.transforms.sam_prompt import LoadSliced, SamplePromptsd, SamTargetd, select_volumes, slice_samples


@pytest.fixture(scope="module")
def tiny() -> SamPromptModel:
    torch.manual_seed(0)
    return SamPromptModel("vit_tiny", pretrained=False)


def _item(tmp_path, name: str, patient: str, rv_at_es: bool = True) -> dict:
    """A (32, 24, 3) cine with ED frame 0 and ES frame 2; the RV is absent at ES unless ``rv_at_es``."""
    label = np.zeros((32, 24, 3), dtype=np.uint8)
    label[4:10, 4:10, :] = 1
    label[12:28, 8:22, :] = 2
    label[16:24, 12:18, :] = 3
    if not rv_at_es:
        label[..., 2][label[..., 2] == 1] = 0
    image = label.astype(np.float32) * 50 + 10
    affine = np.diag([1.5, 1.5, 1.0, 1.0])
    save_nifti(image, affine, tmp_path / f"{name}_img.nii.gz")
    save_nifti(label, affine, tmp_path / f"{name}_lab.nii.gz")
    return {
        "image": str(tmp_path / f"{name}_img.nii.gz"),
        "label": str(tmp_path / f"{name}_lab.nii.gz"),
        "case_id": patient,
        "patient_id": patient,
        "dataset": "test",
        "view": "SAX",
        "slice_index": 0,
        "slice_position": "mid",
        "num_frames": 3,
        "ed_frame": 0,
        "es_frame": 2,
        "labelled_frames": [0, 2],
        "spacing": [1.5, 1.5, 8.0],
        "spacing_known": True,
    }


def test_only_the_mask_decoder_receives_gradients(tiny: SamPromptModel) -> None:
    trainable = {name.split(".")[1] for name, p in tiny.named_parameters() if p.requires_grad}
    assert trainable == {"mask_decoder"}
    tiny.train()
    assert not tiny.sam.image_encoder.training and tiny.sam.mask_decoder.training
    embeddings = tiny.embed(torch.rand(2, 3, 256, 256))
    assert embeddings.shape == (2, 256, 16, 16) and not embeddings.requires_grad
    points = torch.rand(2, 3, 4, 2) * 200
    labels = torch.tensor([1, 1, 0, 0]).expand(2, 3, 4)
    boxes = torch.tensor([10.0, 20.0, 120.0, 150.0]).expand(2, 3, 4)
    logits = tiny(embeddings, points, labels, boxes)
    assert logits.shape == (2, 3, tiny.mask_size, tiny.mask_size) == (2, 3, 64, 64)
    MaskedDiceBCELoss()(logits, (torch.rand_like(logits) > 0.5).float()).backward()  # the bundle's loss
    with_grad = {name for name, p in tiny.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    assert with_grad and all(name.startswith("sam.mask_decoder.") for name in with_grad)
    assert {n for n, _ in tiny.named_parameters() if n.startswith("sam.mask_decoder.transformer.")} <= with_grad
    tiny.zero_grad(set_to_none=True)
    assert tiny(embeddings, None, None, boxes).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="point or box"):
        tiny(embeddings)


@pytest.mark.parametrize(
    ("backbone", "intensity_max", "pixel_mean", "pixel_std"),
    [("vit_tiny", 255.0, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)), ("lite_medsam", 1.0, (0,) * 3, (1,) * 3)],
)
def test_input_spec_is_the_preprocessing_the_backbone_was_trained_with(backbone, intensity_max, pixel_mean, pixel_std):
    spec = SamPromptModel(backbone, pretrained=False).input_spec
    assert (spec.image_size, spec.intensity_max) == (256, intensity_max)
    np.testing.assert_allclose(spec.pixel_mean, pixel_mean, rtol=1e-6)
    np.testing.assert_allclose(spec.pixel_std, pixel_std, rtol=1e-6)


def test_grids_and_overlap_rule(tiny: SamPromptModel) -> None:
    assert resized_size((100, 95), 256) == (256, 243)
    logits = torch.full((2, 64, 64), -10.0)
    logits[0, :, :16] = 10.0  # input columns < 64 of the padded 256 x 256 input
    back = tiny.to_original(logits, (100, 50))  # resized to 256 x 128: input column 64 is slice column 25
    assert back.shape == (2, 100, 50)
    assert bool((back[0, :, :20] > 0).all()) and bool((back[0, :, 30:] < 0).all())
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[0, :2] = True
    masks[1, 1:3] = True
    masks[2, 2:] = True
    np.testing.assert_array_equal(combine_masks(masks, [1, 2, 3])[:, 0], [1, 2, 3, 3])


def test_samples_leave_out_slices_missing_a_class(tmp_path) -> None:
    items = [_item(tmp_path, "a", "p1"), _item(tmp_path, "b", "p2", rv_at_es=False)]
    samples = slice_samples(items, [1, 2, 3])
    assert [(s["case_id"], s["phase"], s["frame"]) for s in samples] == [
        ("p1", "ED", 0),
        ("p1", "ES", 2),
        ("p2", "ED", 0),
    ]
    assert [s["index"] for s in samples] == [0, 1, 2]
    loaded = LoadSliced()(samples[1])
    assert loaded["image"].shape == (32, 24) and loaded["label"].dtype == np.int64
    np.testing.assert_array_equal(loaded["original_size"], [32, 24])


def test_volume_subsets_are_drawn_by_patient_seeded_and_nested() -> None:
    # 6 patients x 2 slices x ED/ES, except that no slice of p03 is usable at ES: 11 volumes, 22 samples.
    samples = [
        {"patient_id": f"p{p:02d}", "slice": s, "phase": phase, "index": 0}
        for p in range(6)
        for s in range(2)
        for phase in ("ED", "ES")
        if (p, phase) != (3, "ES")
    ]

    def volumes(chosen: list[dict]) -> list[tuple[str, str]]:
        return list(dict.fromkeys((c["patient_id"], c["phase"]) for c in chosen))

    # seed 1 draws the patients in the order p04, p00, p02, p01, p05, p03; seed 0 in the order p03, p02, ...
    three = select_volumes(samples, 3, seed=1)
    assert volumes(three) == [("p00", "ED"), ("p04", "ED"), ("p04", "ES")]  # odd N: one phase of the last patient
    assert len(three) == 6 and [c["index"] for c in three] == list(range(6))  # both slices, contiguous index
    assert volumes(select_volumes(samples, 2, seed=0)) == [("p02", "ED"), ("p03", "ED")]  # p03 has no ES volume
    assert volumes(select_volumes(samples, 1, seed=1, phases=("ES", "ED"))) == [("p04", "ES")]
    nested = [set(volumes(select_volumes(samples, n, seed=1))) for n in range(1, 12)]
    assert [len(subset) for subset in nested] == list(range(1, 12))
    assert all(small < large for small, large in itertools.pairwise(nested))
    assert select_volumes(samples, 3, seed=2) != three
    assert len(select_volumes(samples, None)) == len(select_volumes(samples, 50)) == 22
    with pytest.raises(ValueError, match="at least 1"):
        select_volumes(samples, 0)


def test_prompts_and_targets_on_the_encoder_grid(tmp_path) -> None:
    sample = LoadSliced()(slice_samples([_item(tmp_path, "a", "p1")], [1, 2, 3])[0])
    prompts = SamplePromptsd([1, 2, 3], image_size=256, num_positive=2, num_negative=1, use_box=True, seed=3)
    out = prompts(sample)
    assert out["points"].shape == (3, 4, 2) and out["point_labels"].tolist() == [[1, 1, 0, 0]] * 3
    # 32 x 24 -> 256 x 192: factor 8 on both axes; the RV box [4-5, 4-5, 9+5, 9+5] clipped -> [0, 0, 14, 14] * 8
    np.testing.assert_allclose(out["boxes"][0].numpy(), [0, 0, 112, 112])
    label = sample["label"]
    for c, value in enumerate((1, 2, 3)):
        x, y = (out["points"][c, :2] / 8).long().T
        assert (label[y.numpy(), x.numpy()] == value).all()
    assert torch.equal(prompts(sample)["points"], out["points"])  # seeded per sample index
    free = SamplePromptsd([1, 2, 3], 256, 3, 0, use_box=False)
    free.set_random_state(0)
    assert "boxes" not in free(sample) and not torch.equal(free(sample)["points"], free(sample)["points"])
    target = SamTargetd([1, 2, 3], image_size=256, mask_size=64)(out)["label"]
    assert target.shape == (3, 64, 64)
    # LV rows 16-23, columns 12-17 of the slice -> rows 32-47, columns 24-35 on the 64 grid (factor 2)
    expected = torch.zeros(64, 64)
    expected[32:48, 24:36] = 1
    assert torch.equal(target[2], expected)
    assert target[:, :, 48:].sum() == 0  # padding


def test_label_maps_threshold_the_logits_after_scaling_up(tiny: SamPromptModel, tmp_path) -> None:
    # One class, logit -1 left of mask column 32 and +3 from it, on a 256 x 256 slice (4 x the 64 grid). Bilinear
    # scaling puts slice column x at mask column (x + 0.5) / 4 - 0.5, where the logit is -1 + 4 (that - 31): zero at
    # x = 126.5, so columns from 127 on are the class. Thresholding first (sigmoid > 0.5 on the 64 grid) and scaling
    # the binary mask would start it at column 128.
    logits = torch.full((1, 64, 64), -1.0)
    logits[..., 32:] = 3.0
    label = tiny.label_map(logits, (256, 256), [2])
    assert label.shape == (256, 256) and (label[:, :127] == 0).all() and (label[:, 127:] == 2).all()
    writer = SlicePredictions(tiny, [], {2: "myocardium"})
    batch = [{"original_size": torch.tensor([256, 256]), "index": 7}]
    writer.collect(SimpleNamespace(state=SimpleNamespace(batch=batch, output=[{"pred": logits}])))
    np.testing.assert_array_equal(writer.predictions_by_index[7], label)


def test_inference_refuses_bad_prompt_inputs_before_the_model_runs(tiny: SamPromptModel, tmp_path) -> None:
    item = _item(tmp_path, "a", "p1")  # (32, 24, 3) image and label, 1.5 mm pixels
    out = tmp_path / "seg.nii.gz"
    label = np.zeros((32, 24, 3), dtype=np.uint8)
    label[4:10, 4:10] = 1
    save_nifti(label[:30], np.diag([1.5, 1.5, 1.0, 1.0]), tmp_path / "cropped.nii.gz")
    save_nifti(label, np.diag([2.0, 2.0, 1.0, 1.0]), tmp_path / "moved.nii.gz")
    save_nifti(label[..., 0], np.diag([1.5, 1.5, 1.0, 1.0]), tmp_path / "one_frame.nii.gz")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"1": {"points": [[24, 5]]}}))  # x beyond the 24 columns (0..23)
    cases = [
        ({"label": tmp_path / "cropped.nii.gz"}, "cropped.nii.gz: shape .* does not match image"),
        ({"label": tmp_path / "moved.nii.gz"}, "moved.nii.gz: geometry"),
        ({"label": tmp_path / "one_frame.nii.gz"}, "one_frame.nii.gz: frame 2 is beyond the label file's 1 frame"),
        ({"prompts": prompts}, r"prompts.json: class '1': points and boxes must lie on the 32 x 24 slice"),
    ]
    for source, problem in cases:
        with pytest.raises(DataError, match=problem):
            segment_file(tiny, item["image"], out, frame=2, **source)
    assert not out.exists()
    segment_file(tiny, item["image"], out, frame=2, label=item["label"])  # the matching label file is accepted
    assert load_label(out).array.shape == (32, 24, 3)
