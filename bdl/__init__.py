"""bdl: Bidirectional Learning for domain adaptation of semantic segmentation.

The library behind the Snakemake workflow: data readers, models, losses, metrics and
on-disk artifacts. It never imports snakemake; the stages in ``stages/`` are thin CLIs over it.
"""

from bdl.errors import BDLError  # noqa: F401  (bdl.BDLError for users; the library imports bdl.errors)

__version__ = "0.1.0"


def __getattr__(name):
    # bdl.load_segmenter(path) without importing torch on `import bdl` (figure stages import bdl, not torch)
    if name == "load_segmenter":
        from bdl.models import load_segmenter

        return load_segmenter
    raise AttributeError(f"module 'bdl' has no attribute '{name}'")
