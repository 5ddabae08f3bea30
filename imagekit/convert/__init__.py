"""Convert: any disk image qemu-img reads → what a target cloud accepts, validated."""

from imagekit.convert.pipeline import ConvertResult, convert_image, inspect_source
from imagekit.convert.targets import TARGETS, Target, get_target

__all__ = ["TARGETS", "ConvertResult", "Target", "convert_image", "get_target", "inspect_source"]
