"""Options from the command line: fire passes ``--resume false`` as the string "false", which is true, and
``--max_boxes null`` as the string "null"."""

from __future__ import annotations

import re

import fire
import pytest
from bundle_configs import BUNDLES, config_files
from monai.bundle import ConfigParser
from samzoo.options import flag, optional

OPTIONS = ("resume", "pretrained", "use_box", "save_cam", "amp", "use_text_prompt")


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), ("false", False), ("False", False), ("TRUE", True)]
)
def test_flag_takes_booleans_and_their_json_spellings(value, expected):
    assert flag(value, "resume") is expected


@pytest.mark.parametrize("value", ["no", "", 0, 1, None])
def test_flag_names_the_option_it_cannot_read(value):
    with pytest.raises(ValueError, match="option 'resume' must be true or false"):
        flag(value, "resume")


@pytest.mark.parametrize(("value", "expected"), [("null", None), ("None", None), (None, None), (3, 3), ("0.5", "0.5")])
def test_optional_reads_null_as_none_and_keeps_other_values(value, expected):
    assert optional(value) == expected


def test_configs_read_every_on_off_option_through_flag():
    raw = re.compile(rf"(?<!flag\()@({'|'.join(OPTIONS)})\b")
    offenders = [
        f"{path.relative_to(BUNDLES)}: {line.strip()}"
        for path in sorted(BUNDLES.glob("*/configs/**/*.json"))
        for line in path.read_text().splitlines()
        if raw.search(line)
    ]
    assert not offenders


def _parser(bundle: str, **overrides: object) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(config_files(bundle, "train.json"))
    parser.update(overrides)
    return parser


def test_resume_false_on_the_command_line_starts_from_scratch():
    parser = _parser("cmr2dt_sam", resume="false")
    assert parser.get_parsed_content("train#checkpoint_handlers#0#enabled") is False
    with pytest.raises(RuntimeError) as error:  # MONAI's wrapper; the traceback shows the cause
        _parser("cmr2dt_sam", resume="no").get_parsed_content("train#checkpoint_handlers#0#enabled")
    assert str(error.value.__cause__) == "option 'resume' must be true or false, got 'no'"


def test_use_box_false_on_the_command_line_drops_the_boxes():
    parser = _parser("sam_prompt", use_box="false", num_volumes=16)
    assert parser.get_parsed_content("prompt_keys") == ["points", "point_labels"]
    assert parser.get_parsed_content("variant") == "16-volumes-no-box"
    assert parser.get_parsed_content("train#prompts#use_box") is False


def _val_interval(bundle: str, **overrides: object) -> object:
    """The validation interval ``bundle``'s trainer gets with ``overrides``."""
    parser = _parser(bundle, **overrides)
    i = next(i for i, h in enumerate(parser["train"]["handlers"]) if h["_target_"] == "ValidationHandler")
    return parser.get_parsed_content(f"train#handlers#{i}#interval")


@pytest.mark.parametrize("bundle", ["cmr2dt_sam", "sam_mix", "sam_pp", "sam_prompt"])
def test_a_validation_interval_beyond_the_training_is_refused(bundle):
    assert _val_interval(bundle, val_interval=3, max_epochs=3) == 3
    with pytest.raises(RuntimeError) as error:
        _val_interval(bundle, val_interval=4, max_epochs=3)
    assert str(error.value.__cause__).startswith("val_interval=4 exceeds max_epochs=3: no validation would run")


def test_sam_pp_zero_shot_has_no_sam_training_to_validate():
    assert _val_interval("sam_pp", num_labelled=0, val_interval=4, max_epochs=3) == 4


def test_sam_prompt_reads_null_from_the_command_line_as_unset():
    unset = ("num_volumes", "decoder_checkpoint", "backbone_checkpoint", "embedding_dir")
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / "sam_prompt" / "configs" / f"{name}.json") for name in ("train", "zero_shot")])
    parser.update(dict.fromkeys(unset, "null"))
    assert parser.get_parsed_content("variant") == "all-volumes"
    assert parser.get_parsed_content("run_name") == "zero-shot/lite_medsam"
    sites = ("network_def#checkpoint", "network_def#decoder_checkpoint", "embedding_cache#cache_dir", "tracking#model")
    for key in sites:
        assert parser.get_parsed_content(key) is None, key
    inference = ConfigParser()
    inference.read_config(str(BUNDLES / "sam_prompt" / "configs" / "inference.json"))
    inference.update({"decoder_checkpoint": "null", "backbone_checkpoint": "null"})
    assert inference.get_parsed_content("network_def#decoder_checkpoint") is None
    assert inference.get_parsed_content("network_def#checkpoint") is None


def _command_line(*argv: str) -> dict[str, object]:
    """The overrides ``python -m monai.bundle run ARGV`` receives: fire parses the command line, as there."""
    overrides: dict[str, object] = {}
    fire.Fire(lambda **kwargs: overrides.update(kwargs), command=list(argv))
    return overrides


@pytest.mark.parametrize("bundle", ["sam_mix", "sam_pp"])
def test_null_on_the_command_line_unsets_the_ct_options(bundle):
    overrides = _command_line(
        "--max_boxes", "null", "--backbone_checkpoint", "null", "--slice_fraction", "null",
        "--eval_slice_fraction", "null",
    )  # fmt: skip
    assert overrides["max_boxes"] == "null"  # what the configs must read as None
    parser = ConfigParser()
    parser.read_config(config_files(bundle, "train.json", "evaluate.json"))
    parser.update(overrides)
    for unset in ("network_def#max_boxes", "network_def#checkpoint", "validate#handlers#2#source#slice_fraction"):
        assert parser.get_parsed_content(unset) is None, unset
    for whole_volumes in ("volume_transforms", "validate#preprocessing"):
        names = [type(t).__name__ for t in parser.get_parsed_content(whole_volumes).transforms]
        assert "MiddleSlicesd" not in names and "Resized" in names
    inference = ConfigParser()
    inference.read_config(config_files(bundle, "inference.json"))
    inference.update(_command_line("--max_boxes", "null"))
    assert inference.get_parsed_content("network_def#max_boxes") is None
    inference.update(_command_line("--max_boxes", "2"))
    assert inference.get_parsed_content("network_def#max_boxes") == 2
