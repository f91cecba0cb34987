from ember.seed import seed_everything
from ember.trainer.trainer import Trainer

__all__ = ["Trainer", "seed_everything"]
