"""bdl: Bidirectional Learning for domain adaptation of semantic segmentation.

The library behind the Snakemake workflow: data readers, models, losses, metrics and
on-disk artifacts. It never imports snakemake; the stages in ``stages/`` are thin CLIs over it.
"""

__version__ = "0.1.0"


class BDLError(Exception):
    """An error a user can fix (bad data, config or checkpoint); stages print it as one line."""
