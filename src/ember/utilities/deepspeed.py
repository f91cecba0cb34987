"""``lightning.pytorch.utilities.deepspeed``: not in ember (no DeepSpeed strategy, so no ZeRO checkpoints)."""
from ember._missing import missing_function

convert_zero_checkpoint_to_fp32_state_dict = missing_function(
    "utilities.deepspeed.convert_zero_checkpoint_to_fp32_state_dict",
    "ember has no DeepSpeed strategy, so it writes no ZeRO checkpoints",
    "ember's checkpoints as they are (FSDP full checkpoints hold a plain state_dict), or DeepSpeed's own "
    "zero_to_fp32.py for DeepSpeed's files")

__all__ = ["convert_zero_checkpoint_to_fp32_state_dict"]
