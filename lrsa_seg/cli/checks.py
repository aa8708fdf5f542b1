"""Configuration checks before anything runs: values that disagree with the data, paths that do not exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _init_args(config: Any, key: str) -> dict[str, Any]:
    section = config.get(key) if config is not None else None
    if section is None:
        return {}
    args = section.get("init_args", section) if hasattr(section, "get") else {}
    return dict(args.items()) if hasattr(args, "items") else {}


def check_linked_arguments(config: Any, datamodule: Any) -> None:
    """The model's ``num_classes``/``class_names`` come from the data; a different value given by hand is an error."""
    model = _init_args(config, "model")
    num_classes = getattr(datamodule, "num_classes", None)
    given = model.get("num_classes")
    if given is not None and num_classes is not None and given != num_classes:
        raise ConfigError(
            f"--model.init_args.num_classes={given} disagrees with the data: {type(datamodule).__name__} has "
            f"{num_classes} classes. The CLI takes num_classes from the data, so leave it out of the command "
            "line and config; a --ckpt_path checkpoint of a model with other classes cannot be used with this "
            "data (to fine-tune on new classes use --model.init_args.weights with weights_scope backbone)."
        )
    names = model.get("class_names")
    classes = getattr(datamodule, "classes", None)
    if names is not None and classes is not None and list(names) != list(classes):
        raise ConfigError(
            f"--model.init_args.class_names {list(names)} disagrees with the data's classes {list(classes)}; "
            "the CLI takes them from the data, leave it out."
        )


_DATA_PATHS = ("root", "train_images", "train_masks", "val_images", "val_masks", "test_images", "test_masks")


def check_data_arguments(config: Any, subcommand: str | None) -> None:
    """Folders that must exist and augmentation settings that cannot work, named by argument."""
    data = _init_args(config, "data")
    if subcommand == "predict" and data.get("predict_path") is not None:
        names: tuple[str, ...] = ("predict_path",)
    else:
        names = _DATA_PATHS
    for name in names:
        value = data.get(name)
        if value is not None and not Path(value).exists():
            raise ConfigError(f"--data.init_args.{name}: {value} does not exist (working directory {Path.cwd()})")
    if subcommand != "fit":
        return
    crop, base, ratios = data.get("crop_size"), data.get("base_size"), data.get("ratio_range")
    if ratios is not None and not 0 < ratios[0] <= ratios[1]:
        raise ConfigError(f"--data.init_args.ratio_range must be 0 < low <= high, got {list(ratios)}")
    if base is not None and min(base) < 1:
        raise ConfigError(f"--data.init_args.base_size must be positive, got {list(base)}")
    cat_max_ratio = data.get("cat_max_ratio")
    if cat_max_ratio is not None and not 0 < cat_max_ratio <= 1:
        raise ConfigError(f"--data.init_args.cat_max_ratio must be in (0, 1] (1 disables it), got {cat_max_ratio}")
    if crop is not None and base is not None and ratios is not None:
        largest_short = min(base) * ratios[1]
        if min(crop) > largest_short:
            raise ConfigError(
                f"--data.init_args.crop_size {list(crop)} can never be filled: training images are rescaled to "
                f"fit base_size {list(base)} x ratio_range {list(ratios)}, so their short side is at most "
                f"{largest_short:g} px and every crop would be mostly padding. Lower crop_size or raise "
                "base_size / ratio_range."
            )
