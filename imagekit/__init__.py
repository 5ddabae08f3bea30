"""imagekit: take custom AMIs out of AWS, keep them encrypted elsewhere, boot them on other clouds.

The package follows the pipeline: ``export`` (AWS in) → ``store`` (chunks, crypto, packs, index,
backends) → ``convert`` (qemu-img) → ``providers`` (clouds out) → ``plans`` (the three jobs) →
``cli``. See ``docs/design.md``.
"""

from imagekit.errors import ExitCode, ImagekitError

__version__ = "0.1.0"

__all__ = ["ExitCode", "ImagekitError", "__version__"]
