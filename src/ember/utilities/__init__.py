"""Helpers users import from ``pytorch_lightning.utilities``: rank-zero-only functions and messages."""
from ember.utilities.rank_zero import rank_zero_debug, rank_zero_info, rank_zero_only, rank_zero_warn

__all__ = ["rank_zero_debug", "rank_zero_info", "rank_zero_only", "rank_zero_warn"]
