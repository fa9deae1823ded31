"""BraTS segmentation pipeline on MONAI: what the bundle configs call and MONAI lacks.

Flow: ``synthetic``/``datasets`` (data) -> ``transforms`` -> bundle network -> training -> ``inference``
-> ``metrics``/``evaluation`` (numbers) ; ``labels`` holds the one channel/label/region table.
"""

__version__ = "0.1.0"
