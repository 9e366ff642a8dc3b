"""A tiny tracker configuration and OSTrack-384's crop geometry, for tests that build or load checkpoints fast."""

from prunesearch.data.processing import CropGeometry
from prunesearch.models import TrackerConfig

TINY_CFG = TrackerConfig(embed_dim=32, num_heads=2, template_size=32, search_size=64, depth=3, head_channels=(16, 8))
OSTRACK_384_CROP = CropGeometry(template_factor=2.0, search_factor=5.0)
