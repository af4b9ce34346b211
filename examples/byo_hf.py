"""IMP with rewinding (LTH; Frankle et al. 2019) on a tiny BERT under the Hugging Face `Trainer`.

The model is built from a `BertConfig` (nothing is downloaded), the task is generated: does token 7
occur in a sequence of random tokens? `run_imp` trains, evaluates, prunes 20 % of each layer's surviving
weights (10 % of the output layer), rewinds to θk and calls `trainer.train()` again, level after level.

    python examples/byo_hf.py           # 4 levels of 600 steps, rewinding to step 60
    python examples/byo_hf.py --tiny    # a few seconds: 2 levels of 30 steps
"""

import argparse
import logging
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

import ticketlab  # noqa: E402
from ticketlab.integrations import hf  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tiny", action="store_true", help="a smoke-test size")
args = parser.parse_args()
steps, levels, k = (30, 2, 5) if args.tiny else (600, 4, 60)
transformers.logging.set_verbosity_error()
logging.getLogger("transformers").setLevel(logging.ERROR)


class Token7(torch.utils.data.Dataset):
    """Random sequences of tokens 10..99; half of them hold a 7 somewhere: the label."""

    def __init__(self, n: int, seed: int, length: int = 16):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(10, 100, (n, length), generator=g)
        self.labels = (torch.rand(n, generator=g) < 0.5).long()
        hit = self.labels.bool()
        self.ids[hit, torch.randint(0, length, (int(hit.sum()),), generator=g)] = 7

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=32, num_labels=2)
torch.manual_seed(0)
model = transformers.BertForSequenceClassification(config)
with tempfile.TemporaryDirectory() as out:
    training = transformers.TrainingArguments(
        output_dir=out, max_steps=steps, per_device_train_batch_size=32, learning_rate=2e-3,
        warmup_steps=k, max_grad_norm=1.0, use_cpu=True, report_to=[], disable_tqdm=True,
        logging_strategy="no", save_strategy="no", seed=0)
    trainer = transformers.Trainer(model=model, args=training, train_dataset=Token7(2000, seed=0),
                                   eval_dataset=Token7(500, seed=1), compute_metrics=accuracy)
    trainer.remove_callback(transformers.PrinterCallback)  # the rows below say it
    imp = ticketlab.IMP(prune_fraction=0.2, rewind_iter=k)
    for row in hf.run_imp(trainer, imp, levels):
        print(f"level {row['level']}: {100 * row['density']:5.1f}% of weights left, "
              f"eval accuracy {row['eval_accuracy']:.3f}")
