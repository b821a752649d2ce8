"""wanbot: Alibaba's Wan 2.5 image model in Discord."""

__version__ = "0.1.0"
