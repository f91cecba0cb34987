"""``lightning.pytorch.utilities.model_summary``: the summary object behind the ModelSummary callback."""
from ember.utilities.model_summary.model_summary import (LayerSummary, ModelSummary, get_formatted_model_size,
                                                         get_human_readable_count, parse_batch_shape, summarize)

__all__ = ["LayerSummary", "ModelSummary", "get_formatted_model_size", "get_human_readable_count",
           "parse_batch_shape", "summarize"]

from ember._missing import missing_class  # noqa: E402

DeepSpeedSummary = missing_class("utilities.model_summary.DeepSpeedSummary", "ember has no DeepSpeed strategy",
                                 "ember.utilities.model_summary.ModelSummary")
